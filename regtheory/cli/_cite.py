"""``regtheory cite``: BibTeX for the package and the papers behind its figures."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from .._cite import cite

    print(cite(*(args.figure or ()), all=args.all), end="")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    cit = sub.add_parser(
        "cite",
        help="BibTeX for regtheory and for the papers behind its figures and results",
        description="Print the BibTeX entry of regtheory (this version, and the git commit when "
        "run from a git checkout) and, with --figure or --all, the entries of the papers whose "
        "results those figures (or every figure and every function of the package) compute, "
        "each once; a %% line before an entry names the theorems or equations cited.",
    )
    cit.add_argument(
        "--figure",
        action="append",
        metavar="NAME",
        help="a registered figure (regtheory figures --list); repeat for several",
    )
    cit.add_argument(
        "--all",
        action="store_true",
        help="the papers of every figure and of every result the package computes",
    )
    cit.set_defaults(func=run)
