"""The ``regtheory`` command line.

``regtheory figures [--list] [--only NAME ...] [--out DIR] [--quick] [--seed N]``
reproduces the figures into ``figures/``.
"""

from __future__ import annotations

import argparse
import sys
import time


def _figures(args: argparse.Namespace) -> int:
    from .figures import REGISTRY, render

    if args.list:
        width = max(len(n) for n in REGISTRY)
        for name, spec in REGISTRY.items():
            print(f"{name:<{width}}  {spec.description}")
        return 0
    names = args.only or list(REGISTRY)
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        print(
            f"regtheory figures: unknown figure(s) {', '.join(unknown)}; "
            f"valid names: {', '.join(REGISTRY)}",
            file=sys.stderr,
        )
        return 2
    for name in names:
        start = time.perf_counter()
        paths = render(name, args.out, quick=args.quick, seed=args.seed)
        print(f"{name}: {', '.join(str(p) for p in paths)} ({time.perf_counter() - start:.1f} s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="regtheory", description="Regularization theory of dropout: figures and checks."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    fig = sub.add_parser("figures", help="reproduce the figures (PNG, PDF and JSON data)")
    fig.add_argument("--out", default="figures", help="output directory (default: figures/)")
    fig.add_argument("--only", nargs="+", metavar="NAME", help="render only these figures")
    fig.add_argument("--quick", action="store_true", help="small sizes, for smoke runs")
    fig.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    fig.add_argument("--list", action="store_true", help="list the figures and exit")
    fig.set_defaults(func=_figures)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
