"""Bulk import of the write-backs an offline card writer collected.

The records are JSON lines (``cardmeter.fleet``'s stored-record format:
``meter_no``, ``customer_no``, ``card_serial``, and the whole EF05 and EF06
files as hex). Each record is decoded with the card's own codecs, its two
MACs verified under the meter's key (:func:`verify_meter_report`), matched
to a meter of the books and reconciled by the same rules as a card read at
the desk (:func:`cardcenter.reconciliation.services.assess`).

A utility imports a whole fleet at once (100 000 meters and more), so the
database work is done set-wise, a batch at a time: the batch's meters,
customers, sales in transit, stored digests and monthly usage are read with
a few ``IN (...)`` queries, every record is assessed in memory (a meter that
appears twice in a batch is reconciled in ``written_at`` order against its
own previous record), and the results are written with one statement per
table. Each batch is one transaction, committed before the next begins, so
an interrupted import keeps what it finished, and running it again skips
those records as duplicates: they are stored by the digest of their bytes,
which is looked up before the MACs are checked (bytes stored were verified
when they were stored), so a re-run costs little.

The MACs are checked before the batch's transaction begins, so the
database is held only for the reading and writing of the books.

A bad line (not JSON, bad hex, a malformed file, a MAC that does not verify,
an unknown meter, a meter bound to another customer) is refused with its line
number and a sentence, and the rest of the file goes on. A record whose MACs
verify but whose meter the centre does not know is also an open
``unknown_meter`` finding (once per meter): the utility's keys made it, so a
meter is in the field that the books are missing.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import JSON, Table, and_, select
from sqlalchemy.orm import Session, sessionmaker

from cardcenter.core.db import Base, UTCDateTime, utcnow
from cardcenter.core.errors import CardRefusedError, InvalidInputError
from cardcenter.customers.models import Customer, Meter
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
    Assessment,
    Baseline,
    ReconcileSettings,
    TariffBook,
    assess,
    check_identity,
    consumption_memo,
    copy_rows,
    delivery_memo,
    is_stale,
    reconciliation_values,
    record_values,
    upsert_monthly_usage,
    write_back_digest,
)
from cardcenter.sales import ledger
from cardcenter.sales.models import IN_TRANSIT, Sale, SaleStatus
from cardlayout.card.operations import verify_meter_report
from cardlayout.errors import CardLayoutError, SecurityError
from cardlayout.files import HISTORY, WRITE_BACK, History, MeterStatus, WriteBack
from cardlayout.security.diversify import CardKeys

__all__ = ["ImportSummary", "import_records"]

Progress = Callable[[int, "int | None"], None]
"""``progress(records done, total or None)``, called after each committed batch."""

IN_CHUNK = 500
"""Values per ``IN (...)`` list: well inside every database's parameter limit."""
SERIAL_SIZE = 8
DEFAULT_SETTINGS = ReconcileSettings()

_T = TypeVar("_T")


@dataclass
class ImportSummary:
    """What an import did; ``refused`` holds (line number, reason) in line order."""

    records: int = 0
    reconciled: int = 0
    duplicates: int = 0
    stale: int = 0
    refused: list[tuple[int, str]] = field(default_factory=list)
    findings: int = 0


@dataclass(slots=True)
class _Line:
    """One line read: the record's bytes, not yet decoded nor trusted."""

    line: int
    meter_no: str
    customer_no: str
    raw_write_back: bytes
    raw_history: bytes | None
    serial: bytes
    digest: str


@dataclass(slots=True)
class _Parsed:
    """One line, decoded and MAC-verified."""

    line: int
    write_back: WriteBack
    history: History | None
    raw_write_back: bytes
    raw_history: bytes | None
    serial: str
    digest: str


@dataclass(slots=True)
class _TransitSale:
    """A sale in transit, as :func:`assess` reads it."""

    id: int
    customer_id: int
    purchase_count: int
    credit: int
    parameter_version: int
    tariff_version_id: int | None


@dataclass(slots=True)
class _Fresh:
    """A record to reconcile, with what its assessment decided."""

    parsed: _Parsed
    customer_id: int
    meter_id: int
    period_start: datetime | None
    assessment: Assessment


def _table(model: type[Base]) -> Table:
    return Base.metadata.tables[str(model.__tablename__)]


_WRITE_BACKS = _table(WriteBackRecord)
_RECONCILIATIONS = _table(Reconciliation)
_JOURNAL = _table(ledger.JournalEntry)
_FINDINGS = _table(Finding)
_SALES = _table(Sale)
_METERS = _table(Meter)
_METER_COLUMNS = (
    "loaded_count",
    "remaining",
    "overdraft_used",
    "illegal_card_count",
    "cumulative_quantity",
    "cumulative_used",
    "last_event_at",
    "last_write_back_at",
    "parameter_version",
    "tariff_version_id",
)


def _compact_json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


def _chunks(items: Sequence[_T], size: int = IN_CHUNK) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# ---------------------------------------------------------------- one line


def _read(number: int, line: str) -> _Line | str:
    """The record on ``line`` as bytes, or why it is refused (no MAC checked yet)."""
    try:
        doc = json.loads(line)
    except ValueError:
        return "the line is not JSON: it is not a write-back record"
    if not isinstance(doc, dict):
        return "the line is not a JSON object: it is not a write-back record"
    missing = [k for k in ("meter_no", "customer_no", "card_serial", "write_back") if k not in doc]
    if missing:
        return f"the record has no {', '.join(missing)}: it is not a write-back record"
    try:
        raw_write_back = bytes.fromhex(doc["write_back"])
        history_hex = doc.get("history") or ""
        raw_history = bytes.fromhex(history_hex) if history_hex else None
        serial = bytes.fromhex(doc["card_serial"])
    except (TypeError, ValueError):
        return "the record's write_back, history or card_serial is not hex: the file is damaged"
    if len(serial) != SERIAL_SIZE:
        return f"the card serial has {len(serial)} bytes, not {SERIAL_SIZE}: the file is damaged"
    return _Line(
        number,
        str(doc["meter_no"]),
        str(doc["customer_no"]),
        raw_write_back,
        raw_history,
        serial,
        write_back_digest(raw_write_back),
    )


def _verify(keys: CardKeys, line: _Line) -> _Parsed | str:
    """The record decoded and its two MACs verified, or why it is refused."""
    try:
        write_back = WRITE_BACK.decode(line.raw_write_back)
    except (CardLayoutError, ValueError) as exc:
        return f"the write-back cannot be decoded ({exc}): the file is damaged or truncated"
    if write_back is None:
        return "the write-back is cleared: there is nothing to reconcile"
    try:
        history = HISTORY.decode(line.raw_history) if line.raw_history is not None else None
    except (CardLayoutError, ValueError) as exc:
        return f"the history cannot be decoded ({exc}): the file is damaged or truncated"
    if (line.meter_no, line.customer_no) != (write_back.meter_no, write_back.customer_no):
        return (
            f"the record names meter {line.meter_no} and customer {line.customer_no}, but "
            f"its write-back is meter {write_back.meter_no} and customer "
            f"{write_back.customer_no}: the file was edited"
        )
    try:
        verify_meter_report(keys, line.serial, write_back, history)
    except SecurityError as exc:
        return f"{exc}; not reconciled"
    except CardLayoutError as exc:
        return f"the record cannot be verified ({exc}): the file is damaged"
    return _Parsed(
        line.line,
        write_back,
        history,
        line.raw_write_back,
        line.raw_history,
        line.serial.hex().upper(),
        line.digest,
    )


def _unknown_meter_text(write_back: WriteBack) -> str:
    return (
        f"meter {write_back.meter_no} (customer {write_back.customer_no}) wrote a write-back "
        "with a valid MAC, but the books have no such meter: register the meter or find "
        "where the card was read"
    )


# ---------------------------------------------------------------- reading a batch's books


def _baselines(session: Session, meter_nos: Sequence[str]) -> dict[str, Baseline]:
    """The batch's meters (locked for this transaction) with their customers."""
    out: dict[str, Baseline] = {}
    for chunk in _chunks(meter_nos):
        rows = session.connection().execute(
            select(
                Meter.id,
                Meter.meter_no,
                Meter.utility,
                Meter.installed_at,
                Meter.customer_id,
                Customer.customer_no,
                Customer.tariff_id,
                Customer.category_id,
                *(getattr(Meter, name) for name in _METER_COLUMNS),
            )
            .outerjoin(Customer, Customer.id == Meter.customer_id)
            .where(Meter.meter_no.in_(chunk))
            .with_for_update(of=Meter)
        )
        for row in rows.all():
            (mid, meter_no, utility, installed, cid, cno, tariff_id, category_id, *rest) = row
            values = dict(zip(_METER_COLUMNS, rest, strict=True))
            out[meter_no] = Baseline(
                meter_id=mid,
                meter_no=meter_no,
                utility=utility,
                installed_at=installed,
                customer_id=cid,
                customer_no=cno,
                customer_tariff_id=tariff_id,
                category_id=category_id,
                **values,
            )
    return out


def _tampered(session: Session, bases: dict[str, Baseline]) -> None:
    """Mark the meters whose last reconciled write-back had the tamper bit."""
    by_id = {b.meter_id: b for b in bases.values() if b.last_write_back_at is not None}
    for chunk in _chunks(list(by_id)):
        rows = session.connection().execute(
            select(WriteBackRecord.meter_id)
            .join(
                Meter,
                and_(
                    Meter.id == WriteBackRecord.meter_id,
                    Meter.last_write_back_at == WriteBackRecord.written_at,
                ),
            )
            .where(
                Meter.id.in_(chunk),
                WriteBackRecord.meter_status.op("&")(int(MeterStatus.TAMPER)) != 0,
            )
        )
        for (meter_id,) in rows.all():
            by_id[meter_id].tampered = True


def _in_transit(session: Session, meter_ids: Sequence[int]) -> dict[int, list[_TransitSale]]:
    out: dict[int, list[_TransitSale]] = {}
    for chunk in _chunks(meter_ids):
        rows = session.connection().execute(
            select(
                Sale.meter_id,
                Sale.id,
                Sale.customer_id,
                Sale.purchase_count,
                Sale.credit,
                Sale.parameter_version,
                Sale.tariff_version_id,
            )
            .where(Sale.meter_id.in_(chunk), Sale.status.in_(IN_TRANSIT))
            .with_for_update()
        )
        for meter_id, sale_id, customer_id, count, credit, version, tariff_version_id in rows.all():
            out.setdefault(meter_id, []).append(
                _TransitSale(sale_id, customer_id, count, credit, version, tariff_version_id)
            )
    return out


def _stored_digests(session: Session, digests: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for chunk in _chunks(digests):
        found.update(
            session.connection()
            .execute(select(WriteBackRecord.digest).where(WriteBackRecord.digest.in_(chunk)))
            .scalars()
        )
    return found


def _stored_months(
    session: Session, meter_ids: Sequence[int], first: str | None
) -> dict[tuple[int, str], int]:
    if first is None:
        return {}
    out: dict[tuple[int, str], int] = {}
    for chunk in _chunks(meter_ids):
        rows = session.connection().execute(
            select(MonthlyUsage.meter_id, MonthlyUsage.month, MonthlyUsage.quantity).where(
                MonthlyUsage.meter_id.in_(chunk), MonthlyUsage.month >= first
            )
        )
        for meter_id, month, quantity in rows.all():
            out[meter_id, month] = quantity
    return out


def _open_unknown(session: Session, texts: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for chunk in _chunks(texts):
        found.update(
            session.scalars(
                select(Finding.detail).where(
                    Finding.kind == FindingKind.UNKNOWN_METER,
                    Finding.status == FindingStatus.OPEN,
                    Finding.detail.in_(chunk),
                )
            )
        )
    return found


# ---------------------------------------------------------------- writing a batch


def _entry(
    source: str, destination: str, amount: int, memo: str, at: datetime, **links: int | None
) -> dict[str, Any] | None:
    """A journal row as :func:`cardcenter.sales.ledger.post` makes it (sign and zero rules)."""
    if amount == 0:
        return None
    if amount < 0:
        source, destination, amount = destination, source, -amount
    row: dict[str, Any] = {
        "at": at,
        "source": source,
        "destination": destination,
        "amount": amount,
        "memo": memo,
        "customer_id": None,
        "sale_id": None,
        "reconciliation_id": None,
        "operator_id": None,
    }
    row.update(links)
    return row


class _Driver:
    """Many rows straight to the database driver, one statement per table.

    SQLAlchemy's own executemany prepares every row in Python (parameter
    dictionaries, type processing, RETURNING in small batches), which costs
    more than the database's work on rows this small. Here each value still
    goes through its column's own bind processor (so a time is stored in UTC
    exactly as the ORM stores it; JSON is written compact), but the rows go
    to the driver as plain tuples: an executemany on SQLite, COPY on
    PostgreSQL (:func:`copy_rows`). Row ids are taken beforehand
    (:meth:`new_ids`) instead of read back with RETURNING, so the rows that
    refer to them can be made at once. SQLite and PostgreSQL only, the
    centre's two databases.
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        self.connection = session.connection()
        self.dialect = self.connection.dialect
        self.mark = "?" if self.dialect.paramstyle == "qmark" else "%s"

    def _converters(self, table: Table, names: Sequence[str]) -> list[Callable[[Any], Any] | None]:
        out: list[Callable[[Any], Any] | None] = []
        for name in names:
            column_type = table.c[name].type
            if isinstance(column_type, JSON):
                # JSON text without the spaces: both databases take text for a JSON column
                out.append(_compact_json)
                continue
            convert = column_type.dialect_impl(self.dialect).bind_processor(self.dialect)
            if convert is not None and isinstance(column_type, UTCDateTime):
                # a batch repeats a few times (now, the write-back times): convert each once
                convert = functools.lru_cache(maxsize=4096)(convert)
            out.append(convert)
        return out

    def _convert(
        self, table: Table, names: Sequence[str], rows: list[list[Any]]
    ) -> list[tuple[Any, ...]]:
        converters = [(i, c) for i, c in enumerate(self._converters(table, names)) if c]
        for row in rows:
            for i, convert in converters:
                row[i] = convert(row[i])
        return [tuple(row) for row in rows]

    def insert(self, table: Table, rows: Sequence[dict[str, Any]]) -> None:
        """INSERT every row (all with the same keys)."""
        if not rows:
            return
        names = list(rows[0])
        values = self._convert(table, names, [[row[n] for n in names] for row in rows])
        copy_rows(self.session, table.name, names, values)

    def update(self, table: Table, rows: Sequence[dict[str, Any]], key: str = "id") -> None:
        """UPDATE each row's columns where ``key`` is the row's ``key`` (one executemany)."""
        if not rows:
            return
        names = [n for n in rows[0] if n != key]
        sql = (
            f"UPDATE {table.name} SET {', '.join(f'{n} = {self.mark}' for n in names)} "
            f"WHERE {key} = {self.mark}"
        )
        values = self._convert(
            table, [*names, key], [[*(row[n] for n in names), row[key]] for row in rows]
        )
        self.connection.exec_driver_sql(sql, values)

    def new_ids(self, table: Table, count: int) -> list[int]:
        """``count`` fresh primary keys of ``table`` for rows about to be inserted.

        PostgreSQL hands them out from the table's sequence. On SQLite the
        batch's transaction took the write lock when it began
        (``BEGIN IMMEDIATE``, :mod:`cardcenter.core.db`), so nobody else adds
        rows until it commits and the next ids are those after the largest.
        """
        if count == 0:
            return []
        if self.dialect.name == "postgresql":
            result = self.connection.exec_driver_sql(
                f"SELECT nextval(pg_get_serial_sequence('{table.name}', 'id')) "
                f"FROM generate_series(1, {int(count)})"
            )
            return [int(v) for v in result.scalars()]
        top = self.connection.exec_driver_sql(f"SELECT max(id) FROM {table.name}").scalar()
        first = int(top or 0) + 1
        return list(range(first, first + count))


def _write(
    session: Session,
    stale: list[tuple[_Parsed, int]],
    fresh: list[_Fresh],
    bases: dict[str, Baseline],
    months: dict[tuple[int, str], int],
    unknown: list[str],
) -> int:
    """Write what the batch decided, a statement per table; return the findings made."""
    now = utcnow()
    db = _Driver(session)
    records = [
        record_values(
            digest=p.digest,
            meter_id=meter_id,
            card_serial=p.serial,
            source=WriteBackSource.IMPORT,
            write_back=p.write_back,
            history=p.history,
            raw_write_back=p.raw_write_back,
            raw_history=p.raw_history,
            read_at=now,
        )
        for p, meter_id in [*stale, *((f.parsed, f.meter_id) for f in fresh)]
    ]
    ids = db.new_ids(_WRITE_BACKS, len(records))
    for record, record_id in zip(records, ids, strict=True):
        record["id"] = record_id
    db.insert(_WRITE_BACKS, records)
    rec_ids = db.new_ids(_RECONCILIATIONS, len(fresh))
    reconciliations = []
    for f, wb_id, rec_id in zip(fresh, ids[len(stale) :], rec_ids, strict=True):
        values = reconciliation_values(
            f.customer_id, f.meter_id, wb_id, f.period_start, f.parsed.write_back, f.assessment, now
        )
        reconciliations.append(values | {"id": rec_id})
    db.insert(_RECONCILIATIONS, reconciliations)

    entries: list[dict[str, Any]] = []
    findings: list[dict[str, Any]] = []
    delivered: list[dict[str, Any]] = []
    for f, rec_id in zip(fresh, rec_ids, strict=True):
        a, written_at = f.assessment, f.parsed.write_back.written_at
        for sale in a.delivered:
            row = _entry(
                ledger.transit(sale.customer_id),
                ledger.meter(sale.customer_id),
                sale.credit,
                delivery_memo(sale),
                now,
                customer_id=sale.customer_id,
                sale_id=sale.id,
                reconciliation_id=rec_id,
            )
            if row is not None:
                entries.append(row)
            delivered.append(
                {"status": SaleStatus.DELIVERED.value, "delivered_at": written_at, "id": sale.id}
            )
        row = _entry(
            ledger.meter(f.customer_id),
            ledger.consumed(f.customer_id),
            a.consumed,
            consumption_memo(f.parsed.write_back),
            now,
            customer_id=f.customer_id,
            reconciliation_id=rec_id,
        )
        if row is not None:
            entries.append(row)
        findings += [
            _finding(kind, text, now, f.customer_id, f.meter_id, rec_id)
            for kind, text in a.findings
        ]
    findings += [_finding(FindingKind.UNKNOWN_METER, text, now) for text in unknown]
    db.insert(_JOURNAL, entries)
    db.insert(_FINDINGS, findings)
    db.update(_SALES, delivered)
    moved = sorted({f.parsed.write_back.meter_no for f in fresh})
    db.update(_METERS, [bases[no].meter_values() | {"id": bases[no].meter_id} for no in moved])
    upsert_monthly_usage(session, [(m, month, q) for (m, month), q in months.items()])
    return len(findings)


def _finding(
    kind: FindingKind,
    text: str,
    at: datetime,
    customer_id: int | None = None,
    meter_id: int | None = None,
    reconciliation_id: int | None = None,
) -> dict[str, Any]:
    return {
        "kind": kind.value,
        "status": FindingStatus.OPEN.value,
        "customer_id": customer_id,
        "meter_id": meter_id,
        "reconciliation_id": reconciliation_id,
        "detail": text,
        "created_at": at,
        "closed_at": None,
        "closed_by": None,
        "note": "",
    }


# ---------------------------------------------------------------- a batch


def _import_batch(
    sessions: sessionmaker[Session],
    keys: CardKeys,
    lines: list[tuple[int, str]],
    summary: ImportSummary,
    tariffs: TariffBook,
    settings: ReconcileSettings,
) -> None:
    refused: list[tuple[int, str]] = []
    read: list[_Line] = []
    for number, text in lines:
        outcome = _read(number, text)
        if isinstance(outcome, str):
            refused.append((number, outcome))
        else:
            read.append(outcome)
    # Bytes stored before were verified then: a re-run of an interrupted import
    # skips them without the two MACs, which cost more than all the rest.
    with sessions() as session:
        known = _stored_digests(session, [r.digest for r in read])
    duplicates = 0
    parsed: list[_Parsed] = []
    for line in read:
        if line.digest in known:
            duplicates += 1
            continue
        verified = _verify(keys, line)
        if isinstance(verified, str):
            refused.append((line.line, verified))
        else:
            parsed.append(verified)
    # Each meter's records in the order the meter wrote them (sort is stable).
    parsed.sort(key=lambda p: p.write_back.written_at)

    with sessions() as session, session.begin():
        bases = _baselines(session, sorted({p.write_back.meter_no for p in parsed}))
        _tampered(session, bases)
        meter_ids = sorted(b.meter_id for b in bases.values())
        transit = _in_transit(session, meter_ids)
        seen = _stored_digests(session, [p.digest for p in parsed])
        first_month = min((month for p in parsed for month in _months_of(p.history)), default=None)
        stored_months = _stored_months(session, meter_ids, first_month)

        stale: list[tuple[_Parsed, int]] = []
        fresh: list[_Fresh] = []
        months: dict[tuple[int, str], int] = {}
        unknown: dict[str, None] = {}
        for p in parsed:
            base = bases.get(p.write_back.meter_no)
            if base is None:
                text = _unknown_meter_text(p.write_back)
                refused.append((p.line, text))
                unknown[text] = None
                continue
            try:
                check_identity(base, p.write_back)
            except CardRefusedError as exc:
                refused.append((p.line, str(exc)))
                continue
            if p.digest in seen:
                summary.duplicates += 1
                continue
            seen.add(p.digest)
            if is_stale(base, p.write_back):
                stale.append((p, base.meter_id))
                continue
            assert base.customer_id is not None  # check_identity refuses a meter without one
            period_start = base.last_write_back_at
            sales = transit.get(base.meter_id, [])
            a = assess(base, p.write_back, p.history, sales, tariffs, session, settings)
            if a.delivered:
                transit[base.meter_id] = [s for s in sales if s not in a.delivered]
            for month, quantity in a.monthly:
                key = (base.meter_id, month)
                if stored_months.get(key) != quantity:
                    months[key] = stored_months[key] = quantity
            fresh.append(_Fresh(p, base.customer_id, base.meter_id, period_start, a))

        known = _open_unknown(session, list(unknown))
        new_unknown = [text for text in unknown if text not in known]
        summary.findings += _write(session, stale, fresh, bases, months, new_unknown)

    summary.duplicates += duplicates
    summary.stale += len(stale)
    summary.reconciled += len(fresh)
    summary.refused += sorted(refused)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Hold Python's cyclic garbage collector for one batch.

    A batch makes and drops hundreds of thousands of small objects, none in
    a cycle (reference counting frees them), yet each burst of allocations
    sets off full collections that walk every object the process holds: a
    quarter of the batch's time. The batch is bounded, so its memory is too.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _months_of(history: History | None) -> Iterator[str]:
    if history is not None and history.latest_frozen_month is not None:
        latest = history.latest_frozen_month
        index = latest.year * 12 + latest.month - len(history.monthly_usages)
        yield f"{index // 12:04d}-{index % 12 + 1:02d}"


def import_records(
    sessions: sessionmaker[Session],
    keys: CardKeys,
    lines: Iterable[str],
    *,
    total: int | None = None,
    progress: Progress | None = None,
    batch_size: int = 1000,
    settings: ReconcileSettings = DEFAULT_SETTINGS,
) -> ImportSummary:
    """Import and reconcile write-back records, one JSON object per line.

    Blank lines are skipped; every other line is a record (``records``) and
    ends up reconciled, a duplicate, stale or refused with its line number
    (1-based, as an editor shows it). Each ``batch_size`` records are one
    transaction, committed before the next batch is read; ``progress(done,
    total)`` follows each commit with the records done so far. Errors of the
    database itself propagate: the batches committed before stay, and
    importing the same file again finishes the rest.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInputError("batch_size", "give a whole number of records of 1 or more")
    summary = ImportSummary()
    tariffs = TariffBook()
    batch: list[tuple[int, str]] = []

    def flush() -> None:
        with _collector_paused():
            _import_batch(sessions, keys, batch, summary, tariffs, settings)
        summary.records += len(batch)
        batch.clear()
        if progress is not None:
            progress(summary.records, total)

    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        batch.append((number, line))
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    return summary
