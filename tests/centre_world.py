"""A small world for the centre's story tests: books, a desk, cards and a real meter model.

The desk is the centre's real code; the cards are virtual cards (in-process,
or through pcscd where a test says so); the meter is ``cardmeter``'s model
with its own security module, meeting the centre only through the card.
Credit conservation is checked against the meter itself, not the books.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from centre_support import Database
from sqlalchemy import select

from cardcenter.cards.issuing import issue_card, replace_card
from cardcenter.core.db import transaction
from cardcenter.customers.services import open_account
from cardcenter.sales import ledger
from cardcenter.sales.desk import Desk
from cardcenter.sales.models import Sale, SaleStatus
from cardcenter.tariffs.models import TariffKind
from cardcenter.tariffs.services import add_tariff, get_or_create_category
from cardlayout.security.diversify import CardKeys
from cardlayout.transport.channel import CardChannel
from cardlayout.transport.inprocess import InProcessTransport
from cardlayout.vcard.cos import VirtualCard, new_image
from cardmeter import profiles
from cardmeter.insertion import Insertion, Outcome
from cardmeter.metering import run
from cardmeter.registers import MeterState
from cardmeter.security import SecurityModule


class Crash(Exception):
    """The desk process dies here (raised at a desk checkpoint by :func:`crash_at`)."""


def crash_at(step: str) -> Callable[[str], None]:
    """A desk checkpoint that dies at ``step``."""

    def checkpoint(name: str) -> None:
        if name == step:
            raise Crash(name)

    return checkpoint


def no_crash(name: str) -> None:
    """A desk checkpoint that lets every step pass."""
    return None


METER_NO = "000012345678"
PRICE = 5283  # 0.5283 a kWh
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def serial(n: int) -> bytes:
    return bytes.fromhex(f"5A0000000000{n:04X}")


def connect(card: VirtualCard) -> CardChannel:
    channel = CardChannel(InProcessTransport(card))
    channel.connect()
    return channel


Connect = Callable[[VirtualCard], CardChannel]


class Meter:
    """The customer's meter: the cardmeter model, each save kept as its memory would."""

    def __init__(
        self, keys: CardKeys, meter_no: str = METER_NO, connect: Connect = connect
    ) -> None:
        self.connect = connect
        self.sam = SecurityModule.provision(keys, meter_no)
        self.state = MeterState(meter_no=meter_no, clock=START)
        self.saved = copy.deepcopy(self.state)

    def save(self, state: MeterState) -> None:
        self.saved = copy.deepcopy(state)

    def insert(self, card: VirtualCard, step: Callable[[str], None] | None = None) -> Outcome:
        insertion = Insertion(self.state, self.sam, self.save, step=step)  # type: ignore[arg-type]
        return insertion.take(self.connect(card))

    def consume(self, days: int, seed: int = 1) -> None:
        run(self.state, profiles.residential(self.state.clock, days, seed))
        self.save(self.state)


class World:
    """One customer at one service hall, with a clock the tests move."""

    def __init__(
        self,
        db: Database,
        keys: CardKeys,
        *,
        tax_rate: int = 0,
        hoarding_limit: int | None = None,
        operator: str = "alice",
        connect: Connect = connect,
    ) -> None:
        self.connect = connect
        self.db = db
        self.keys = keys
        self.now = START
        self.desk = Desk(db.sessions, keys, operator=operator, site="HQ", clock=self.clock)
        with transaction(db.sessions) as session:
            get_or_create_category(session, "residential", "Residential")
            add_tariff(
                session,
                "flat",
                TariffKind.FLAT,
                {"rate_prices": [PRICE]},
                category="residential",
                active_from=START - timedelta(days=30),
                tax_rate=tax_rate,
                now=START,
            )
            customer = open_account(
                session, name="Li Wei", meter_no=METER_NO, category_id=1, now=START
            )
            customer.hoarding_limit = hoarding_limit
            self.customer_no = customer.customer_no
            self.customer_id = customer.id
        self.meter = Meter(keys, connect=connect)
        self.cards = 0

    def clock(self) -> datetime:
        return self.now

    def later(self, days: int) -> None:
        self.now += timedelta(days=days)

    def blank(self) -> VirtualCard:
        self.cards += 1
        return VirtualCard(new_image(serial(self.cards)))

    def issue(self, card: VirtualCard, amount: int | None = 10000, **kw: object) -> dict:
        channel = self.connect(card)
        return issue_card(self.desk, channel, self.customer_no, amount, **kw)  # type: ignore[arg-type]

    def sell(self, card: VirtualCard, amount: int, request_id: str | None = None) -> dict:
        return self.desk.sell(self.connect(card), amount, request_id)

    def replace(self, card: VirtualCard, reason: str = "lost") -> dict:
        return replace_card(self.desk, self.connect(card), self.customer_no, reason)

    def opened(self) -> VirtualCard:
        """A card issued with 100.00, loaded by the meter, three days used and read back."""
        card = self.blank()
        self.issue(card, 10000)
        self.meter.insert(card)
        self.use(3)
        self.meter.insert(card)
        return card

    def use(self, days: int, seed: int = 1) -> None:
        """The household uses energy for ``days`` days (meter clock and desk clock together)."""
        self.meter.consume(days, seed)
        self.later(days)

    # -- what the books and the meter say ---------------------------------------------

    def sales(self) -> list[Sale]:
        with self.db.sessions() as session:
            return list(session.scalars(select(Sale).order_by(Sale.id)))

    def paid(self) -> int:
        """Credit the customer paid for and that is on a card (written) or beyond."""
        return sum(
            s.credit for s in self.sales() if s.status in (SaleStatus.WRITTEN, SaleStatus.DELIVERED)
        )

    def in_transit(self) -> int:
        """Paid credit the meter itself has not loaded (by its purchase count)."""
        loaded = self.meter.state.last_purchase_count
        return sum(
            s.credit
            for s in self.sales()
            if s.status in (SaleStatus.WRITTEN, SaleStatus.DELIVERED) and s.purchase_count > loaded
        )

    def check_conservation(self) -> None:
        """paid = on the meter + consumed + in transit, from the meter's own registers."""
        st = self.meter.state
        on_meter, consumed = st.remaining, st.cumulative_used
        assert self.paid() == on_meter + consumed + self.in_transit(), (
            f"paid {self.paid()} != meter {on_meter} + consumed {consumed} "
            f"+ in transit {self.in_transit()}"
        )
        with self.db.sessions() as session:
            books = sum(
                ledger.balance(session, account(self.customer_id))
                for account in (ledger.meter, ledger.consumed, ledger.transit)
            )
        assert books == self.paid(), f"the journal holds {books}, paid {self.paid()}"
