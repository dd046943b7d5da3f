"""``cardcenter demo``: the whole story of a customer, end to end, printed step by step.

Keys and books in a fresh directory; virtual cards inserted into the vpcd
reader of pcscd (the path a USB reader takes); the meter is the ``cardmeter``
program, run as its own process, which meets the centre only through the
card, as in the field. Steps: open an account and issue the opening card with
a first purchase, the meter takes it, weeks of consumption, purchases that
reconcile the meter's write-back, a lost card and its replacement (the old
card is then refused by the meter), and the reports.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import select

from cardcenter.cards.issuing import issue_card, replace_card
from cardcenter.cli.context import key_values
from cardcenter.core.db import make_engine, session_factory, transaction, upgrade
from cardcenter.customers.services import open_account
from cardcenter.reports.export import to_text
from cardcenter.reports.services import REPORTS
from cardcenter.sales.desk import Desk
from cardcenter.sales.models import Sale, SaleStatus
from cardcenter.tariffs.models import TariffKind
from cardcenter.tariffs.pricing import format_money
from cardcenter.tariffs.services import add_tariff, get_or_create_category
from cardlayout.security.diversify import CardKeys
from cardlayout.security.keystore import init_master_keys, open_keystore
from cardlayout.transport.channel import CardChannel
from cardlayout.transport.pcsc import (
    VPCD_FIRST_PORT,
    PcscTransport,
    list_readers,
    vpcd_reader_name,
    wait_until_vpcd_empty,
)
from cardlayout.vcard.cos import VirtualCard, new_image
from cardlayout.vcard.vpcd import VpcdBridge

METER_NO = "000012345678"
PASSPHRASE = "demo only, not for production"
SERIALS = (bytes.fromhex("5A00000000DE0001"), bytes.fromhex("5A00000000DE0002"))
VPCD_PORT = VPCD_FIRST_PORT


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = sub.add_parser(
        "demo",
        help="run the whole story end to end on virtual cards through PC/SC",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--workdir", type=Path, help="keep the books and keys here (default: temp)")
    demo.add_argument("--weeks", type=int, default=3, help="weeks of consumption between visits")
    demo.add_argument("--trace", action="store_true", help="print every APDU of the centre")
    demo.set_defaults(handler=run_demo)


class Story:
    """The demo's narrator: numbered steps, each with what happened."""

    def __init__(self) -> None:
        self.number = 0

    def step(self, title: str) -> None:
        self.number += 1
        print(f"\n== {self.number}. {title}", flush=True)

    def show(self, result: Any) -> None:
        print(key_values(result) if isinstance(result, dict) else result, flush=True)


def _reader(port: int) -> str:
    name = vpcd_reader_name(list_readers(), port)
    if name is None:
        raise SystemExit(
            "cardcenter demo: pcscd does not list the vpcd reader; run scripts/setup first"
        )
    return name


@contextmanager
def inserted(card: VirtualCard) -> Iterator[VpcdBridge]:
    """The virtual card in the vpcd reader for the length of the block."""
    bridge = VpcdBridge(card, port=VPCD_PORT)
    bridge.insert()
    try:
        yield bridge
    finally:
        bridge.remove()
        wait_until_vpcd_empty(VPCD_PORT)  # the next card must be seen as new


def _meter(work: Path, *args: str) -> dict[str, Any]:
    """Run the ``cardmeter`` program (the meter is its own process, as in the field)."""
    command = [sys.executable, "-m", "cardmeter.cli", *args]
    done = subprocess.run(command, cwd=work, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"cardmeter {' '.join(args[:1])} failed: {done.stderr.strip()}")
    try:
        result: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError:
        lines = [line for line in done.stdout.splitlines() if line.strip()]
        try:
            result = json.loads(lines[-1]) if lines else {}
        except json.JSONDecodeError:
            result = {"output": done.stdout.strip()}
    return result


def _channel(reader: str, trace: bool) -> CardChannel:
    channel = CardChannel(PcscTransport(reader, timeout=10), trace=sys.stderr if trace else None)
    channel.connect()
    return channel


def run_demo(args: argparse.Namespace) -> int:
    os.environ.setdefault("CARDLAYOUT_KEYSTORE_PASSPHRASE", PASSPHRASE)
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        return _story(args.workdir, args)
    with tempfile.TemporaryDirectory(prefix="cardcenter-demo-") as tmp:
        return _story(Path(tmp), args)


def _story(work: Path, args: argparse.Namespace) -> int:
    story = Story()
    days = str(7 * args.weeks)
    story.step(f"the centre's books (SQLite) and master keys in {work}")
    engine = make_engine(f"sqlite:///{work / 'centre.db'}")
    upgrade(engine)
    sessions = session_factory(engine)
    keystore = str(work / "keys.json")
    store = open_keystore(keystore, create=True, scrypt_n=2**14)
    if not store.list_keys():
        init_master_keys(store)
    for info in store.list_keys():
        print(f"  {info}")
    desk = Desk(sessions, CardKeys(store), operator="demo", site="HQ")
    reader = _reader(VPCD_PORT)

    story.step("a flat tariff of 0.5283 a kWh with 13 % tax for residential customers")
    with transaction(sessions) as session:
        get_or_create_category(session, "residential", "Residential")
        version = add_tariff(
            session,
            "residential-flat",
            TariffKind.FLAT,
            {"rate_prices": [5283]},
            category="residential",
            tax_rate=1300,
        )
        category_id = version.tariff.category_id
        assert category_id is not None
        customer = open_account(session, name="Li Wei", meter_no=METER_NO, category_id=category_id)
        customer_no = customer.customer_no
    print(f"  account {customer_no} opened for meter {METER_NO}")

    story.step("a meter at the customer's premises, keys from the same key store")
    story.show(_meter(work, "init", "meter.json", "--meter-no", METER_NO, "--keystore", keystore))

    first, second = (VirtualCard(new_image(serial)) for serial in SERIALS)
    story.step("issue the opening card through PC/SC with a first purchase of 100.00")
    with inserted(first):
        channel = _channel(reader, args.trace)
        story.show(issue_card(desk, channel, customer_no, 10000, "demo-open"))
        channel.close()

        story.step("the meter takes the card: binds to it and loads the credit")
        story.show(_meter(work, "insert", "meter.json", "--reader", reader))
        for visit in range(2):
            story.step(f"{days} days of a residential household's consumption")
            story.show(_meter(work, "run", "meter.json", "--days", days, "--seed", str(visit)))
            story.step("the customer inserts the card: the meter writes its state back")
            story.show(_meter(work, "insert", "meter.json", "--reader", reader))
            story.step("purchase of 80.00 at the service hall: write-back reconciled first")
            channel = _channel(reader, args.trace)
            story.show(desk.sell(channel, 8000, f"demo-sale-{visit}"))
            channel.close()
            story.step("the meter loads the new purchase")
            story.show(_meter(work, "insert", "meter.json", "--reader", reader))

    story.step("the card is lost; a replacement card is issued from a blank one")
    with inserted(second):
        channel = _channel(reader, args.trace)
        story.show(replace_card(desk, channel, customer_no, "lost"))
        channel.close()
        story.step("the replacement card in the meter: its serial is registered")
        story.show(_meter(work, "insert", "meter.json", "--reader", reader))
        story.step(f"{days} more days, then a purchase of 50.00 on the replacement card")
        _meter(work, "run", "meter.json", "--days", days, "--seed", "9")
        _meter(work, "insert", "meter.json", "--reader", reader)
        channel = _channel(reader, args.trace)
        story.show(desk.sell(channel, 5000, "demo-sale-replacement"))
        channel.close()
        _meter(work, "insert", "meter.json", "--reader", reader)

    story.step("someone finds the lost card and tries it in the meter: refused")
    with inserted(first):
        story.show(_meter(work, "insert", "meter.json", "--reader", reader))
        channel = _channel(reader, args.trace)
        try:
            desk.read(channel)
        except Exception as exc:  # the centre refuses it too
            print(f"  the centre says: {exc}")
        channel.close()

    story.step("reports: sales with cash-up, consumption, findings")
    with sessions() as session:
        for kind in ("sales", "consumption", "findings"):
            print(to_text(REPORTS[kind](session)))
        sold = session.execute(
            select(Sale.credit, Sale.purchase_count).where(
                Sale.status.in_((SaleStatus.WRITTEN, SaleStatus.DELIVERED))
            )
        ).all()

    story.step("credit conservation: paid = on the meter + consumed + in transit")
    meter = _meter(work, "status", "meter.json")
    loaded = int(meter["last_purchase_count"])
    paid = sum(credit for credit, _ in sold)
    transit = sum(credit for credit, count in sold if count > loaded)
    rows = (
        ("paid (credit sold)", paid),
        ("on the meter", int(meter["remaining"])),
        ("consumed", int(meter["cumulative_used"])),
        ("in transit", transit),
    )
    for name, value in rows:
        print(f"  {name:<20} {format_money(value):>10}")
    holds = paid == sum(value for _, value in rows[1:])
    print("  conservation holds" if holds else "  CONSERVATION DOES NOT HOLD")
    store.close()
    engine.dispose()
    return 0 if holds else 1
