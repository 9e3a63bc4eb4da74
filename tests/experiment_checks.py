"""What every quick run of an experiment must show: its files, and claims that hold
with controls that missed."""

import json

from experiments import __main__ as cli, _common


def _check_outputs(folder, figures):
    assert (folder / "results.json").exists() and (folder / "arrays.npz").exists()
    for stem in figures:
        assert (folder / f"{stem}.png").stat().st_size > 10_000
        assert (folder / f"{stem}.pdf").exists()
    assert not list(folder.parent.glob(".*partial*"))
    return json.loads((folder / "results.json").read_text())


def _controls_missed(res):
    """Every claim holds, and every claim that is evidence (not a consequence or an
    identity) has a negative control that missed its bound by the recorded factor;
    consequences and identities have none."""
    for c in res["claims"]:
        assert c["holds"], c
        assert c["evidence"] is (c["basis"] not in _common.NOT_EVIDENCE), c
        if c["evidence"]:
            ctrl = c["control"]
            assert ctrl["missed"], c
            # (an unbounded factor is saved as the string "inf")
            assert float(ctrl["miss_factor"]) > ctrl["margin"], c
        else:
            assert "control" not in c, c


def _run(name, tmp_path, figures):
    assert cli.main(["run", name, "--quick", "--out", str(tmp_path)]) == 0
    res = _check_outputs(tmp_path / name, figures)
    assert all(c["holds"] for c in res["claims"]), res["claims"]
    return res["metrics"]


def _evidence_and_consequences(tmp_path, name, consequences, identities=()):
    """`name`'s quick run: its only consequences are `consequences` and its only
    identities `identities`; every other claim holds with a control that missed."""
    res = json.loads((tmp_path / name / "results.json").read_text())
    assert res["quick"] is True
    got = sorted(c["name"] for c in res["claims"] if c["basis"] == "consequence")
    assert got == sorted(consequences)
    got = sorted(c["name"] for c in res["claims"] if c["basis"] == "identity")
    assert got == sorted(identities)
    _controls_missed(res)
