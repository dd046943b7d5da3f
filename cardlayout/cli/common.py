"""Options and helpers shared by the commands that touch a card."""

from __future__ import annotations

import argparse
import sys

from cardlayout.errors import CardLayoutError
from cardlayout.transport.channel import CardChannel


def add_reader_options(parser: argparse.ArgumentParser) -> None:
    """``--reader``, ``--timeout`` and ``--trace`` for every card command."""
    parser.add_argument(
        "--reader",
        required=True,
        help="PC/SC reader: its name, a unique part of it, or its index in `cardlayout readers`",
    )
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds to wait for a card (default 10)"
    )
    parser.add_argument(
        "--trace",
        action="store_true",
        help="print each command APDU as '> HEX' and each response as '< HEX' on stderr",
    )


def open_channel(args: argparse.Namespace) -> CardChannel:
    """Connect to the card in the chosen reader, waiting for it if needed."""
    from cardlayout.transport.pcsc import PcscTransport

    reader: str | int = int(args.reader) if str(args.reader).isdigit() else args.reader
    channel = CardChannel(
        PcscTransport(reader, timeout=args.timeout), trace=sys.stderr if args.trace else None
    )
    channel.connect()
    return channel


def run_handler(
    prog: str, args: argparse.Namespace, errors: tuple[type[Exception], ...] = ()
) -> int:
    """Run ``args.handler``; the project's errors (and ``errors``) become a sentence.

    Exit status 1 for an error, 130 for an interrupt: the policy of every
    command line of the project, written once.
    """
    expected: tuple[type[Exception], ...] = (CardLayoutError, *errors)
    try:
        result: int = args.handler(args)
    except expected as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"{prog}: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return result
