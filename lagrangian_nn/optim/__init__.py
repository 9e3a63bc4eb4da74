"""Discrete optimisers (GD, ND eq. 21, NAGD eq. 20) as optax transforms, a scan-based
runner that tracks quantities at every step, and their exact discrete conservation laws."""

from ._accounting import (
    discrete_noether_charge as discrete_noether_charge,
    discrete_rotation_matrix as discrete_rotation_matrix,
    newtonian_charge as newtonian_charge,
)
from ._chains import (
    ChargeLaw as ChargeLaw,
    ChargeTracker as ChargeTracker,
    NoExactLaw as NoExactLaw,
    SGDChain as SGDChain,
    charge as charge,
    charge_drift as charge_drift,
    charge_law as charge_law,
    charge_tracker as charge_tracker,
    sgd_chain as sgd_chain,
)
from ._kunin import (
    continuous_charge as continuous_charge,
    kunin_constants as kunin_constants,
)
from ._run import RunResult as RunResult, Step as Step, run as run
from ._tracker import (
    LoopTracker as LoopTracker,
    LoopTrackerState as LoopTrackerState,
    TrackerReport as TrackerReport,
    tracker as tracker,
)
from ._transforms import gd as gd, nesterov as nesterov, newtonian as newtonian
