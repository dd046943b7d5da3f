"""Bulk import of the offline card writer's records, against the numpy meter fleet.

A small :class:`cardmeter.fleet.Fleet` runs for a few days with customers
buying; the centre's books are made to match the fleet at its start (same
meters, customers, tariffs; a sale for every purchase the fleet loads), and
the records the fleet's meters write back are imported. The fleet is the
meter bill for bill, so every record must reconcile without a finding and
leave the books equal to the meters' own registers.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import pickle
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from centre_support import Database, make_keystore
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cardcenter.customers.models import Category, Customer, Meter
from cardcenter.operators.models import Operator, Role
from cardcenter.reconciliation import bulk
from cardcenter.reconciliation.bulk import ImportSummary, import_records
from cardcenter.reconciliation.models import (
    Finding,
    FindingKind,
    MonthlyUsage,
    Reconciliation,
    WriteBackRecord,
    WriteBackSource,
)
from cardcenter.reconciliation.services import Baseline, record_values, write_back_digest
from cardcenter.sales import ledger
from cardcenter.sales.ledger import JournalEntry
from cardcenter.sales.models import Sale, SaleStatus
from cardcenter.tariffs.models import Tariff, TariffKind, TariffVersion
from cardlayout.card.operations import seal_meter_report
from cardlayout.files import HISTORY, WRITE_BACK, UserType
from cardlayout.security.diversify import CardKeys
from cardmeter.fleet import Fleet
from cardmeter.fleet import WriteBackRecord as FleetRecord

START = datetime(2026, 3, 1, tzinfo=UTC)
METERS = 8
DAYS = 3
KINDS = {
    UserType.SINGLE_RATE: TariffKind.FLAT,
    UserType.TOU: TariffKind.TOU,
    UserType.STEPPED: TariffKind.STEPPED,
    UserType.TOU_STEPPED: TariffKind.TOU_STEPPED,
}


@dataclass
class Books:
    """The centre's rows for a fleet: ids by meter number."""

    meter_ids: dict[str, int]
    customer_ids: dict[str, int]
    opening: dict[str, int]
    """Each meter's credit when the books were opened (posted as an opening entry)."""
    opening_used: dict[str, int]
    """Each meter's charge register when the books were opened."""


def open_books(session: Session, fleet: Fleet) -> Books:
    """Tariffs, customers, meters and baselines equal to the fleet as it stands now.

    The baseline is a write-back taken at the fleet's clock; the meter's
    credit then is posted ``opening -> meter:N`` so the journal's ``meter:N``
    follows the meter from there.
    """
    category = Category(code="fleet", name="Fleet")
    operator = Operator(username="importer", name="Importer", role=Role.CASHIER, site="HQ")
    session.add_all([category, operator])
    session.flush()
    versions = []
    for index, plan in enumerate(fleet.plans):
        t = plan.tariff
        tariff = Tariff(name=f"plan {index}")
        session.add(tariff)
        session.flush()
        version = TariffVersion(
            tariff_id=tariff.id,
            version=1,
            kind=KINDS[plan.user_type],
            active_from=START - timedelta(days=400),
            structure={
                "rate_prices": list(t.rate_prices) if plan.user_type != UserType.STEPPED else [],
                "periods": [[p.hour, p.minute, p.rate] for p in t.periods]
                if plan.user_type in (UserType.TOU, UserType.TOU_STEPPED)
                else [],
                "tier_thresholds": list(t.tier_thresholds),
                "tier_prices": list(t.tier_prices),
                "settlement_dates": [[d.month, d.day, d.hour] for d in t.settlement_dates],
            },
        )
        session.add(version)
        session.flush()
        versions.append(version)
    books = Books({}, {}, {}, {})
    customers = [
        Customer(
            customer_no=fleet.customer_no[i],
            name=f"customer {i}",
            category_id=category.id,
            tariff_id=versions[int(fleet.plan[i])].tariff_id,
        )
        for i in range(fleet.n)
    ]
    session.add_all(customers)
    session.flush()
    meters = []
    for i, customer in enumerate(customers):
        remaining = int(fleet.remaining[i])
        meters.append(
            Meter(
                meter_no=fleet.meter_no[i],
                customer_id=customer.id,
                ct_ratio=int(fleet.ct_ratio[i]),
                installed_at=START - timedelta(days=400),
                loaded_count=int(fleet.purchase_count[i]),
                remaining=max(0, remaining),
                overdraft_used=max(0, -remaining),
                cumulative_quantity=int(fleet.cumulative_quantity[i]),
                cumulative_used=int(fleet.cumulative_used[i]),
                last_write_back_at=fleet.clock,
                parameter_version=1,
                tariff_version_id=versions[int(fleet.plan[i])].id,
            )
        )
        books.opening[fleet.meter_no[i]] = remaining
        books.opening_used[fleet.meter_no[i]] = int(fleet.cumulative_used[i])
    session.add_all(meters)
    session.flush()
    for meter, customer in zip(meters, customers, strict=True):
        books.meter_ids[meter.meter_no] = meter.id
        books.customer_ids[meter.meter_no] = customer.id
        ledger.post(
            session, "opening", ledger.meter(customer.id), books.opening[meter.meter_no], "opening"
        )
    return books


def sell_what_the_fleet_loaded(session: Session, fleet: Fleet, books: Books) -> int:
    """A written sale for each purchase the fleet's customers loaded; returns how many."""
    operator_id = session.scalar(select(Operator.id))
    assert operator_id is not None
    sold = 0
    for i in range(fleet.n):
        count = int(fleet.purchase_count[i]) - sum(1 for v in fleet.visits(i) if v.amount)
        customer_id = books.customer_ids[fleet.meter_no[i]]
        for visit in fleet.visits(i):
            if not visit.amount:
                continue
            count += 1
            sale = Sale(
                request_id=f"{fleet.meter_no[i]}-{count}",
                status=SaleStatus.WRITTEN,
                customer_id=customer_id,
                meter_id=books.meter_ids[fleet.meter_no[i]],
                operator_id=operator_id,
                site="HQ",
                purchase_count=count,
                tendered=visit.amount,
                credit=visit.amount,
                card_amount=visit.amount,
                written_at=visit.when - timedelta(hours=1),
            )
            session.add(sale)
            session.flush()
            ledger.post(
                session, ledger.till("HQ"), ledger.transit(customer_id), visit.amount, "sale"
            )
            sold += 1
    return sold


@dataclass
class Run:
    fleet: Fleet
    books: Books
    lines: list[str]
    sold: int


@pytest.fixture
def run(db: Database, keys: CardKeys) -> Run:
    """The fleet's books opened, then DAYS days of use with a card read at each day's end."""
    fleet = Fleet.build(METERS, seed=7, start=START)
    fleet.ct_ratio[0] = 40  # a commercial meter behind current transformers
    # half the customers near their alarm level, so they go and buy
    low = fleet.alarm1[::2] - fleet.remaining[::2] + 1
    fleet.remaining[::2] += low
    fleet.cumulative_purchased[::2] += low
    with db.sessions.begin() as session:
        books = open_books(session, fleet)
    lines: list[str] = []
    for _ in range(DAYS):
        fleet.run(1, visit_chance=0.9, buy_chance=0.9, record=True)
        lines += [json.dumps(r.to_json()) for r in fleet.write_backs(keys, fleet.clock)]
    with db.sessions.begin() as session:
        sold = sell_what_the_fleet_loaded(session, fleet, books)
    assert sold > 0, "the fleet should have bought something: pick another seed"
    return Run(fleet, books, lines, sold)


def table_count(db: Database, model: type) -> int:
    with db.sessions() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def assert_books_match_the_fleet(db: Database, run: Run) -> None:
    """Every meter row, journal account and frozen month equals the fleet's registers."""
    fleet = run.fleet
    with db.sessions() as session:
        for i in range(fleet.n):
            no = fleet.meter_no[i]
            customer_id = run.books.customer_ids[no]
            meter = session.get(Meter, run.books.meter_ids[no])
            assert meter is not None
            remaining = int(fleet.remaining[i])
            assert meter.balance == remaining
            assert meter.loaded_count == int(fleet.purchase_count[i])
            assert meter.cumulative_quantity == int(fleet.cumulative_quantity[i])
            assert meter.cumulative_used == int(fleet.cumulative_used[i])
            assert meter.last_write_back_at == fleet.clock
            assert ledger.balance(session, ledger.meter(customer_id)) == remaining
            assert ledger.balance(session, ledger.transit(customer_id)) == 0
            # what the meter charged over the run is what the journal consumed
            consumed = ledger.balance(session, ledger.consumed(customer_id))
            assert consumed == int(fleet.cumulative_used[i]) - run.books.opening_used[no]
            paid = session.scalar(
                select(func.coalesce(func.sum(Sale.credit), 0)).where(
                    Sale.customer_id == customer_id
                )
            )
            assert consumed == run.books.opening[no] + paid - remaining
            months = dict(
                session.execute(
                    select(MonthlyUsage.month, MonthlyUsage.quantity).where(
                        MonthlyUsage.meter_id == meter.id
                    )
                ).all()
            )
            assert len(months) == 12
            assert months["2026-02"] == int(fleet.frozen[i][0])
            assert months["2025-03"] == int(fleet.frozen[i][11])
        assert session.scalar(select(func.count()).where(Sale.status != SaleStatus.DELIVERED)) == 0


def test_a_fleet_imports_reconciled_without_findings(
    db: Database, keys: CardKeys, run: Run
) -> None:
    calls: list[tuple[int, int | None]] = []
    summary = import_records(
        db.sessions,
        keys,
        iter(run.lines),
        total=len(run.lines),
        batch_size=5,
        progress=lambda done, total: calls.append((done, total)),
    )
    n = METERS * DAYS
    assert summary == ImportSummary(
        records=n, reconciled=n, duplicates=0, stale=0, refused=[], findings=0
    )
    assert table_count(db, Reconciliation) == n
    assert table_count(db, Finding) == 0
    assert_books_match_the_fleet(db, run)
    # progress after every batch of 5, increasing, ending at the total
    assert calls == [(done, n) for done in [*range(5, n, 5), n]]
    with db.sessions() as session:
        delivered = session.scalar(select(func.coalesce(func.sum(Reconciliation.delivered), 0)))
        sales = session.scalar(select(func.sum(Sale.credit)))
        assert delivered == sales
        entry = session.scalars(
            select(JournalEntry).where(JournalEntry.sale_id.is_not(None))
        ).first()
        assert entry is not None and entry.reconciliation_id is not None
        stored = session.scalars(select(WriteBackRecord)).all()
        assert {s.source for s in stored} == {"import"}
        raw = {json.loads(line)["write_back"] for line in run.lines}
        assert {s.raw_write_back.hex().upper() for s in stored} == raw


@pytest.mark.parametrize("side_by_side", [True, False], ids=["checked-beside", "checked-here"])
def test_each_stored_record_is_record_values_of_its_line(
    db: Database, keys: CardKeys, run: Run, side_by_side: bool
) -> None:
    """The row the checking stage makes is the one the desk's services make of the record."""
    import_records(db.sessions, keys, run.lines, batch_size=5, side_by_side=side_by_side)
    with db.sessions() as session:
        stored = {s.digest: s for s in session.scalars(select(WriteBackRecord))}
    assert len(stored) == len(run.lines)
    for line in run.lines:
        doc = json.loads(line)
        raw, raw_history = bytes.fromhex(doc["write_back"]), bytes.fromhex(doc["history"])
        write_back, history = WRITE_BACK.decode(raw), HISTORY.decode(raw_history)
        assert write_back is not None
        row = stored[write_back_digest(raw)]
        expected = record_values(
            digest=row.digest,
            meter_id=run.books.meter_ids[write_back.meter_no],
            card_serial=doc["card_serial"],
            source=WriteBackSource.IMPORT,
            write_back=write_back,
            history=history,
            raw_write_back=raw,
            raw_history=raw_history,
            read_at=row.read_at,
        )
        assert {name: getattr(row, name) for name in expected} == expected


def test_records_of_one_meter_out_of_order_in_a_batch_are_taken_in_time_order(
    db: Database, keys: CardKeys, run: Run
) -> None:
    lines = list(run.lines)
    random.Random(4).shuffle(lines)
    summary = import_records(db.sessions, keys, lines, batch_size=1000)
    assert (summary.reconciled, summary.stale, summary.findings) == (METERS * DAYS, 0, 0)
    assert_books_match_the_fleet(db, run)


def test_importing_again_gives_duplicates_only(db: Database, keys: CardKeys, run: Run) -> None:
    import_records(db.sessions, keys, run.lines, batch_size=7)
    entries = table_count(db, JournalEntry)
    again = import_records(db.sessions, keys, run.lines, batch_size=7)
    n = METERS * DAYS
    assert again == ImportSummary(
        records=n, reconciled=0, duplicates=n, stale=0, refused=[], findings=0
    )
    assert table_count(db, JournalEntry) == entries
    assert table_count(db, WriteBackRecord) == n
    assert_books_match_the_fleet(db, run)


@pytest.mark.parametrize("side_by_side", [True, False], ids=["side-by-side", "here"])
def test_stored_bytes_are_known_without_their_macs_and_new_ones_are_checked(
    db: Database, keys: CardKeys, run: Run, tmp_path: Path, side_by_side: bool
) -> None:
    """Stored bytes are duplicates whatever their MACs; a new record still needs them.

    Checked here, the stored ones are skipped before any MAC (a re-run costs
    little); checked by the second process, every record is checked beside
    the writing, and the stored ones are then counted as duplicates.
    """
    half = METERS * DAYS // 2
    import_records(db.sessions, keys, run.lines[:half])
    with make_keystore(tmp_path / "another-utility.json") as store:
        foreign = CardKeys(store)  # another utility's keys: none of the meters' MACs verify
        summary = import_records(
            db.sessions, foreign, run.lines, batch_size=5, side_by_side=side_by_side
        )
    assert (summary.duplicates, summary.reconciled) == (half, 0)
    assert [n for n, _ in summary.refused] == list(range(half + 1, METERS * DAYS + 1))
    assert all("MAC does not verify" in reason for _, reason in summary.refused)


def test_an_older_record_after_a_newer_batch_is_stale(
    db: Database, keys: CardKeys, run: Run
) -> None:
    first_day, later = run.lines[:METERS], run.lines[METERS:]
    summary = import_records(db.sessions, keys, later + first_day, batch_size=METERS)
    # the first day's records came after the meters' later ones: stored, no money moved
    assert (summary.reconciled, summary.stale, summary.findings) == (
        METERS * (DAYS - 1),
        METERS,
        0,
    )
    assert table_count(db, WriteBackRecord) == METERS * DAYS
    with db.sessions() as session:
        for i in range(run.fleet.n):
            customer_id = run.books.customer_ids[run.fleet.meter_no[i]]
            assert ledger.balance(session, ledger.meter(customer_id)) == int(run.fleet.remaining[i])


@pytest.mark.parametrize("side_by_side", [True, False], ids=["side-by-side", "here"])
def test_an_interrupted_import_keeps_its_finished_batches(
    db: Database, keys: CardKeys, run: Run, side_by_side: bool
) -> None:
    """The lines fail in the third batch: the two whole batches read before are written."""

    class Interrupted(Exception):
        pass

    def cut(lines: list[str], after: int) -> Iterator[str]:
        for number, line in enumerate(lines):
            if number == after:
                raise Interrupted
            yield line

    calls: list[int] = []
    with pytest.raises(Interrupted):
        import_records(
            db.sessions,
            keys,
            cut(run.lines, 12),
            batch_size=5,
            side_by_side=side_by_side,
            progress=lambda done, _: calls.append(done),
        )
    assert table_count(db, WriteBackRecord) == 10  # two whole batches
    assert calls == [5, 10]
    summary = import_records(db.sessions, keys, run.lines, batch_size=5)
    assert (summary.duplicates, summary.reconciled, summary.findings) == (
        10,
        METERS * DAYS - 10,
        0,
    )
    assert_books_match_the_fleet(db, run)


def _forged(keys: CardKeys, line: str) -> str:
    """The record with its remaining credit raised, the meter's MAC kept."""
    doc = json.loads(line)
    wb = WRITE_BACK.decode(bytes.fromhex(doc["write_back"]))
    assert wb is not None
    forged = dataclasses.replace(wb, remaining_amount=wb.remaining_amount + 100_000)
    doc["write_back"] = WRITE_BACK.encode(forged).hex().upper()
    return json.dumps(doc)


def _foreign(keys: CardKeys, line: str, *, customer_no: str) -> str:
    """The record re-sealed with the utility's keys for another customer number."""
    doc = json.loads(line)
    wb = WRITE_BACK.decode(bytes.fromhex(doc["write_back"]))
    history = HISTORY.decode(bytes.fromhex(doc["history"]))
    assert wb is not None
    wb = dataclasses.replace(wb, customer_no=customer_no)
    sealed, sealed_history = seal_meter_report(
        keys.writeback_key(wb.meter_no), bytes.fromhex(doc["card_serial"]), wb, history
    )
    assert sealed_history is not None
    record = FleetRecord(
        wb.meter_no,
        customer_no,
        bytes.fromhex(doc["card_serial"]),
        WRITE_BACK.encode(sealed),
        HISTORY.encode(sealed_history),
    )
    return json.dumps(record.to_json())


@pytest.mark.parametrize("side_by_side", [True, False], ids=["side-by-side", "here"])
def test_bad_lines_are_refused_by_line_number_and_the_rest_imported(
    db: Database, keys: CardKeys, run: Run, side_by_side: bool
) -> None:
    stranger = Fleet.build(1, seed=99, start=START)
    unknown = json.dumps(next(iter(stranger.write_backs(keys, START))).to_json())
    doc = json.loads(run.lines[1])
    truncated = json.dumps(doc | {"write_back": doc["write_back"][:60]})
    checksum = "01" if doc["history"][-4:-2] != "01" else "02"
    bad_history = json.dumps(doc | {"history": doc["history"][:-4] + checksum + "16"})
    odd_hex = json.dumps(doc | {"card_serial": "C15"})
    lines = [
        run.lines[0],  # 1
        _forged(keys, run.lines[1]),  # 2
        truncated,  # 3
        "",  # 4: blank, skipped
        "this is not a record",  # 5
        unknown,  # 6
        _foreign(keys, run.lines[2], customer_no="999999999999"),  # 7
        bad_history,  # 8
        odd_hex,  # 9
        "[1, 2]",  # 10
        *run.lines[1:],  # 11..
    ]
    summary = import_records(db.sessions, keys, lines, batch_size=4, side_by_side=side_by_side)
    reasons = dict(summary.refused)
    assert sorted(reasons) == [2, 3, 5, 6, 7, 8, 9, 10]
    assert "write-back MAC does not verify" in reasons[2]
    assert "cannot be decoded" in reasons[3] and "truncated" in reasons[3]
    assert reasons[5] == "the line is not JSON: it is not a write-back record"
    assert reasons[6].startswith(f"meter {stranger.meter_no[0]} (customer ")
    assert "books have no such meter" in reasons[6]
    assert "wrote back for customer 999999999999, but the books have it at customer" in (reasons[7])
    assert "history" in reasons[8]
    assert "card serial has 1 bytes" in reasons[9] or "not hex" in reasons[9]
    assert "not a JSON object" in reasons[10]
    n = METERS * DAYS
    assert (summary.records, summary.reconciled, summary.duplicates) == (n + 8, n, 0)
    assert summary.findings == 1  # the unknown meter
    with db.sessions() as session:
        found = session.scalars(select(Finding)).one()
        assert found.kind == FindingKind.UNKNOWN_METER and found.meter_id is None
        assert found.detail == reasons[6]
    assert_books_match_the_fleet(db, run)
    # the unknown meter again: refused again, but the open finding is not repeated
    again = import_records(db.sessions, keys, [unknown])
    assert [n for n, _ in again.refused] == [1] and again.findings == 0
    assert table_count(db, Finding) == 1


@pytest.mark.parametrize("side_by_side", [True, False], ids=["side-by-side", "here"])
def test_only_the_last_batch_waits_for_the_disk(
    db: Database, keys: CardKeys, run: Run, side_by_side: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each batch is a transaction of ``batch_size`` lines, blank ones included; none but
    the last waits for the disk (its flush carries the ones before), none checkpoints."""
    begun: list[tuple[bool, bool]] = []
    real = bulk.begin_writing

    def spy(session: Session, *, durable: bool = True, checkpointing: bool = True) -> Any:
        begun.append((durable, checkpointing))
        return real(session, durable=durable, checkpointing=checkpointing)

    monkeypatch.setattr(bulk, "begin_writing", spy)
    lines = [run.lines[0], "", "  ", *run.lines[1:]]
    sizes: list[int] = []
    summary = import_records(
        db.sessions,
        keys,
        lines,
        batch_size=5,
        side_by_side=side_by_side,
        progress=lambda done, _: sizes.append(done),
    )
    batches = -(-len(lines) // 5)
    assert begun == [(False, False)] * (batches - 1) + [(True, False)]
    assert sizes[0] == 3  # lines 1 to 5: three records and two blank lines
    assert summary.records == summary.reconciled == METERS * DAYS
    assert_books_match_the_fleet(db, run)


def test_the_batch_size_must_be_positive(db: Database, keys: CardKeys) -> None:
    with pytest.raises(Exception, match="batch_size"):
        import_records(db.sessions, keys, [], batch_size=0)
    summary = import_records(db.sessions, keys, ["", "  "])
    assert summary == ImportSummary()


# ---------------------------------------------------------------- the checking process


def test_the_checking_process_ends_with_the_import(db: Database, keys: CardKeys, run: Run) -> None:
    """It ends by itself when the import closes its pipe: exit code 0, not killed.

    (It once kept the parent's end of the pipe open, never saw the pipe
    close, and every import waited a second for it before killing it.)
    """
    started: list[multiprocessing.process.BaseProcess] = []
    real = bulk._Checker.__init__

    def spy(self: bulk._Checker, *args: Any) -> None:
        real(self, *args)
        started.append(self._process)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bulk._Checker, "__init__", spy)
        summary = import_records(db.sessions, keys, run.lines, batch_size=5)
    assert summary.reconciled == METERS * DAYS
    assert len(started) == 1  # one process for the whole import
    assert started[0].exitcode == 0
    assert multiprocessing.active_children() == []


def test_a_store_a_fork_may_not_use_is_used_here(
    db: Database, keys: CardKeys, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PKCS#11 token, say: the records are checked in this process, one batch at a time."""

    def refuse(*_: object) -> None:
        raise AssertionError("no checking process for a store that is not forkable")

    monkeypatch.setattr(type(keys.store), "forkable", False)
    monkeypatch.setattr(bulk._Checker, "__init__", refuse)
    summary = import_records(db.sessions, keys, run.lines, batch_size=5)
    assert (summary.reconciled, summary.refused) == (METERS * DAYS, [])
    assert_books_match_the_fleet(db, run)


def test_one_batch_is_checked_here(
    db: Database, keys: CardKeys, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_: object) -> None:
        raise AssertionError("no checking process for a single batch")

    monkeypatch.setattr(bulk._Checker, "__init__", refuse)
    summary = import_records(db.sessions, keys, run.lines, batch_size=len(run.lines))
    assert summary.reconciled == METERS * DAYS


def test_a_checked_batch_crosses_the_pipe_unchanged(db: Database, keys: CardKeys, run: Run) -> None:
    """Each record is pickled as its fields in order (``_Parsed.__reduce__``), the cheap
    way for the writing process to receive it; nothing may be lost or reordered."""
    chunk = bulk._Chunk(1, ["", *run.lines])
    checked = bulk._check(keys, chunk, (), bulk._RecordBinder(db.engine.dialect))
    assert len(checked.parsed) == len(run.lines) == METERS * DAYS
    received = pickle.loads(pickle.dumps(checked, protocol=pickle.HIGHEST_PROTOCOL))
    assert received == checked
    for sent, got in zip(checked.parsed, received.parsed, strict=True):
        assert dataclasses.astuple(got) == dataclasses.astuple(sent)
        assert type(got.write_back) is type(sent.write_back) and got.record == sent.record
    assert checked.parsed[0].__reduce__() == (
        bulk._Parsed,
        tuple(getattr(checked.parsed[0], f.name) for f in dataclasses.fields(bulk._Parsed)),
    )


def _in_the_child(action: Callable[[], None]) -> Callable[..., Any]:
    """``bulk._check`` that does ``action`` in a forked child, the real check here."""
    parent = os.getpid()
    real = bulk._check

    def check(*args: Any) -> Any:
        if os.getpid() != parent:
            action()
        return real(*args)

    return check


def test_a_checking_process_that_dies_stops_the_import_with_a_sentence(
    db: Database, keys: CardKeys, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bulk, "_check", _in_the_child(lambda: os._exit(3)))
    with pytest.raises(RuntimeError) as info:
        import_records(db.sessions, keys, run.lines, batch_size=5)
    assert str(info.value) == (
        "the process checking the records stopped (exit code 3) before it answered; "
        "the batches before were imported, run the import again"
    )
    assert table_count(db, WriteBackRecord) == 5  # the first batch, checked here
    assert multiprocessing.active_children() == []
    monkeypatch.undo()
    summary = import_records(db.sessions, keys, run.lines, batch_size=5)
    assert (summary.duplicates, summary.reconciled) == (5, METERS * DAYS - 5)
    assert_books_match_the_fleet(db, run)


def test_an_error_in_the_checking_process_is_raised_here(
    db: Database, keys: CardKeys, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail() -> None:
        raise KeyError("a bug in checking")

    monkeypatch.setattr(bulk, "_check", _in_the_child(fail))
    with pytest.raises(KeyError, match="a bug in checking"):
        import_records(db.sessions, keys, run.lines, batch_size=5)
    assert table_count(db, WriteBackRecord) == 5
    assert multiprocessing.active_children() == []


def test_a_meters_update_sets_what_its_baseline_gives_the_orm() -> None:
    base = Baseline(*range(1, 19))
    row = bulk._meter_row(base)
    assert dict(zip(bulk._METER_COLUMNS, row[:-1], strict=True)) == base.meter_values()
    assert row[-1] == base.meter_id
