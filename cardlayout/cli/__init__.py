"""The ``cardlayout`` command line.

Each command group lives in its own module with a ``register(subparsers)``
function; :func:`main` wires them together and turns the project's own errors
into one sentence on stderr (exit status 1) instead of a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    """Return the parser with every command group registered."""
    from cardlayout.cli import card, keys, sts, vcard

    parser = argparse.ArgumentParser(
        prog="cardlayout",
        description="Card layout, keys, virtual card and card I/O for IC-card prepayment.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    keys.register(sub)
    vcard.register(sub)
    card.register(sub)
    sts.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; errors become a sentence and exit status 1."""
    from cardlayout.cli.common import run_handler

    return run_handler("cardlayout", build_parser().parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
