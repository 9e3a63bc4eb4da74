"""Command-line interface: `python -m experiments {list,run} ...`."""

import argparse
import sys
import time

from . import EXPERIMENTS, get
from ._common import DEFAULT_OUT


def _control_text(c) -> str:
    ctrl = c.get("control")
    if ctrl is None:
        return ""
    verdict = "misses" if ctrl["missed"] else "DOES NOT miss"
    return (
        f" | control ({ctrl['description']}): {float(ctrl['measured']):.3g}, "
        f"{verdict} by {ctrl['margin']:g}x"
    )


def _print_claims(results):
    for c in results.get("claims", []):
        mark = "ok " if c["holds"] else "FAIL"
        op = "<=" if c["kind"] == "<=" else ">="
        print(
            f"  [{mark}] {c['name']}: {float(c['measured']):.3g} {op} {c['bound']:.3g}"
            f" [{c.get('basis', '?')}]{_control_text(c)}"
        )


def _cell(text) -> str:
    return str(text).replace("|", "\\|")


def claims_table(out) -> str:
    """A Markdown table "paper's claim → measured number → negative control" from
    saved results. Runs made with `--quick` are marked, and so are claims that are
    only consequences of others (basis `consequence`, no control)."""
    import json
    from pathlib import Path

    lines = [
        "| experiment | paper | claim | basis | measured | bound | negative control "
        "(must miss the bound) | control value | holds |",
        "| --- | --- | --- | --- | ---: | ---: | --- | ---: | :-: |",
    ]
    quick = []
    for name in EXPERIMENTS:
        path = Path(out) / name / "results.json"
        if not path.exists():
            continue
        results = json.loads(path.read_text())
        label = f"`{name}`"
        if results.get("quick"):
            label += " (quick)"
            quick.append(name)
        for c in results["claims"]:
            op = "≤" if c["kind"] == "<=" else "≥"
            ctrl = c.get("control")
            if ctrl is None:
                ctrl_text, ctrl_value = "none (a consequence)", ""
            else:
                ctrl_text = _cell(ctrl["description"])
                ctrl_value = f"{ctrl['measured']:.3g}" + (
                    "" if ctrl["missed"] else " (**does not miss**)"
                )
            lines.append(
                f"| {label} | {_cell(c['paper'])} | {_cell(c['name'])} | "
                f"{c.get('basis', '?')} | {c['measured']:.3g} | {op} {c['bound']:.3g} | "
                f"{ctrl_text} | {ctrl_value} | {'yes' if c['holds'] else '**no**'} |"
            )
    if quick:
        lines.append("")
        lines.append(
            "Quick runs (small settings, not the paper's): "
            + ", ".join(f"`{n}`" for n in quick)
            + "."
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the experiments")
    run = sub.add_parser("run", help="run one experiment, or `all`")
    run.add_argument("name", help="experiment name, or `all`")
    run.add_argument("--quick", action="store_true", help="small, fast settings")
    run.add_argument("--out", default=DEFAULT_OUT, help="output folder")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument(
        "--data",
        choices=["digits", "kmnist"],
        default="digits",
        help="dataset of the network experiments (default: offline digits)",
    )
    run.add_argument(
        "--data-dir", default=None, help="folder with the KMNIST .npz files"
    )
    table = sub.add_parser(
        "table", help="print the claims of finished runs as Markdown"
    )
    table.add_argument("--out", default=DEFAULT_OUT, help="output folder of the runs")
    args = parser.parse_args(argv)

    if args.command == "table":
        print(claims_table(args.out))
        return 0

    if args.command == "list":
        for name, text in EXPERIMENTS.items():
            print(f"{name:24s} {text}")
        return 0
    names = list(EXPERIMENTS) if args.name == "all" else [args.name]
    failed = []
    for name in names:
        try:
            module = get(name)
        except ValueError as e:
            parser.error(str(e))
        start = time.perf_counter()
        print(f"== {name}{' (quick)' if args.quick else ''}", flush=True)
        kwargs = dict(seed=args.seed, quick=args.quick, out=args.out)
        if getattr(module, "USES_DATA", False):
            if args.data == "kmnist" and args.data_dir is None:
                parser.error(
                    "`--data kmnist` needs `--data-dir DIR` (the folder with the "
                    "official kmnist-*.npz files)."
                )
            kwargs.update(data=args.data, data_dir=args.data_dir)
        results = module.main(**kwargs)
        print(f"   done in {time.perf_counter() - start:.1f} s -> {args.out}/{name}")
        _print_claims(results)
        if not all(c["holds"] for c in results.get("claims", [])):
            failed.append(name)
    if failed:
        print(f"claims not reproduced in: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
