"""``regtheory figures``: reproduce the figures into a directory."""

from __future__ import annotations

import argparse
import difflib
import sys
import time

from ._common import EXIT_USER_ERROR, one_line, positive, solver_option


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..figures import REGISTRY, missing_extras, render
    from ..sweep import Sweep

    if args.list:
        width = max(len(n) for n in REGISTRY)
        for name, spec in REGISTRY.items():
            print(f"{name:<{width}}  {spec.description}")
        return 0
    names = args.only or list(REGISTRY)
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        guesses = [difflib.get_close_matches(n, REGISTRY, n=1) for n in unknown]
        hints = [f" (did you mean {g[0]}?)" if g else "" for g in guesses]
        print(
            "regtheory figures: unknown figure(s) "
            + ", ".join(n + h for n, h in zip(unknown, hints))
            + f"; valid names: {', '.join(REGISTRY)}",
            file=sys.stderr,
        )
        return EXIT_USER_ERROR
    # A missing extra is said before any figure is computed (not after the others have
    # run for an hour), and again at the end; the other figures are rendered meanwhile.
    missing = missing_extras(names)
    for extra, needing in missing.items():
        print(f"regtheory figures: {_needs(extra, needing)}", file=sys.stderr)
    names = [n for n in names if not any(n in needing for needing in missing.values())]
    if not names:
        return EXIT_USER_ERROR
    if args.scheduler is not None:
        sweep = Sweep(scheduler=args.scheduler)
    else:
        sweep = Sweep(n_jobs=-1 if args.jobs is None else args.jobs)
    try:
        sweep.open()  # a scheduler that does not answer fails here, before any figure
    except ImportError as exc:  # no dask extra: a user error, one line
        print(f"regtheory figures: {one_line(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR
    with sweep:
        # The bar goes to stderr and only to a terminal: stdout keeps one line per
        # figure, so logs and pipes read the same with or without it.
        bar = tqdm(
            names,
            desc="figures",
            unit="figure",
            file=sys.stderr,
            disable=args.no_progress or not sys.stderr.isatty(),
        )
        for name in bar:
            bar.set_postfix_str(name)
            start = time.perf_counter()
            paths = render(
                name, args.out, quick=args.quick, seed=args.seed, sweep=sweep, solver=args.solver
            )
            seconds = time.perf_counter() - start
            line = f"{name}: {', '.join(str(p) for p in paths)} ({seconds:.1f} s)"
            tqdm.write(line, file=sys.stdout)  # above the bar, not through it
    for extra, needing in missing.items():
        print(f"regtheory figures: not rendered: {_needs(extra, needing)}", file=sys.stderr)
    return EXIT_USER_ERROR if missing else 0


def _needs(extra: str, figures: list[str]) -> str:
    """One line naming the figures that need ``extra`` and the command that installs it."""
    verb = "needs" if len(figures) == 1 else "need"
    return (
        f"{', '.join(figures)} {verb} the {extra} extra, which is not installed; "
        f'install it with: pip install "regtheory[{extra}]"'
    )


def add_parser(sub: argparse._SubParsersAction) -> None:
    fig = sub.add_parser("figures", help="reproduce the figures (PNG, PDF and JSON data)")
    fig.add_argument("--out", default="figures", help="output directory (default: figures/)")
    fig.add_argument("--only", nargs="+", metavar="NAME", help="render only these figures")
    fig.add_argument("--quick", action="store_true", help="small sizes, for smoke runs")
    fig.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    fig.add_argument("--list", action="store_true", help="list the figures and exit")
    fig.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (it is shown only when stderr is a terminal)",
    )
    where = fig.add_mutually_exclusive_group()
    where.add_argument(
        "--jobs",
        type=positive,
        metavar="N",
        help="local processes for the figures' sweeps (default: one per core; "
        "1 runs them serially in this process); the data do not depend on it",
    )
    where.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run the sweeps on the Dask cluster of this scheduler (tcp://host:8786); "
        "needs the dask extra, pip install 'regtheory[dask]'",
    )
    solver_option(
        fig,
        "the figures that solve implied problems (fc_spectrum, implied_spectra, "
        "trained_vs_implied, padding_gap)",
    )
    fig.set_defaults(func=run)
