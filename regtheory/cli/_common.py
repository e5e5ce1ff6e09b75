"""What the subcommands share.

Exit statuses, the one-line argument parser, option types and the reading of ``.npz``
files.
"""

from __future__ import annotations

import argparse
import zipfile

#: Exit statuses of the command (module docstring of :mod:`regtheory.cli`).
EXIT_OK = 0
EXIT_CHECK_FAILED = 1  # reserved: a command that checks a result and finds it wrong
EXIT_USER_ERROR = 2
EXIT_NUMERICAL_FAILURE = 3


class UsageError(Exception):
    """A command line argparse rejects; carries the one line to print."""


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (the usage block is one ``--help`` away).

    The stock parser prints the usage and exits from inside ``parse_args``; raising
    lets :func:`main` report every user error the same way, with status 2.
    """

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def int_at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


positive = int_at_least(1)


EXIT_STATUSES = """exit status:
  0  success
  1  a check disagreed (reserved for a command that checks a result)
  2  user error: a refused argument, an unreadable file (one line on stderr)
  3  numerical failure: a cvxpy solve that did not end optimal, a linear-algebra
     failure, a diverging computation (one line on stderr)
any other error is a bug in regtheory and shows its traceback"""


def _installed_solver(text: str) -> str:
    """``--solver``: the upper-case name of an installed cvxpy solver.

    cvxpy is imported only when the option is given.
    """
    import cvxpy as cp

    installed = cp.installed_solvers()
    if text.upper() not in installed:
        raise argparse.ArgumentTypeError(
            f"invalid choice: {text!r} (choose from {', '.join(installed)})"
        )
    return text.upper()


def solver_option(parser: argparse.ArgumentParser, what: str) -> None:
    """Add ``--solver NAME``, the cvxpy solver of ``what``."""
    parser.add_argument(
        "--solver",
        type=_installed_solver,
        metavar="NAME",
        help=f"cvxpy solver of {what}: any installed one, such as CLARABEL or SCS "
        "(default CLARABEL)",
    )


def read_npz(
    path: str,
    flag: str,
    required: tuple[str, ...],
    optional: tuple[str, ...] = (),
    *,
    only: bool = False,
):
    """The ``required`` (and present ``optional``) arrays of an ``.npz`` archive, in order.

    ``None`` stands for a missing optional one. Otherwise an InvalidParameterError names
    the option ``flag`` and the file (NumPy's errors for a file that is no archive are
    caught here, at the read, and nowhere else). With ``only``, an archive that holds
    any other array is refused too: a ``y`` beside ``X`` is a misspelt ``Y``, not
    something to skip.
    """
    import numpy as np

    from .._validation import InvalidParameterError

    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
        raise InvalidParameterError(f"cannot read {flag} {path}: {exc}") from None
    wanted = " and ".join(required) + "".join(f" (and optionally {n})" for n in optional)
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise InvalidParameterError(
            f"{flag} {path} holds a single array; it must be an .npz archive with arrays "
            f"{wanted} (numpy.savez)"
        )
    with archive:
        missing = [n for n in required if n not in archive.files]
        held = ", ".join(archive.files) or "no arrays"
        if missing:
            raise InvalidParameterError(
                f"{flag} {path} has no array {' or '.join(missing)} (it holds {held}); "
                f"it must hold {wanted}"
            )
        unknown = [n for n in archive.files if n not in (*required, *optional)]
        if only and unknown:
            raise InvalidParameterError(
                f"{flag} {path} holds arrays {held}, of which {', '.join(unknown)} "
                f"{'is' if len(unknown) == 1 else 'are'} not recognised (names are "
                f"case-sensitive); it must hold {wanted} and nothing else"
            )
        try:
            return tuple(archive[n] if n in archive.files else None for n in (*required, *optional))
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise InvalidParameterError(f"cannot read {flag} {path}: {exc}") from None


def one_line(exc: BaseException) -> str:
    # KeyError quotes its argument; other messages may span lines (the contract is one).
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(text.split()) or type(exc).__name__
