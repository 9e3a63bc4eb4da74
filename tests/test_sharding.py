"""Sharded ensembles and sharded networks equal their single-device runs.

The checks run in a subprocess on 4 simulated CPU devices (the device count is fixed
when JAX starts); see `_sharded_checks.py`.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def measured():
    flags = os.environ.get("XLA_FLAGS", "")  # conftest's, kept
    env = dict(
        os.environ, XLA_FLAGS=f"{flags} --xla_force_host_platform_device_count=4"
    )
    script = Path(__file__).with_name("_sharded_checks.py")
    proc = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_four_devices(measured):
    assert measured["devices"] == 4


# Each member runs the same arithmetic on whichever device, but XLA vectorises the fused
# elementwise stage arithmetic of `lnn.FusedTsit5` over the whole batch it is given
# (8 members unsharded, 2 per device sharded), and the vector loop and its scalar tail
# may round differently (fused multiply-add): a batch of 8 differs from batches of 2 in
# the last bit even on one device, while batches of 2 equal single runs exactly. So
# sharded and unsharded runs agree to a few units in the last place (states are O(1)).
ROUNDING = 8 * 2.0**-52


def test_ensemble_of_initial_conditions_is_split_and_equal(measured):
    assert measured["ic_diff"] <= ROUNDING
    assert measured["ic_spec"] == "P('batch',)"
    assert measured["ic_devices"] == 4


def test_sharded_ensemble_compiles_once(measured):
    assert measured["ic_retraced"] == 0
    assert measured["ic_again_diff"] < 1e-12


def test_kappa_sweep_sharded_equals_unsharded(measured):
    assert measured["kappa_diff"] <= ROUNDING


@pytest.mark.parametrize("case", ["dp_sim", "mp_sim", "dp_run", "mp_run"])
def test_sharded_network_equals_unsharded(measured, case):
    # Data-parallel (samples split) and model-parallel (weight rows split) runs of a
    # ReLU MLP, with fixed steps: only the order of the sharded sums differs, so the
    # trajectories agree to float64 rounding.
    assert measured[f"{case}_diff"] < 1e-12


def test_weights_were_really_sharded(measured):
    assert measured["mp_sharded_leaves"] == 3


def test_uneven_batch_is_refused(measured):
    message = measured["uneven_error"]
    assert message is not None
    assert "multiple of the number of devices" in message and "6" in message
