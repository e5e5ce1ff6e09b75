"""``regtheory check``: regenerate stored figures and compare them with their records."""

from __future__ import annotations

import argparse
import json

from ._common import positive


def run(args: argparse.Namespace) -> int:
    from ..figures import check
    from ..sweep import Sweep

    def progress(figure) -> None:  # each table as soon as its figure is done
        if not args.json:
            print(figure.to_text(), flush=True)

    with Sweep(n_jobs=-1 if args.jobs is None else args.jobs) as sweep:
        report = check(
            directory=args.dir,
            names=args.only,
            quick=True if args.quick else None,
            sweep=sweep,
            on_figure=progress,
        )
    print(json.dumps(report.to_dict(), indent=1) if args.json else report.summary())
    return 0 if report.passed else 1


def add_parser(sub: argparse._SubParsersAction) -> None:
    chk = sub.add_parser(
        "check",
        help="regenerate stored figures and compare them with their JSON, field by field",
        description="Regenerate each figure with the seed and mode its JSON records and compare "
        "the data field by field: exactly, to rounding (closed forms), to a solve's accuracy, "
        "by the z-score of two Monte Carlo estimates, or to a training run's stated tolerance. "
        "Exit 0 when all agree, 1 when a value disagrees.",
    )
    chk.add_argument("--dir", default="figures", help="the stored figures (default: figures/)")
    chk.add_argument("--only", nargs="+", metavar="NAME", help="check only these figures")
    chk.add_argument(
        "--quick",
        action="store_true",
        help="refuse a record made in full mode (a smoke check never starts a full run)",
    )
    chk.add_argument(
        "--jobs",
        type=positive,
        metavar="N",
        help="local processes for the figures' sweeps (default: one per core)",
    )
    chk.add_argument("--json", action="store_true", help="machine-readable report")
    chk.set_defaults(func=run)
