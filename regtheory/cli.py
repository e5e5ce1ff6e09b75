"""The ``regtheory`` command line.

``regtheory figures [--list] [--only NAME ...] [--out DIR] [--quick] [--seed N]``
reproduces the figures into ``figures/``.

``regtheory compare [--n N] [--kernel-size K] [--channels C] [--keep P] ...``
solves one convolution task under FC, conv elementwise, channel and block
dropout and prints what each learns (``--json`` for scripts).
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


def _compare(args: argparse.Namespace) -> int:
    import json

    import numpy as np

    from .compare import compare
    from .data import conv_task

    rng = np.random.default_rng(args.seed)
    teacher = rng.standard_normal(2 * args.kernel_size - 1) / np.sqrt(2 * args.kernel_size - 1)
    task = conv_task(
        args.n, teacher, args.n_train, args.n_test, args.noise, args.seed, inputs=args.inputs
    )
    result = compare(
        task,
        args.keep,
        args.channels,
        args.kernel_size,
        block_size=args.block_size,
        methods=args.methods,
        train=args.train,
        seed=args.seed,
    )
    rows = []
    for name, r in result.results.items():
        rows.append(
            {
                "method": name,
                "objective": r.objective,
                "test_risk": r.test_risk,
                "rank": r.rank,
                "singular_values": r.singular_values.tolist(),
                "fourier_magnitudes": r.fourier_magnitudes.tolist(),
                "trained_test_risk": r.trained_test_risk,
                "gap_trained_vs_implied": r.gap,
            }
        )
    if args.json:
        print(json.dumps({"settings": vars(args) | {"func": None}, "results": rows}, indent=1))
        return 0
    print(
        f"task: n={args.n}, K={args.kernel_size}, C={args.channels}, keep={args.keep}, "
        f"{args.inputs} inputs, noise {args.noise}, seed {args.seed}"
    )
    print(
        f"{'method':<9} {'objective':>10} {'test risk':>10} {'rank':>5} {'trained risk':>13} {'gap':>9}"
    )
    for row in rows:
        trained = "" if row["trained_test_risk"] is None else f"{row['trained_test_risk']:.4f}"
        gap = (
            "" if row["gap_trained_vs_implied"] is None else f"{row['gap_trained_vs_implied']:.2e}"
        )
        print(
            f"{row['method']:<9} {row['objective']:>10.4f} {row['test_risk']:>10.4f} "
            f"{row['rank']:>5d} {trained:>13} {gap:>9}"
        )
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

    from .compare import METHODS

    cmp = sub.add_parser("compare", help="one conv task under FC, conv, channel and block dropout")
    cmp.add_argument("--n", type=int, default=16, help="signal length (default 16)")
    cmp.add_argument("--kernel-size", type=int, default=3, help="taps K per kernel (odd)")
    cmp.add_argument("--channels", type=int, default=3, help="hidden channels C")
    cmp.add_argument("--keep", type=float, default=0.5, help="retain probability")
    cmp.add_argument(
        "--block-size", type=int, default=None, help="units per block ('block'; default n)"
    )
    cmp.add_argument("--noise", type=float, default=0.1, help="label noise std")
    cmp.add_argument("--inputs", choices=["white", "natural"], default="white")
    cmp.add_argument("--n-train", type=int, default=200)
    cmp.add_argument("--n-test", type=int, default=1000)
    cmp.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    cmp.add_argument(
        "--no-train",
        dest="train",
        action="store_false",
        help="implied problems only (no dropout training)",
    )
    cmp.add_argument("--seed", type=int, default=0)
    cmp.add_argument("--json", action="store_true", help="machine-readable output")
    cmp.set_defaults(func=_compare)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError) as exc:  # a user error: one line, no traceback
        print(f"regtheory {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
