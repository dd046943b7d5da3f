"""The ``cardlayout`` command line.

Each command group lives in its own module with a ``register(subparsers)``
function; :func:`main` wires them together and turns the project's own errors
into one sentence on stderr (exit status 1) instead of a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cardlayout.errors import CardLayoutError


def build_parser() -> argparse.ArgumentParser:
    """Return the parser with every command group registered."""
    from cardlayout.cli import card, keys, vcard

    parser = argparse.ArgumentParser(
        prog="cardlayout",
        description="Card layout, keys, virtual card and card I/O for IC-card prepayment.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    keys.register(sub)
    vcard.register(sub)
    card.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; errors become a sentence and exit status 1."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.handler(args)
    except CardLayoutError as exc:
        print(f"cardlayout: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"cardlayout: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("cardlayout: interrupted", file=sys.stderr)
        return 130
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
