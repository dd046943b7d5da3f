"""The ``cardcenter`` command line.

Each command group has its own module with a ``register(subparsers)``;
:func:`main` wires them and turns the centre's errors into one sentence on
stderr (exit status 1), never a traceback. ``--json`` on every command
prints the result for scripts.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    from cardcenter.cli import accounts, cards, demo, reports, serve, setup, tokens

    parser = argparse.ArgumentParser(
        prog="cardcenter",
        description="The billing centre: accounts, cards, sales, reconciliation and reports.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    setup.register(sub)
    accounts.register(sub)
    cards.register(sub)
    tokens.register(sub)
    reports.register(sub)
    demo.register(sub)
    serve.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; errors become a sentence and exit status 1."""
    from cardcenter.cli.context import ERRORS
    from cardlayout.cli.common import run_handler

    return run_handler("cardcenter", build_parser().parse_args(argv), ERRORS)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
