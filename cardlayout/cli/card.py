"""``cardlayout readers``, ``cardlayout card init`` and ``cardlayout dump``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from cardlayout.card.dump import snapshot_json
from cardlayout.card.operations import personalise
from cardlayout.card.snapshot import read_snapshot
from cardlayout.cli.common import add_reader_options, open_channel
from cardlayout.files import CardType, Utility
from cardlayout.security.diversify import CardKeys
from cardlayout.security.keystore import open_keystore

KINDS = {
    "user": CardType.OPENING,
    "parameter-setting": CardType.PARAMETER_SETTING,
    "reading": CardType.READING,
    "test-clear": CardType.TEST_CLEAR,
}


def register(sub: Any) -> None:
    """Add the card commands to the top-level parser."""
    readers = sub.add_parser("readers", help="list PC/SC readers")
    readers.add_argument("--json", action="store_true", help="print a JSON list")
    readers.set_defaults(handler=cmd_readers)

    card = sub.add_parser("card", help="personalise cards")
    card_sub = card.add_subparsers(dest="card_command", required=True, metavar="ACTION")
    init = card_sub.add_parser("init", help="personalise the blank card in a reader")
    add_reader_options(init)
    init.add_argument("--keystore", required=True, help="key file path or pkcs11: URI")
    init.add_argument(
        "--utility", choices=[u.value for u in Utility], default=Utility.ELECTRICITY.value
    )
    init.add_argument("--kind", choices=sorted(KINDS), default="user", help="card kind")
    init.set_defaults(handler=cmd_card_init)

    dump = sub.add_parser("dump", help="print the card in a reader as JSON")
    add_reader_options(dump)
    dump.add_argument("--utility", choices=[u.value for u in Utility], default=None)
    dump.set_defaults(handler=cmd_dump)


def cmd_readers(args: argparse.Namespace) -> int:
    from cardlayout.transport.pcsc import list_readers

    names = list_readers()
    if args.json:
        print(json.dumps(names))
    elif not names:
        print("no readers")
    else:
        for index, name in enumerate(names):
            print(f"{index}: {name}")
    return 0


def cmd_card_init(args: argparse.Namespace) -> int:
    with open_keystore(args.keystore) as store:
        channel = open_channel(args)
        try:
            serial = personalise(
                channel,
                CardKeys(store),
                utility=Utility(args.utility),
                card_type=KINDS[args.kind],
            )
        finally:
            channel.close()
    print(
        f"personalised card {serial.hex().upper()} as a {args.kind} card "
        f"for {args.utility} ({channel.apdus} APDUs)"
    )
    return 0


def cmd_dump(args: argparse.Namespace) -> int:
    channel = open_channel(args)
    try:
        snapshot = read_snapshot(channel, Utility(args.utility) if args.utility else None)
    finally:
        channel.close()
    print(json.dumps(snapshot_json(snapshot), indent=2))
    return 0
