"""Reconciling write-backs: delivery, consumption, conservation and every finding.

The rows are made directly with the models and the write-backs sealed with
the meter's own MAC (:func:`seal_meter_report`), so each test states exactly
what the meter reported and what the books must say after it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from centre_support import Database
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cardcenter.cards.models import Card
from cardcenter.core.errors import (
    CardRefusedError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
)
from cardcenter.customers.models import Category, Customer, Meter
from cardcenter.operators.models import Operator, Role
from cardcenter.reconciliation.models import (
    Finding,
    FindingKind,
    FindingStatus,
    MonthlyUsage,
    Reconciliation,
    WriteBackRecord,
    WriteBackSource,
)
from cardcenter.reconciliation.services import (
    ReconcileResult,
    ReconcileSettings,
    close_finding,
    list_findings,
    reconcile_write_back,
)
from cardcenter.sales import ledger
from cardcenter.sales.ledger import JournalEntry
from cardcenter.sales.models import Sale, SaleStatus
from cardcenter.tariffs.models import Tariff, TariffKind, TariffVersion
from cardlayout.card.operations import seal_meter_report, verify_meter_report
from cardlayout.errors import SecurityError
from cardlayout.files import (
    HISTORY,
    MONTHS,
    NO_STATUS,
    WRITE_BACK,
    Event,
    EventCode,
    History,
    InsertionResult,
    MeterStatus,
    UserType,
    WriteBack,
)
from cardlayout.security.diversify import CardKeys

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
DEFAULTS = ReconcileSettings()
PRICE = 5000
"""0.50 a kWh: 20.00 kWh (2000) cost exactly 10.00 (1000)."""
_numbers = itertools.count(1)


@dataclass
class World:
    """One customer with one meter (and card) on a flat tariff."""

    customer_id: int
    meter_id: int
    card_id: int
    operator_id: int
    version_id: int
    meter_no: str
    customer_no: str
    serial: bytes


def make_world(session: Session, *, price: int = PRICE, confirmed_tariff: bool = True) -> World:
    n = next(_numbers)
    category = session.scalar(select(Category).where(Category.code == "res"))
    if category is None:
        category = Category(code="res", name="Residential")
        session.add(category)
        session.flush()
    operator = Operator(username=f"op{n}", name="Op", role=Role.CASHIER, site="HQ")
    tariff = Tariff(name=f"flat{n}", category_id=None)
    session.add_all([operator, tariff])
    session.flush()
    version = TariffVersion(
        tariff_id=tariff.id,
        version=1,
        kind=TariffKind.FLAT,
        active_from=T0 - timedelta(days=365),
        structure={"rate_prices": [price]},
    )
    session.add(version)
    session.flush()
    customer = Customer(
        customer_no=f"3101{n:08d}", name=f"C{n}", category_id=category.id, tariff_id=tariff.id
    )
    session.add(customer)
    session.flush()
    meter = Meter(
        meter_no=f"1001{n:08d}",
        customer_id=customer.id,
        installed_at=T0 - timedelta(days=30),
        cumulative_quantity=0,
        cumulative_used=0,
        tariff_version_id=version.id if confirmed_tariff else None,
    )
    session.add(meter)
    session.flush()
    serial = bytes.fromhex(f"C15C4684{n:08X}")
    card = Card(serial=serial.hex().upper(), customer_id=customer.id, meter_id=meter.id)
    session.add(card)
    session.flush()
    return World(
        customer.id,
        meter.id,
        card.id,
        operator.id,
        version.id,
        meter.meter_no,
        customer.customer_no,
        serial,
    )


def add_sale(
    session: Session,
    w: World,
    count: int,
    credit: int,
    *,
    status: SaleStatus = SaleStatus.WRITTEN,
    parameter_version: int = 1,
    tariff_version_id: int | None = None,
) -> Sale:
    """A paid sale in transit, posted till -> transit as the sales service does."""
    sale = Sale(
        request_id=f"req-{next(_numbers)}",
        status=status,
        customer_id=w.customer_id,
        meter_id=w.meter_id,
        operator_id=w.operator_id,
        site="HQ",
        purchase_count=count,
        tendered=credit,
        credit=credit,
        card_amount=credit,
        parameter_version=parameter_version,
        tariff_version_id=tariff_version_id,
    )
    session.add(sale)
    session.flush()
    ledger.post(
        session,
        ledger.till("HQ"),
        ledger.transit(w.customer_id),
        credit,
        "sale",
        customer_id=w.customer_id,
        sale_id=sale.id,
    )
    return sale


@dataclass
class Report:
    write_back: WriteBack
    history: History | None
    raw_write_back: bytes
    raw_history: bytes | None


def report(
    keys: CardKeys,
    w: World,
    *,
    at: datetime,
    count: int = 0,
    balance: int = 0,
    quantity: int = 0,
    used: int | None = None,
    illegal: int = 0,
    status: MeterStatus = NO_STATUS,
    events: tuple[Event, ...] = (),
    frozen: tuple[date, tuple[int, ...]] | None = None,
    history: bool = True,
    meter_no: str | None = None,
    customer_no: str | None = None,
) -> Report:
    """What the meter writes: ``balance`` signed (split into remaining and overdraft)."""
    wb = WriteBack(
        user_type=UserType.SINGLE_RATE,
        ct_ratio=1,
        pt_ratio=1,
        meter_no=meter_no or w.meter_no,
        customer_no=customer_no or w.customer_no,
        remaining_amount=max(0, balance),
        purchase_count=count,
        overdraft_used=max(0, -balance),
        illegal_card_count=illegal,
        meter_status=status,
        insertion_result=InsertionResult.NOTHING_TO_LOAD,
        written_at=at,
    )
    hist = None
    if history:
        month, usages = frozen if frozen else (None, (0,) * MONTHS)
        hist = History(
            cumulative_purchased=1,
            cumulative_used=quantity * PRICE // 10_000 if used is None else used,
            cumulative_quantity=quantity,
            status=status,
            latest_frozen_month=month,
            monthly_usages=usages,
            events=events,
        )
    sealed, sealed_history = seal_meter_report(keys.writeback_key(wb.meter_no), w.serial, wb, hist)
    return Report(
        sealed,
        sealed_history,
        WRITE_BACK.encode(sealed),
        HISTORY.encode(sealed_history) if sealed_history is not None else None,
    )


def reconcile(
    session: Session,
    w: World,
    r: Report,
    *,
    card: bool = False,
    settings: ReconcileSettings = DEFAULTS,
) -> ReconcileResult:
    meter = session.get(Meter, w.meter_id)
    assert meter is not None
    return reconcile_write_back(
        session,
        meter=meter,
        card_serial=w.serial.hex().upper(),
        write_back=r.write_back,
        history=r.history,
        raw_write_back=r.raw_write_back,
        raw_history=r.raw_history,
        source=WriteBackSource.SALE,
        card=session.get(Card, w.card_id) if card else None,
        operator_id=w.operator_id,
        settings=settings,
    )


def balances(session: Session, customer_id: int) -> dict[str, int]:
    return {
        name: ledger.balance(session, account(customer_id))
        for name, account in (
            ("transit", ledger.transit),
            ("meter", ledger.meter),
            ("consumed", ledger.consumed),
        )
    }


def assert_conserved(session: Session, customer_id: int) -> None:
    """DESIGN.md 7: credit paid = on the meter + consumed + still in transit."""
    paid = session.scalar(
        select(func.coalesce(func.sum(Sale.credit), 0)).where(Sale.customer_id == customer_id)
    )
    assert sum(balances(session, customer_id).values()) == paid


def kinds(findings: list[Finding]) -> list[FindingKind]:
    return sorted(FindingKind(f.kind) for f in findings)


def count(session: Session, model: Any) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


# ---------------------------------------------------------------- delivery and consumption


def test_a_write_back_delivers_the_sale_and_books_consumption(db: Database, keys: CardKeys) -> None:
    at = T0 + timedelta(days=3)
    with db.sessions.begin() as session:
        w = make_world(session)
        sale = add_sale(session, w, 1, 10_000, parameter_version=4, tariff_version_id=w.version_id)
        # 20.00 kWh at 0.50 is 10.00: 100.00 loaded, 90.00 left
        r = report(keys, w, at=at, count=1, balance=9_000, quantity=2_000)
        result = reconcile(session, w, r, card=True)

        assert not result.duplicate and not result.stale
        assert result.findings == []
        assert [s.id for s in result.delivered] == [sale.id]
        assert sale.status == SaleStatus.DELIVERED and sale.delivered_at == at
        rec = result.reconciliation
        assert rec is not None
        assert (rec.delivered, rec.consumed, rec.energy) == (10_000, 1_000, 2_000)
        assert (rec.implied_min, rec.implied_max) == (1_000, 1_000)
        assert rec.period_start is None and rec.period_end == at
        assert rec.detail["consumed"] == 1_000
        assert rec.detail["delivered"] == [[sale.id, 1, 10_000]]
        assert rec.detail["before"]["remaining"] == 0 and rec.detail["after"]["remaining"] == 9_000
        assert (rec.detail["energy"], rec.detail["used"], rec.detail["implied"]) == (
            2_000,
            1_000,
            [1_000, 1_000],
        )
        assert balances(session, w.customer_id) == {"transit": 0, "meter": 9_000, "consumed": 1_000}
        assert_conserved(session, w.customer_id)
        meter = session.get(Meter, w.meter_id)
        assert meter is not None
        assert (meter.loaded_count, meter.remaining, meter.balance) == (1, 9_000, 9_000)
        assert (meter.cumulative_quantity, meter.cumulative_used) == (2_000, 1_000)
        assert meter.last_write_back_at == at
        assert (meter.parameter_version, meter.tariff_version_id) == (4, w.version_id)
        card = session.get(Card, w.card_id)
        assert card is not None and card.registered
        stored = result.record
        assert stored.digest == __import__("hashlib").sha256(r.raw_write_back).hexdigest()
        assert (stored.source, stored.purchase_count, stored.remaining) == ("sale", 1, 9_000)
        assert stored.raw_history == r.raw_history


def test_two_sales_sharing_a_count_arrive_together_and_a_later_one_waits(
    db: Database, keys: CardKeys
) -> None:
    with db.sessions.begin() as session:
        w = make_world(session)
        first = add_sale(session, w, 1, 5_000, parameter_version=2)
        added = add_sale(
            session,
            w,
            1,
            3_000,
            parameter_version=3,
            tariff_version_id=w.version_id,
        )
        later = add_sale(session, w, 2, 7_000, parameter_version=9)
        r = report(keys, w, at=T0 + timedelta(days=1), count=1, balance=8_000)
        result = reconcile(session, w, r)

        assert [s.id for s in result.delivered] == [first.id, added.id]
        assert later.status == SaleStatus.WRITTEN and later.delivered_at is None
        assert result.reconciliation is not None
        assert (result.reconciliation.delivered, result.reconciliation.consumed) == (8_000, 0)
        assert balances(session, w.customer_id) == {"transit": 7_000, "meter": 8_000, "consumed": 0}
        assert_conserved(session, w.customer_id)
        meter = session.get(Meter, w.meter_id)
        assert meter is not None and meter.parameter_version == 3  # the latest sale of the count
        entries = session.scalars(
            select(JournalEntry).where(JournalEntry.reconciliation_id == result.reconciliation.id)
        ).all()
        assert sorted((e.source, e.destination, e.amount, e.sale_id) for e in entries) == sorted(
            [
                (f"transit:{w.customer_id}", f"meter:{w.customer_id}", 5_000, first.id),
                (f"transit:{w.customer_id}", f"meter:{w.customer_id}", 3_000, added.id),
            ]
        )


def test_a_sequence_of_write_backs_keeps_the_journal_equal_to_the_meter(
    db: Database, keys: CardKeys
) -> None:
    with db.sessions.begin() as session:
        w = make_world(session)
        add_sale(session, w, 1, 10_000)
        reconcile(session, w, report(keys, w, at=T0, count=1, balance=10_000))
        add_sale(session, w, 2, 2_000)
        # 30.00 kWh (15.00) later, into overdraft before the sale arrives: -5.00 then +20.00
        r = report(keys, w, at=T0 + timedelta(days=9), count=1, balance=-500, quantity=21_000)
        result = reconcile(session, w, r)
        assert result.reconciliation is not None and result.findings == []
        assert result.reconciliation.consumed == 10_500
        assert result.reconciliation.overdraft_used == 500
        r = report(keys, w, at=T0 + timedelta(days=10), count=2, balance=1_000, quantity=22_000)
        result = reconcile(session, w, r)
        assert result.reconciliation is not None and result.findings == []
        assert (result.reconciliation.delivered, result.reconciliation.consumed) == (2_000, 500)
        assert balances(session, w.customer_id)["meter"] == 1_000
        assert_conserved(session, w.customer_id)


# ---------------------------------------------------------------- stored once, in order


def test_the_same_write_back_read_twice_is_reconciled_once(db: Database, keys: CardKeys) -> None:
    with db.sessions.begin() as session:
        w = make_world(session)
        add_sale(session, w, 1, 10_000)
        r = report(keys, w, at=T0, count=1, balance=9_000, quantity=2_000)
        first = reconcile(session, w, r)
    with db.sessions.begin() as session:
        entries = count(session, JournalEntry)
        again = reconcile(session, w, r, card=True)
        assert again.duplicate and not again.stale
        assert again.record.id == first.record.id
        assert again.reconciliation is not None
        assert first.reconciliation is not None
        assert again.reconciliation.id == first.reconciliation.id
        assert again.delivered == [] and again.findings == []
        assert count(session, JournalEntry) == entries
        assert count(session, WriteBackRecord) == 1
        assert count(session, Reconciliation) == 1
        card = session.get(Card, w.card_id)
        # nothing else changes, but the card is marked as taken by the meter, which wrote
        # this write-back on it (a replacement read only after an import registers so)
        assert card is not None and card.registered
        assert_conserved(session, w.customer_id)


def test_an_older_write_back_is_stored_but_moves_no_money(db: Database, keys: CardKeys) -> None:
    with db.sessions.begin() as session:
        w = make_world(session)
        add_sale(session, w, 1, 10_000)
        old = report(keys, w, at=T0, count=0, balance=0)
        new = report(keys, w, at=T0 + timedelta(days=2), count=1, balance=9_000, quantity=2_000)
        reconcile(session, w, new)
        entries = count(session, JournalEntry)
        result = reconcile(session, w, old)
        assert result.stale and not result.duplicate
        assert result.reconciliation is None and result.delivered == []
        assert result.record.id is not None and result.record.written_at == T0
        assert count(session, JournalEntry) == entries
        meter = session.get(Meter, w.meter_id)
        assert meter is not None
        assert (meter.loaded_count, meter.balance) == (1, 9_000)
        assert meter.last_write_back_at == T0 + timedelta(days=2)
        # another insertion in the same second as the baseline (the write-back time has
        # whole seconds): not stale, it is reconciled; the identical bytes are a duplicate
        same = report(keys, w, at=T0 + timedelta(days=2), count=1, balance=8_000, quantity=4_000)
        result = reconcile(session, w, same)
        assert not result.stale and result.findings == []
        assert result.reconciliation is not None and result.reconciliation.consumed == 1_000
        assert_conserved(session, w.customer_id)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("meter_no", "100199999999", "is from meter 100199999999, not meter"),
        ("customer_no", "310199999999", "for customer 310199999999, but the books have it"),
    ],
)
def test_a_write_back_of_another_meter_or_customer_is_refused_and_nothing_is_stored(
    db: Database, keys: CardKeys, field: str, value: str, message: str
) -> None:
    with db.sessions.begin() as session:
        w = make_world(session)
        add_sale(session, w, 1, 10_000)
        r = report(keys, w, at=T0, count=1, balance=10_000, **{field: value})
        with pytest.raises(CardRefusedError, match=message):
            reconcile(session, w, r)
        assert count(session, WriteBackRecord) == 0
        assert count(session, Reconciliation) == 0
        assert session.scalar(select(Sale.status)) == SaleStatus.WRITTEN


def test_a_meter_without_a_customer_is_refused(db: Database, keys: CardKeys) -> None:
    with db.sessions.begin() as session:
        w = make_world(session)
        meter = session.get(Meter, w.meter_id)
        assert meter is not None
        meter.customer_id = None
        session.flush()
        session.expire(meter)
        with pytest.raises(CardRefusedError, match="has no customer account"):
            reconcile(session, w, report(keys, w, at=T0))
        assert count(session, WriteBackRecord) == 0


# ---------------------------------------------------------------- findings


def _baseline(session: Session, keys: CardKeys, w: World, **kwargs: Any) -> None:
    """A first write-back at T0: 100.00 on the meter, registers at 0."""
    add_sale(session, w, 1, 10_000)
    reconcile(session, w, report(keys, w, at=T0, count=1, balance=10_000, **kwargs))


@pytest.mark.parametrize(
    ("consumed", "mismatch"),
    [(1_000, False), (1_100, False), (900, False), (1_101, True), (899, True), (2_000, True)],
)
def test_consumption_is_checked_against_the_tariff_with_a_tolerance(
    db: Database, keys: CardKeys, consumed: int, mismatch: bool
) -> None:
    with db.sessions.begin() as session:
        w = make_world(session)
        _baseline(session, keys, w)
        # 20.00 kWh at 0.50 implies exactly 10.00; the tolerance is 1.00 (2 % is 0.20)
        r = report(
            keys,
            w,
            at=T0 + timedelta(days=1),
            count=1,
            balance=10_000 - consumed,
            quantity=2_000,
            used=consumed,
        )
        result = reconcile(session, w, r)
        assert kinds(result.findings) == ([FindingKind.MISMATCH] if mismatch else [])
        if mismatch:
            text = result.findings[0].detail
            assert text.startswith(
                f"consumed {consumed // 100}.{consumed % 100:02d} but the tariff implies "
                "10.00 to 10.00 for 20.00 kWh since 2026-03-01T08:00:00+00:00 (tolerance 1.00)"
            )
            assert result.findings[0].reconciliation_id == result.reconciliation.id  # type: ignore[union-attr]
        assert result.reconciliation is not None
        assert result.reconciliation.findings == len(result.findings)
        assert result.reconciliation.detail["tolerance"] == 100


def test_the_ratio_tolerance_applies_when_it_is_the_larger(db: Database, keys: CardKeys) -> None:
    with db.sessions.begin() as session:
        w = make_world(session)
        _baseline(session, keys, w)
        # 196.00 kWh implies 98.00: 2 % is 1.96, more than the fixed 1.00, so 99.90 passes
        r = report(
            keys, w, at=T0 + timedelta(days=5), count=1, balance=10, quantity=19_600, used=9_990
        )
        result = reconcile(session, w, r)
        assert result.findings == []
        assert result.reconciliation is not None
        assert result.reconciliation.detail["tolerance"] == 196
        assert (result.reconciliation.implied_min, result.reconciliation.implied_max) == (
            9_800,
            9_800,
        )


def test_the_tariff_comes_from_the_customer_when_the_meter_confirmed_none(
    db: Database, keys: CardKeys
) -> None:
    with db.sessions.begin() as session:
        w = make_world(session, confirmed_tariff=False)
        _baseline(session, keys, w)
        r = report(keys, w, at=T0 + timedelta(days=1), count=1, balance=5_000, quantity=2_000)
        result = reconcile(session, w, r)
        assert result.reconciliation is not None
        assert result.reconciliation.detail["tariff_versions"] == [w.version_id]
        assert (result.reconciliation.implied_min, result.reconciliation.implied_max) == (
            1_000,
            1_000,
        )
        # 50.00 consumed where 10.00 was due (and the meter's register says 10.00)
        assert kinds(result.findings) == [FindingKind.MISMATCH, FindingKind.MISMATCH]


def test_a_later_version_of_the_tariff_widens_the_bounds(db: Database, keys: CardKeys) -> None:
    with db.sessions.begin() as session:
        w = make_world(session)
        _baseline(session, keys, w)
        tariff_id = session.get(TariffVersion, w.version_id).tariff_id  # type: ignore[union-attr]
        session.add(
            TariffVersion(
                tariff_id=tariff_id,
                version=2,
                kind=TariffKind.FLAT,
                active_from=T0 + timedelta(hours=12),
                structure={"rate_prices": [10_000]},
            )
        )
        session.flush()
        r = report(
            keys, w, at=T0 + timedelta(days=1), count=1, balance=8_500, quantity=2_000, used=1_500
        )
        result = reconcile(session, w, r)
        assert result.findings == []
        assert result.reconciliation is not None
        assert (result.reconciliation.implied_min, result.reconciliation.implied_max) == (
            1_000,
            2_000,
        )


def test_no_tariff_means_no_tariff_check(db: Database, keys: CardKeys) -> None:
    with db.sessions.begin() as session:
        w = make_world(session, confirmed_tariff=False)
        customer = session.get(Customer, w.customer_id)
        assert customer is not None
        customer.tariff_id = None
        session.flush()
        _baseline(session, keys, w)
        r = report(
            keys, w, at=T0 + timedelta(days=1), count=1, balance=1_000, quantity=2_000, used=9_000
        )
        result = reconcile(session, w, r)
        assert result.findings == []
        assert result.reconciliation is not None
        assert result.reconciliation.implied_min is None


def test_the_meter_charge_register_must_match_the_fall_in_credit(
    db: Database, keys: CardKeys
) -> None:
    with db.sessions.begin() as session:
        w = make_world(session)
        _baseline(session, keys, w)
        # credit fell by 10.00 but the meter charged only 5.00: 5.00 came from nowhere
        r = report(
            keys, w, at=T0 + timedelta(days=1), count=1, balance=9_000, quantity=2_000, used=500
        )
        result = reconcile(session, w, r)
        assert kinds(result.findings) == [FindingKind.MISMATCH]
        assert result.findings[0].detail.startswith(
            "the meter charged 5.00 since 2026-03-01T08:00:00+00:00 but its credit fell by "
            "10.00 after 0.00 delivered"
        )


def test_credit_that_rises_without_a_sale_is_negative_consumption(
    db: Database, keys: CardKeys
) -> None:
    with db.sessions.begin() as session:
        w = make_world(session)
        _baseline(session, keys, w)
        r = report(keys, w, at=T0 + timedelta(days=1), count=1, balance=12_000, quantity=0)
        result = reconcile(session, w, r)
        assert FindingKind.NEGATIVE_CONSUMPTION in kinds(result.findings)
        text = next(f.detail for f in result.findings if f.kind == "negative_consumption")
        assert text.startswith("the meter's credit rose by 20.00 more than the 0.00 delivered")
        assert result.reconciliation is not None and result.reconciliation.consumed == -2_000
        # posted the other way round: consumed -> meter, so the journal follows the meter
        assert balances(session, w.customer_id)["meter"] == 12_000
        assert_conserved(session, w.customer_id)


def test_an_energy_register_that_goes_back_is_negative_consumption(
    db: Database, keys: CardKeys
) -> None:
    with db.sessions.begin() as session:
        w = make_world(session)
        _baseline(session, keys, w, quantity=5_000, used=0)
        r = report(
            keys, w, at=T0 + timedelta(days=1), count=1, balance=10_000, quantity=4_000, used=0
        )
        result = reconcile(session, w, r)
        assert kinds(result.findings) == [FindingKind.NEGATIVE_CONSUMPTION]
        assert "energy register went back by 10.00 kWh (from 50.00 to 40.00)" in (
            result.findings[0].detail
        )


@pytest.mark.parametrize(
    ("before", "now", "since", "finding"),
    [(0, 1, 1, False), (0, 2, 2, True), (3, 4, 1, False), (5, 1, 1, False), (5, 3, 3, True)],
)
def test_illegal_cards_since_the_last_write_back(
    db: Database, keys: CardKeys, before: int, now: int, since: int, finding: bool
) -> None:
    with db.sessions.begin() as session:
        w = make_world(session)
        _baseline(session, keys, w, illegal=before)
        r = report(keys, w, at=T0 + timedelta(days=1), count=1, balance=10_000, illegal=now)
        result = reconcile(session, w, r)
        assert kinds(result.findings) == ([FindingKind.ILLEGAL_CARDS] if finding else [])
        assert result.reconciliation is not None
        assert result.reconciliation.illegal_cards == since
        if finding:
            assert result.findings[0].detail.startswith(f"{since} illegal card insertions since")


def test_the_illegal_card_threshold_is_a_setting(db: Database, keys: CardKeys) -> None:
    with db.sessions.begin() as session:
        w = make_world(session)
        _baseline(session, keys, w)
        r = report(keys, w, at=T0 + timedelta(days=1), count=1, balance=10_000, illegal=1)
        result = reconcile(session, w, r, settings=ReconcileSettings(illegal_card_threshold=1))
        assert kinds(result.findings) == [FindingKind.ILLEGAL_CARDS]


def test_a_newly_set_tamper_flag_is_found_once(db: Database, keys: CardKeys) -> None:
    with db.sessions.begin() as session:
        w = make_world(session)
        _baseline(session, keys, w)
        at = T0 + timedelta(days=1)
        first = reconcile(
            session,
            w,
            report(keys, w, at=at, count=1, balance=10_000, status=MeterStatus.TAMPER),
        )
        assert kinds(first.findings) == [FindingKind.TAMPER]
        assert "tamper flag is set" in first.findings[0].detail
        again = reconcile(
            session,
            w,
            report(
                keys,
                w,
                at=at + timedelta(days=1),
                count=1,
                balance=10_000,
                status=MeterStatus.TAMPER,
            ),
        )
        assert again.findings == []


def test_tamper_events_newer_than_the_last_seen_are_found_and_relay_trips_counted(
    db: Database, keys: CardKeys
) -> None:
    old = Event(EventCode.COVER_OPEN, 0, T0 - timedelta(days=3))
    with db.sessions.begin() as session:
        w = make_world(session)
        _baseline(session, keys, w, events=(old,))
        meter = session.get(Meter, w.meter_id)
        assert meter is not None and meter.last_event_at == old.time
        opened = Event(EventCode.COVER_OPEN, 0, T0 + timedelta(hours=5))
        trip = Event(EventCode.RELAY_TRIP, 2, T0 + timedelta(hours=3))
        trip2 = Event(EventCode.RELAY_TRIP, 1, T0 + timedelta(hours=2))
        r = report(
            keys,
            w,
            at=T0 + timedelta(days=1),
            count=1,
            balance=10_000,
            events=(opened, trip, trip2, old),
        )
        result = reconcile(session, w, r)
        assert kinds(result.findings) == [FindingKind.TAMPER]
        assert (
            "1 cover-open event(s), the latest at 2026-03-01T13:00:00+00:00"
            in result.findings[0].detail
        )
        assert result.reconciliation is not None
        assert (result.reconciliation.tamper_events, result.reconciliation.relay_events) == (1, 2)
        assert meter.last_event_at == opened.time
        # the same events on the next card are not news
        r = report(
            keys,
            w,
            at=T0 + timedelta(days=2),
            count=1,
            balance=10_000,
            events=(opened, trip, trip2, old),
        )
        result = reconcile(session, w, r)
        assert result.findings == []
        assert result.reconciliation is not None
        assert result.reconciliation.relay_events == 0


def test_a_write_back_without_history_has_no_energy_check(db: Database, keys: CardKeys) -> None:
    with db.sessions.begin() as session:
        w = make_world(session)
        _baseline(session, keys, w)
        r = report(keys, w, at=T0 + timedelta(days=1), count=1, balance=9_000, history=False)
        result = reconcile(session, w, r)
        assert result.findings == []
        assert result.reconciliation is not None
        assert result.reconciliation.energy is None and result.record.raw_history is None
        meter = session.get(Meter, w.meter_id)
        assert meter is not None and meter.cumulative_quantity is None
        # the next history starts a new energy baseline rather than a check over a gap
        r = report(keys, w, at=T0 + timedelta(days=2), count=1, balance=8_000, quantity=9_999)
        result = reconcile(session, w, r)
        assert result.findings == []
        assert meter.cumulative_quantity == 9_999


# ---------------------------------------------------------------- monthly usage


def test_monthly_usage_is_upserted(db: Database, keys: CardKeys) -> None:
    with db.sessions.begin() as session:
        w = make_world(session)
        add_sale(session, w, 1, 10_000)
        usages = (3_100, 2_800) + (0,) * 10
        reconcile(
            session,
            w,
            report(keys, w, at=T0, count=1, balance=10_000, frozen=(date(2026, 2, 1), usages)),
        )
        rows = dict(
            session.execute(
                select(MonthlyUsage.month, MonthlyUsage.quantity).where(
                    MonthlyUsage.meter_id == w.meter_id
                )
            ).all()
        )
        # the ten oldest slots are 0: months before the meter's first use, not stored
        assert rows == {"2026-02": 3_100, "2026-01": 2_800}
        # a month later: March frozen, the rest shift by one; an old month corrected
        usages = (3_300, 3_100, 2_850) + (0,) * 9
        reconcile(
            session,
            w,
            report(
                keys,
                w,
                at=T0 + timedelta(days=31),
                count=1,
                balance=10_000,
                frozen=(date(2026, 3, 1), usages),
            ),
        )
        rows = dict(
            session.execute(
                select(MonthlyUsage.month, MonthlyUsage.quantity).where(
                    MonthlyUsage.meter_id == w.meter_id
                )
            ).all()
        )
        assert rows == {"2026-03": 3_300, "2026-02": 3_100, "2026-01": 2_850}


# ---------------------------------------------------------------- findings list


def test_findings_are_listed_and_closed_once_with_a_note(db: Database, keys: CardKeys) -> None:
    with db.sessions.begin() as session:
        w = make_world(session)
        other = make_world(session)
        _baseline(session, keys, w)
        _baseline(session, keys, other)
        reconcile(
            session,
            w,
            report(keys, w, at=T0 + timedelta(days=1), count=1, balance=10_000, illegal=5),
        )
        reconcile(
            session,
            other,
            report(
                keys,
                other,
                at=T0 + timedelta(days=1),
                count=1,
                balance=10_000,
                status=MeterStatus.TAMPER,
            ),
        )
    with db.sessions.begin() as session:
        assert kinds(list_findings(session)) == [FindingKind.ILLEGAL_CARDS, FindingKind.TAMPER]
        mine = list_findings(session, customer_id=w.customer_id)
        assert kinds(mine) == [FindingKind.ILLEGAL_CARDS]
        closed = close_finding(
            session, mine[0].id, operator_id=w.operator_id, note="  neighbour's card  "
        )
        assert closed.status == FindingStatus.CLOSED and closed.note == "neighbour's card"
        assert closed.closed_by == w.operator_id and closed.closed_at is not None
    with db.sessions.begin() as session:
        assert kinds(list_findings(session)) == [FindingKind.TAMPER]
        assert kinds(list_findings(session, status=FindingStatus.CLOSED)) == [
            FindingKind.ILLEGAL_CARDS
        ]
        assert len(list_findings(session, status=None)) == 2
        with pytest.raises(ConflictError, match="already closed"):
            close_finding(session, mine[0].id, operator_id=w.operator_id, note="again")
        open_one = list_findings(session)[0]
        with pytest.raises(InvalidInputError, match="note"):
            close_finding(session, open_one.id, operator_id=w.operator_id, note="   ")
        with pytest.raises(NotFoundError, match="no finding 999999"):
            close_finding(session, 999_999, operator_id=w.operator_id, note="x")
        assert session.get(Finding, open_one.id).status == FindingStatus.OPEN  # type: ignore[union-attr]


# ---------------------------------------------------------------- MACs


def test_verify_meter_report_accepts_the_meters_seal_only(keys: CardKeys) -> None:
    w = World(1, 1, 1, 1, 1, "100100000001", "310100000001", bytes.fromhex("C15C468400000001"))
    r = report(keys, w, at=T0, count=3, balance=1_234, quantity=5_000)
    assert r.history is not None
    verify_meter_report(keys, w.serial, r.write_back, r.history)
    verify_meter_report(keys, w.serial, r.write_back, None)
    with pytest.raises(SecurityError, match="write-back MAC does not verify"):
        verify_meter_report(keys, w.serial, replace(r.write_back, remaining_amount=99_999), None)
    with pytest.raises(SecurityError, match="history MAC does not verify"):
        verify_meter_report(keys, w.serial, r.write_back, replace(r.history, cumulative_quantity=1))
    with pytest.raises(SecurityError, match="write-back MAC"):
        verify_meter_report(keys, bytes.fromhex("C15C468400000002"), r.write_back, r.history)


# ---------------------------------------------------------------- conservation, generally


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    steps=st.lists(
        st.tuples(
            st.integers(0, 2),  # sales bought before this reading
            st.integers(0, 1),  # of those, how many the meter loaded before the card came back
            st.integers(0, 5_000),  # consumption
        ),
        min_size=1,
        max_size=5,
    )
)
def test_credit_is_conserved_whatever_arrives_when(
    db: Database, keys: CardKeys, steps: list[tuple[int, int, int]]
) -> None:
    """Sales, partial deliveries and consumption in any order: paid = meter + consumed + transit."""
    with db.sessions.begin() as session:
        w = make_world(session)
        count_bought = count_loaded = balance = 0
        credits: dict[int, int] = {}
        at = T0
        for bought, loads, use in steps:
            for _ in range(bought):
                count_bought += 1
                credits[count_bought] = 1_000 * count_bought
                add_sale(session, w, count_bought, credits[count_bought])
            for _ in range(loads):
                if count_loaded < count_bought:
                    count_loaded += 1
                    balance += credits[count_loaded]
            balance -= use
            at += timedelta(hours=1)
            reconcile(
                session,
                w,
                report(keys, w, at=at, count=count_loaded, balance=balance, history=False),
            )
            assert_conserved(session, w.customer_id)
            assert balances(session, w.customer_id)["meter"] == balance
            in_transit = sum(c for n, c in credits.items() if n > count_loaded)
            assert balances(session, w.customer_id)["transit"] == in_transit
