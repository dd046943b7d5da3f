"""The bulk import of write-backs against reconciling them one by one at a desk.

The same write-backs are reconciled both ways, for two twin meters (the
same story with other meter and customer numbers), and the books compared
once the numbers that differ (ids, meter and customer numbers) are named
by their role.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from centre_support import Database
from centre_world import World as StoryWorld
from centre_world import connect, serial
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from test_reconciliation import Report, add_sale, make_world, report
from test_reconciliation import World as W

import cardcenter.sales.desk as desk_module
from cardcenter.cards.models import Card
from cardcenter.cards.reading import read_card
from cardcenter.core.errors import CardRefusedError, ConflictError
from cardcenter.customers.models import Customer, Meter
from cardcenter.reconciliation.bulk import ImportSummary, import_records
from cardcenter.reconciliation.models import (
    Finding,
    MonthlyUsage,
    Reconciliation,
    WriteBackRecord,
    WriteBackSource,
)
from cardcenter.reconciliation.services import reconcile_write_back
from cardcenter.sales import ledger
from cardcenter.sales.ledger import JournalEntry
from cardcenter.sales.models import Sale, SaleStatus
from cardlayout.files import NO_STATUS, Event, EventCode, MeterStatus
from cardlayout.security.diversify import CardKeys

START = datetime(2025, 10, 20, 8, 0, tzinfo=UTC)
"""Before a year boundary, so the frozen months cross it."""
OLD_CUSTOMER = "310100000000"


# ---------------------------------------------------------------- a story, told twice


@dataclass(frozen=True)
class Reading:
    """One write-back of the story, what the meter says (the meter numbers filled in later)."""

    days: int
    seconds: int
    count: int
    balance: int
    quantity: int
    illegal: int
    tamper: bool
    events: tuple[tuple[int, int], ...]  # (code, hours before the write-back)
    frozen: tuple[int, ...] | None
    history: bool
    old_customer: bool


@dataclass(frozen=True)
class Story:
    sales: tuple[tuple[int, int, bool], ...]  # (count, credit, with the tariff version)
    readings: tuple[Reading, ...]
    rebound: bool
    """The meter was moved to a new customer before any write-back is reconciled."""


@st.composite
def stories(draw: Any) -> Story:
    n_sales = draw(st.integers(0, 4))
    sales = []
    count = 1
    for _ in range(n_sales):
        sales.append((count, draw(st.integers(1, 20_000)), draw(st.booleans())))
        count += draw(st.sampled_from([0, 1, 1, 1]))  # sometimes two sales share a count
    top = max((c for c, _, _ in sales), default=0)
    n = draw(st.integers(1, 7))
    readings = []
    days = 0
    count = 0
    quantity = 0
    illegal = 0
    for _ in range(n):
        days += draw(st.integers(1, 45))
        count = min(top + 1, count + draw(st.sampled_from([0, 0, 1, 2])))
        quantity = max(0, quantity + draw(st.integers(-500, 6_000)))  # may go back
        illegal = draw(st.sampled_from([illegal, illegal, illegal + 1, illegal + 3, 0]))
        events = tuple(
            draw(
                st.lists(
                    st.tuples(
                        st.sampled_from([EventCode.COVER_OPEN, EventCode.RELAY_TRIP]),
                        st.integers(1, 200),
                    ),
                    max_size=3,
                )
            )
        )
        frozen = draw(
            st.none()
            | st.lists(st.integers(0, 9_000), min_size=12, max_size=12).map(
                lambda xs: tuple(xs[:6]) + (0,) * 6
            )
            | st.lists(st.integers(0, 9_000), min_size=12, max_size=12).map(tuple)
        )
        readings.append(
            Reading(
                days=days,
                seconds=draw(st.integers(0, 3_000)),
                count=count,
                balance=draw(st.integers(-3_000, 30_000)),
                quantity=quantity,
                illegal=illegal,
                tamper=draw(st.booleans()),
                events=events,
                frozen=frozen,
                history=draw(st.sampled_from([True, True, True, False])),
                old_customer=draw(st.sampled_from([False, False, False, True])),
            )
        )
    return Story(tuple(sales), tuple(readings), draw(st.booleans()))


@dataclass
class Twin:
    w: W
    customers: dict[int, str]  # customer id -> its role in the story
    reports: list[Report]


def _month_before(at: datetime) -> date:
    first = at.date().replace(day=1)
    return (first - timedelta(days=1)).replace(day=1)


def build(db: Database, keys: CardKeys, story: Story) -> Twin:
    """One world of the story: its meter, its sales, its write-backs (sealed)."""
    with db.sessions.begin() as session:
        w = make_world(session)
        customers = {w.customer_id: "C0"}
        for count, credit, versioned in story.sales:
            add_sale(
                session,
                w,
                count,
                credit,
                parameter_version=count + 1,
                tariff_version_id=w.version_id if versioned else None,
            )
        if story.rebound:
            old = session.get(Customer, w.customer_id)
            assert old is not None
            new = Customer(
                customer_no=f"3102{w.customer_no[4:]}",
                name="moved in",
                category_id=old.category_id,
                tariff_id=old.tariff_id,
            )
            session.add(new)
            session.flush()
            meter = session.get(Meter, w.meter_id)
            assert meter is not None
            meter.customer_id = new.id
            customers[new.id] = "C1"
            previous = w.customer_no
            w = replace(w, customer_id=new.id, customer_no=new.customer_no)
        else:
            previous = OLD_CUSTOMER
    reports = []
    for r in story.readings:
        at = START + timedelta(days=r.days, seconds=r.seconds)
        events = tuple(
            Event(EventCode(code), 0, at - timedelta(hours=hours)) for code, hours in r.events
        )
        reports.append(
            report(
                keys,
                w,
                at=at,
                count=r.count,
                balance=r.balance,
                quantity=r.quantity,
                illegal=r.illegal,
                status=MeterStatus.TAMPER if r.tamper else NO_STATUS,
                events=events,
                frozen=(_month_before(at), r.frozen) if r.frozen is not None else None,
                history=r.history,
                customer_no=previous if r.old_customer else None,
            )
        )
    return Twin(w, customers, reports)


def line_of(w: W, r: Report) -> str:
    """The offline card writer's stored record of a write-back (cardmeter.fleet's format)."""
    return json.dumps(
        {
            "meter_no": r.write_back.meter_no,
            "customer_no": r.write_back.customer_no,
            "card_serial": w.serial.hex().upper(),
            "write_back": r.raw_write_back.hex().upper(),
            "history": r.raw_history.hex().upper() if r.raw_history is not None else "",
        }
    )


def at_the_desk(db: Database, twin: Twin, r: Report) -> str:
    """Reconcile one write-back as a desk does (own transaction); what became of it."""
    try:
        with db.sessions.begin() as session:
            meter = session.get(Meter, twin.w.meter_id)
            assert meter is not None
            result = reconcile_write_back(
                session,
                meter=meter,
                card_serial=twin.w.serial.hex().upper(),
                write_back=r.write_back,
                history=r.history,
                raw_write_back=r.raw_write_back,
                raw_history=r.raw_history,
                source=WriteBackSource.READ,
            )
    except CardRefusedError:
        return "refused"
    return "duplicate" if result.duplicate else "stale" if result.stale else "reconciled"


def books(db: Database, twin: Twin) -> dict[str, Any]:
    """Everything the centre knows of the twin's meter, its numbers named by their role."""
    w = twin.w
    names = {str(i): role for i, role in twin.customers.items()}

    def account(text: str) -> str:
        return re.sub(r":(\d+)$", lambda m: ":" + names.get(m.group(1), m.group(1)), text)

    with db.sessions() as session:
        sales = list(
            session.scalars(select(Sale).where(Sale.meter_id == w.meter_id).order_by(Sale.id))
        )
        sale_no = {s.id: f"sale#{i}" for i, s in enumerate(sales)}
        recs = list(
            session.scalars(
                select(Reconciliation)
                .where(Reconciliation.meter_id == w.meter_id)
                .order_by(Reconciliation.period_end)
            )
        )
        rec_at = {r.id: r.period_end for r in recs}

        def detail(d: dict[str, Any]) -> dict[str, Any]:
            d = dict(d)
            d["delivered"] = [[sale_no[i], c, a] for i, c, a in d["delivered"]]
            d["tariff_versions"] = ["V" if v == w.version_id else v for v in d["tariff_versions"]]
            return d

        meter = session.get(Meter, w.meter_id)
        assert meter is not None
        entries = session.scalars(
            select(JournalEntry).where(JournalEntry.reconciliation_id.in_(list(rec_at) or [0]))
        )
        return {
            "reconciliations": [
                (
                    r.period_start,
                    r.period_end,
                    r.energy,
                    r.delivered,
                    r.consumed,
                    r.implied_min,
                    r.implied_max,
                    r.overdraft_used,
                    r.illegal_cards,
                    r.relay_events,
                    r.tamper_events,
                    r.findings,
                    r.customer_id in twin.customers and twin.customers[r.customer_id],
                    json.dumps(detail(r.detail), sort_keys=True),
                )
                for r in recs
            ],
            "journal": sorted(
                (
                    rec_at[e.reconciliation_id],
                    account(e.source),
                    account(e.destination),
                    e.amount,
                    e.memo.replace(w.meter_no, "M").replace(
                        f"sale {e.sale_id}", sale_no.get(e.sale_id, "?") if e.sale_id else ""
                    ),
                    sale_no.get(e.sale_id) if e.sale_id else None,
                )
                for e in entries
            ),
            "sales": [(sale_no[s.id], s.status, s.delivered_at) for s in sales],
            "meter": (
                meter.loaded_count,
                meter.remaining,
                meter.overdraft_used,
                meter.illegal_card_count,
                meter.cumulative_quantity,
                meter.cumulative_used,
                meter.last_event_at,
                meter.last_write_back_at,
                meter.parameter_version,
                "V" if meter.tariff_version_id == w.version_id else meter.tariff_version_id,
            ),
            "findings": sorted(
                (str(f.kind), f.detail, rec_at.get(f.reconciliation_id))
                for f in session.scalars(select(Finding).where(Finding.meter_id == w.meter_id))
            ),
            "months": dict(
                session.execute(
                    select(MonthlyUsage.month, MonthlyUsage.quantity).where(
                        MonthlyUsage.meter_id == w.meter_id
                    )
                ).all()
            ),
            "stored": sorted(
                (wb.written_at, wb.purchase_count, wb.remaining)
                for wb in session.scalars(
                    select(WriteBackRecord).where(WriteBackRecord.meter_id == w.meter_id)
                )
            ),
        }


MODES = ["one batch", "one batch shuffled", "batches of one", "small batches"]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(story=stories(), mode=st.sampled_from(MODES), seed=st.integers(0, 1_000))
def test_bulk_and_desk_make_the_same_books(
    db: Database, keys: CardKeys, story: Story, mode: str, seed: int
) -> None:
    """Q1: the same write-backs, read one by one at a desk in the order the meter wrote
    them, or imported (one batch, shuffled in it, many batches), give the same books."""
    desk, bulk = build(db, keys, story), build(db, keys, story)
    outcomes = [at_the_desk(db, desk, r) for r in desk.reports]
    lines = [line_of(bulk.w, r) for r in bulk.reports]
    rng = random.Random(seed)
    size = {"one batch": len(lines), "one batch shuffled": len(lines), "batches of one": 1}.get(
        mode, rng.randint(1, max(1, len(lines)))
    )
    if mode == "one batch shuffled":
        rng.shuffle(lines)
    summary = import_records(db.sessions, keys, lines, batch_size=size, side_by_side=False)
    assert summary.reconciled == outcomes.count("reconciled")
    assert summary.stale == outcomes.count("stale")
    assert len(summary.refused) == outcomes.count("refused")
    assert books(db, bulk) == books(db, desk)


def test_a_meter_rebound_to_a_new_customer_reconciles_the_same_both_ways(
    db: Database, keys: CardKeys
) -> None:
    """Q1, one fixed story: sales of the old customer in transit, write-backs of both
    customers, tamper, illegal cards, negative consumption, frozen months over New Year."""
    story = Story(
        sales=((1, 10_000, True), (2, 5_000, False), (2, 1_000, True), (3, 7_000, False)),
        readings=(
            Reading(3, 0, 1, 9_000, 2_000, 0, False, (), (100,) * 12, True, False),
            Reading(40, 5, 1, 8_000, 4_000, 2, True, ((1, 3), (5, 2)), (200,) * 12, True, True),
            Reading(
                75, 9, 2, 13_000, 3_000, 5, True, ((1, 1),), (300,) * 6 + (0,) * 6, True, False
            ),
            Reading(90, 0, 3, 30_000, 9_000, 0, False, (), None, False, False),
            Reading(120, 0, 3, 15_000, 12_000, 1, False, ((5, 4),), (400,) * 12, True, False),
        ),
        rebound=True,
    )
    desk, bulk = build(db, keys, story), build(db, keys, story)
    outcomes = [at_the_desk(db, desk, r) for r in desk.reports]
    assert outcomes == ["reconciled", "refused", "reconciled", "reconciled", "reconciled"]
    lines = [line_of(bulk.w, r) for r in bulk.reports]
    summary = import_records(db.sessions, keys, lines[::-1], side_by_side=False)
    assert (summary.reconciled, summary.stale, len(summary.refused)) == (4, 0, 1)
    assert books(db, bulk) == books(db, desk)
    assert set(books(db, desk)["months"]) >= {"2025-12", "2026-01"}


# ---------------------------------------------------------------- Q3: nothing twice


def test_desk_then_import_then_overlapping_import_changes_nothing(
    db: Database, keys: CardKeys
) -> None:
    story = Story(
        sales=((1, 10_000, True), (2, 5_000, False)),
        readings=tuple(
            Reading(
                10 * i, 0, min(i, 2), 10_000 - 300 * i, 600 * i, 0, False, (), None, True, False
            )
            for i in range(1, 7)
        ),
        rebound=False,
    )
    twin = build(db, keys, story)
    # the first two were read at a desk
    assert [at_the_desk(db, twin, r) for r in twin.reports[:2]] == ["reconciled"] * 2
    lines = [line_of(twin.w, r) for r in twin.reports]
    first = import_records(db.sessions, keys, lines[:4], batch_size=3)
    assert (first.duplicates, first.reconciled) == (2, 2)
    after = books(db, twin)
    entries = _count(db, JournalEntry)
    again = import_records(db.sessions, keys, lines[:4], batch_size=2)
    assert again == ImportSummary(records=4, duplicates=4)
    assert books(db, twin) == after and _count(db, JournalEntry) == entries
    # an overlapping file: its first four are known, the rest are new
    overlap = import_records(db.sessions, keys, [*lines[1:], lines[2]], batch_size=2)
    assert (overlap.duplicates, overlap.reconciled, overlap.stale) == (4, 2, 0)
    # and a desk reading one of them again
    assert at_the_desk(db, twin, twin.reports[5]) == "duplicate"
    assert at_the_desk(db, twin, twin.reports[2]) == "duplicate"
    final = books(db, twin)
    assert len(final["reconciliations"]) == 6
    assert [s[1] for s in final["sales"]] == [SaleStatus.DELIVERED] * 2
    with db.sessions() as session:
        delivered = session.scalar(
            select(func.count()).where(
                JournalEntry.sale_id.is_not(None), JournalEntry.reconciliation_id.is_not(None)
            )
        )
        assert delivered == 2


def _count(db: Database, model: Any) -> int:
    with db.sessions() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def offline_record(keys: CardKeys, card: Any) -> str:
    """What the offline card writer stores of the card in its reader."""
    reading = read_card(connect(card), keys)
    assert reading.write_back is not None
    return json.dumps(
        {
            "meter_no": reading.write_back.meter_no,
            "customer_no": reading.write_back.customer_no,
            "card_serial": reading.serial,
            "write_back": reading.raw_write_back.hex().upper(),
            "history": reading.raw_history.hex().upper() if reading.raw_history else "",
        }
    )


def test_a_replacement_card_imported_in_bulk_is_registered_as_at_the_desk(
    db: Database, keys: CardKeys
) -> None:
    """Q1/Q3: the replacement card's first write-back, collected by the offline card
    writer and imported, proves the meter took the card, as the desk reading it would.

    Read at the desk the card would be registered; after the import the desk's reading
    is a duplicate, so it never is, and adding to the purchase on the card is refused
    ("a replacement that has not been in the meter yet") although the meter took it.
    """
    world = StoryWorld(db, keys)
    card = world.opened()
    world.sell(card, 2000)  # purchase 2, never taken to the meter
    new = world.blank()
    world.replace(new)
    assert world.meter.insert(new).loaded == 2000  # the meter registers the new card
    world.use(2)
    # the offline card writer read the card on the way (a reading visit): imported
    summary = import_records(db.sessions, keys, [offline_record(keys, new)])
    assert summary.reconciled == 1
    world.sell(new, 1000)  # purchase 3 on the new card, the write-back is a duplicate
    with db.sessions() as session:
        row = session.scalar(select(Card).where(Card.serial == serial(world.cards).hex().upper()))
        assert row is not None
        registered = row.registered
    try:
        world.sell(new, 500)  # adds to purchase 3: allowed once the card is registered
    except ConflictError as exc:
        pytest.fail(f"registered={registered}; adding to the purchase is refused: {exc}")
    assert registered, "the meter took the replacement card, but the books never learn it"


def test_the_same_replacement_story_read_only_at_the_desk_registers_the_card(
    db: Database, keys: CardKeys
) -> None:
    """The control of the test above: without the import the card is registered."""
    world = StoryWorld(db, keys)
    card = world.opened()
    world.sell(card, 2000)
    new = world.blank()
    world.replace(new)
    assert world.meter.insert(new).loaded == 2000
    world.use(2)
    world.sell(new, 1000)
    world.sell(new, 500)
    world.check_conservation()


# ---------------------------------------------------------------- Q2: import beside a desk


def import_beside_the_desk(
    db: Database, keys: CardKeys, monkeypatch: pytest.MonkeyPatch, record: str
) -> list[ImportSummary]:
    """Import ``record`` while the desk's next sale is under way: on PostgreSQL inside it
    (after the desk read the card's row, before it reconciles the card's write-back; two
    sessions, READ COMMITTED); on SQLite, whose writers take the write lock at BEGIN and
    cannot interleave, just before it. The summaries, once imported."""
    imported: list[ImportSummary] = []
    if db.backend != "postgresql":
        imported.append(import_records(db.sessions, keys, [record]))
        return imported
    real_learn = desk_module.learn

    def learn_after_the_import(*args: Any, **kwargs: Any) -> None:
        if not imported:
            imported.append(import_records(db.sessions, keys, [record]))
        real_learn(*args, **kwargs)

    monkeypatch.setattr(desk_module, "learn", learn_after_the_import)
    return imported


def test_an_import_committed_while_a_desk_sells_does_not_count_consumption_twice(
    db: Database, keys: CardKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Q2, PostgreSQL (two sessions, READ COMMITTED): the desk has read the card's row
    with its meter (the baseline) when an import of the card's previous write-back
    commits; the desk then reconciles the card's newer write-back."""
    world = StoryWorld(db, keys)
    card = world.opened()
    world.sell(card, 2000)  # the desk reconciles the opening write-back: baseline B0
    assert world.meter.insert(card).loaded == 2000
    world.use(5)
    assert world.meter.insert(card).loaded == 0
    collected = offline_record(keys, card)  # W1 (delivers purchase 2), on its way to the office
    world.use(5)
    assert world.meter.insert(card).loaded == 0  # W2 now on the card

    imported = import_beside_the_desk(db, keys, monkeypatch, collected)
    world.sell(card, 1000)
    assert imported and imported[0].reconciled == 1
    world.check_conservation()
    st_ = world.meter.state
    with db.sessions() as session:
        on_meter = ledger.balance(session, ledger.meter(world.customer_id))
        delivered = session.execute(
            select(JournalEntry.sale_id, func.count())
            .where(JournalEntry.sale_id.is_not(None), JournalEntry.reconciliation_id.is_not(None))
            .group_by(JournalEntry.sale_id)
        ).all()
        recs = [
            (r.period_start, r.period_end, r.delivered, r.consumed, r.findings)
            for r in session.scalars(select(Reconciliation).order_by(Reconciliation.id))
        ]
        found = [f.kind for f in session.scalars(select(Finding))]
    assert all(n == 1 for _, n in delivered), f"a sale delivered twice: {delivered}"
    assert on_meter == st_.remaining - st_.overdraft_used, (
        f"the journal's meter account holds {on_meter}, the meter {st_.remaining}: "
        f"consumption was posted against a stale baseline: {recs}, findings {found}"
    )


def test_the_same_write_back_imported_while_a_desk_reads_it_is_reconciled_once(
    db: Database, keys: CardKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Q2: the import commits the very write-back the desk is reconciling: the desk
    loses the race on the digest with a sentence, and the sale asked again goes through."""
    world = StoryWorld(db, keys)
    card = world.opened()
    world.sell(card, 2000)
    assert world.meter.insert(card).loaded == 2000
    world.use(5)
    assert world.meter.insert(card).loaded == 0
    collected = offline_record(keys, card)

    import_beside_the_desk(db, keys, monkeypatch, collected)
    try:
        world.sell(card, 1000, "race-1")
    except ConflictError:
        world.sell(card, 1000, "race-1")
    world.check_conservation()
    st_ = world.meter.state
    with db.sessions() as session:
        assert _count(db, Reconciliation) == 2
        on_meter = ledger.balance(session, ledger.meter(world.customer_id))
    assert on_meter == st_.remaining - st_.overdraft_used


# ---------------------------------------------------------------- Q4: refusals


def test_a_torn_file_is_refused_by_line_and_the_rest_goes_on(db: Database, keys: CardKeys) -> None:
    story = Story(
        sales=((1, 10_000, False),),
        readings=tuple(
            Reading(5 * i, 0, 1, 10_000 - 200 * i, 400 * i, 0, False, (), None, True, False)
            for i in range(1, 5)
        ),
        rebound=False,
    )
    twin = build(db, keys, story)
    lines = [line_of(twin.w, r) for r in twin.reports]
    doc = json.loads(lines[2])
    odd_hex = json.dumps(doc | {"write_back": doc["write_back"][:-1]})
    short_history = json.dumps(doc | {"history": doc["history"][:40]})
    wrong_mac = json.dumps(doc | {"write_back": doc["write_back"][:-6] + "000000"})
    file = [
        lines[0],  # 1
        "{not json",  # 2
        odd_hex,  # 3
        "",  # 4
        short_history,  # 5
        wrong_mac,  # 6
        lines[1],  # 7
        lines[2],  # 8
        lines[3][: len(lines[3]) // 2],  # 9: the file was cut here
    ]
    summary = import_records(db.sessions, keys, file, batch_size=3, side_by_side=False)
    reasons = dict(summary.refused)
    assert sorted(reasons) == [2, 3, 5, 6, 9]
    assert reasons[2] == reasons[9] == "the line is not JSON: it is not a write-back record"
    assert "not hex" in reasons[3]
    assert "history" in reasons[5] and "damaged or truncated" in reasons[5]
    assert "does not verify" in reasons[6] or "cannot be decoded" in reasons[6]
    assert (summary.records, summary.reconciled) == (8, 3)
    # the line completed later is imported and only it
    more = import_records(db.sessions, keys, [*file[:8], lines[3]], side_by_side=False)
    # (line 5 carries line 8's write-back bytes, now stored: a duplicate, by design)
    assert (more.reconciled, more.duplicates) == (1, 4)
    assert [n for n, _ in more.refused] == [2, 3, 6]
