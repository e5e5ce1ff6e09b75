"""The ``regtheory`` command: its parser and :func:`main`.

The arguments are parsed before anything heavy is imported: each subcommand imports
what it computes with when it runs, so ``regtheory --help`` stays quick.
"""

from __future__ import annotations

import argparse
import sys

from . import _check, _cite, _compare, _figures, _penalty
from ._common import (
    EXIT_NUMERICAL_FAILURE,
    EXIT_STATUSES,
    EXIT_USER_ERROR,
    Parser,
    UsageError,
    one_line,
)


class _Version(argparse.Action):
    """``--version``, which looks the version up only when it is asked for."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs) -> None:
        kwargs.setdefault("help", "show program's version number and exit")
        super().__init__(
            option_strings, argparse.SUPPRESS, nargs=0, default=argparse.SUPPRESS, **kwargs
        )

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        from .. import __version__

        print(f"regtheory {__version__}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """The parser of the ``regtheory`` command: one subcommand per task."""
    parser = Parser(
        prog="regtheory",
        description="Regularization theory of dropout: figures, checks and citations.",
        epilog=EXIT_STATUSES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", required=True)
    for command in (_figures, _penalty, _check, _compare, _cite):
        command.add_parser(sub)
    return parser


# Solvers to suggest after a failed solve, best first: Clarabel and SCS solve every
# implied problem (they have the semidefinite cone), the others only some.
_SOLVER_PREFERENCE = ("CLARABEL", "SCS")


def _other_solver(failed: str) -> str | None:
    """An installed cvxpy solver other than ``failed``, the most capable first."""
    import cvxpy as cp

    installed = cp.installed_solvers()
    ordered = [s for s in _SOLVER_PREFERENCE if s in installed]
    ordered += [s for s in installed if s not in ordered]
    return next((s for s in ordered if s != str(failed).upper()), None)


def _numerical_failure(exc: BaseException) -> str:
    """The one line for a numerical failure; after a failed solve, a --solver to try."""
    from ..implied import SolverFailedError

    line = f"numerical failure: {one_line(exc)}"
    if isinstance(exc, SolverFailedError):
        other = _other_solver(exc.solver)
        if other is not None:
            line += f" -- on the command line, try --solver {other}"
    return line


def main(argv: list[str] | None = None) -> int:
    """Run the ``regtheory`` command on ``argv`` (default ``sys.argv[1:]``).

    Parameters
    ----------
    argv : list of str, optional
        The command line after the program name.

    Returns
    -------
    int
        The exit status: 0 success, 1 a check disagreed, 2 a user error, 3 a
        numerical failure (module docstring). Other exceptions, bugs, propagate.
    """
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USER_ERROR
    prog = " ".join(["regtheory", args.command, *([args.layer] if "layer" in args else [])])
    try:
        return args.func(args)
    except Exception as exc:
        status = _failure_status(exc)
        if status is None:  # a bug in regtheory: the traceback is what helps
            raise
        line = one_line(exc) if status == EXIT_USER_ERROR else _numerical_failure(exc)
        print(f"{prog}: {line}", file=sys.stderr)
        return status


def _failure_status(exc: Exception) -> int | None:
    """The exit status of an exception a command raised, or None for a bug.

    Imported here, after the command ran, so that parsing the arguments loads neither
    NumPy nor cvxpy.
    """
    import numpy as np

    from .._validation import InvalidParameterError
    from ..implied import SolverFailedError

    # A refused argument, or a file the user named that cannot be read or written.
    if isinstance(exc, (InvalidParameterError, OSError)):
        return EXIT_USER_ERROR
    # The input was accepted but the numbers failed: not a user error, not a bug.
    if isinstance(exc, (SolverFailedError, np.linalg.LinAlgError, FloatingPointError)):
        return EXIT_NUMERICAL_FAILURE
    return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
