"""``regtheory compare``: one convolution task under four kinds of dropout."""

from __future__ import annotations

import argparse
import json

from ._common import solver_option

# The keys of regtheory.compare.METHODS, named here so that building the parser does not
# import cvxpy (a test checks that the two agree).
METHODS = ("fc", "element", "channel", "block")


def run(args: argparse.Namespace) -> int:
    from ..compare import compare
    from ..data import conv_task, teacher_kernel

    teacher = teacher_kernel(args.kernel_size, rng=args.seed)
    task = conv_task(
        args.n, teacher, args.n_train, args.n_test, args.noise, rng=args.seed, inputs=args.inputs
    )
    result = compare(
        task,
        args.keep,
        args.channels,
        args.kernel_size,
        block_size=args.block_size,
        methods=args.methods,
        train=args.train,
        rng=args.seed,
        solver=args.solver,
    )
    rows = [r.to_dict() for r in result.results.values()]
    if args.json:
        settings = {k: v for k, v in vars(args).items() if k != "func"}
        print(json.dumps({"settings": settings, "results": rows}, indent=1))
        return 0
    print(
        f"task: n={args.n}, K={args.kernel_size}, C={args.channels}, keep={args.keep}, "
        f"{args.inputs} inputs, noise {args.noise}, seed {args.seed}"
        + ("" if args.solver is None else f", solver {args.solver}")
    )
    print(
        f"{'method':<9} {'objective':>10} {'test risk':>10} {'rank':>5} "
        f"{'trained risk':>13} {'gap':>9}"
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


def add_parser(sub: argparse._SubParsersAction) -> None:
    cmp = sub.add_parser(
        "compare",
        help="one conv task under FC, conv, channel and block dropout",
        description=(
            "Learn one 1-D circular convolution task y = Mx (a teacher kernel, signals of "
            "length --n) under four kinds of dropout: an FC layer (squared nuclear norm), a "
            "two-layer conv net with elementwise dropout (nuclear norm of the lifted kernel) "
            "or channel dropout (a ridge), and FC blocks (spectral k-support norm). Each is "
            "solved as its implied convex problem with cvxpy and, unless --no-train, trained "
            "with real dropout masks; the table gives the implied objective, its test risk, "
            "the rank of the end-to-end map, the trained net's test risk, and the relative "
            "distance between the trained and the implied maps."
        ),
    )
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
    solver_option(cmp, "every implied problem")
    cmp.add_argument("--json", action="store_true", help="machine-readable output")
    cmp.set_defaults(func=run)
