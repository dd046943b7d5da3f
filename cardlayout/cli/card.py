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

    bench = card_sub.add_parser(
        "write-purchase",
        help="test bench: write a purchase to a personalised user card (no ledger: the "
        "billing centre is what sells)",
    )
    add_reader_options(bench)
    bench.add_argument("--keystore", required=True, help="key file path or pkcs11: URI")
    bench.add_argument("--meter-no", required=True, help="12-digit meter number")
    bench.add_argument("--customer-no", required=True, help="12-digit customer number")
    bench.add_argument("--amount", required=True, help="amount in currency, e.g. 200.00")
    bench.add_argument("--count", type=int, default=1, help="purchase count (default 1)")
    bench.add_argument("--type", choices=["opening", "purchase", "replacement"], default="opening")
    bench.add_argument("--price", default="0.5283", help="single-rate price per unit")
    bench.set_defaults(handler=cmd_write_purchase)

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


def cmd_write_purchase(args: argparse.Namespace) -> int:
    from cardlayout.card.operations import PurchaseWrite, write_purchase
    from cardlayout.codec.money import parse_decimal
    from cardlayout.files import Parameters, Purse, TariffSet, UpdateFlags, UserType

    amount = parse_decimal(args.amount, 2, field="amount")
    price = parse_decimal(args.price, 4, field="price")
    card_type = CardType[args.type.upper()]
    params = Parameters(
        user_type=UserType.SINGLE_RATE,
        card_type=card_type,
        meter_no=args.meter_no,
        customer_no=args.customer_no,
        update_flags=UpdateFlags.PARAMETERS | UpdateFlags.CURRENT_TOU,
        alarm1=2000,
        alarm2=1000,
        overdraft_limit=1000,
    )
    tariff = TariffSet(rate_prices=(price,))
    with open_keystore(args.keystore) as store:
        channel = open_channel(args)
        try:
            after = write_purchase(
                channel,
                CardKeys(store),
                read_snapshot(channel),
                PurchaseWrite(
                    parameters=params,
                    purse=Purse(amount=amount, purchase_count=args.count),
                    tariff_set_1=tariff,
                    bind_meter=card_type is not CardType.PURCHASE,
                ),
            )
        finally:
            channel.close()
    purse = after.purse
    assert purse is not None
    print(
        f"wrote purchase {purse.purchase_count} of {args.amount} ({args.type} card) "
        f"for meter {args.meter_no}"
    )
    return 0
