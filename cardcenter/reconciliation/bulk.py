"""Bulk import of the write-backs an offline card writer collected.

The records are JSON lines (``cardmeter.fleet``'s stored-record format:
``meter_no``, ``customer_no``, ``card_serial``, and the whole EF05 and EF06
files as hex). Each record is decoded (the card codecs' values, read
quickly: :func:`decode_write_back`), its two MACs verified under the
meter's key as :func:`verify_meter_report` does (the batch's keys derived
at once, the batch's MACs together over the files' bytes:
:func:`verify_meter_files_many`),
matched to a meter of the books and reconciled by the same rules as a card
read at the desk (:func:`cardcenter.reconciliation.services.assess`).

A utility imports a whole fleet at once (100 000 meters and more), so the
database work is done set-wise, a batch at a time: the batch's meters,
customers, sales in transit, stored digests and monthly usage are read with
a few ``IN (...)`` queries, every record is assessed in memory (a meter that
appears twice in a batch is reconciled in ``written_at`` order against its
own previous record), and the results are written with one statement per
table. Each batch is one transaction, committed before the next begins, so
an interrupted import keeps what it finished, and running it again skips
those records as duplicates: they are stored by the digest of their bytes
(bytes stored were verified when they were stored).

Checking a record (JSON, decoding, key, MACs, and making its ``write_backs``
row) needs no database and costs about half as much as writing it, so the
two run side by side: a forked process checks batch n + 1 while this one
writes batch n (:class:`_Checker`), and a
batch's commit, mostly the database's own work, overlaps the receiving of
the next (:class:`_Committer`). The database is held only for the reading
and writing of the books. With a key store a fork may not use (a PKCS#11
token) the batches are checked here, and the digests already stored are
looked up first so that a re-run skips their MACs.

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
import itertools
import json
import multiprocessing
import operator
import signal
from collections.abc import Callable, Container, Generator, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from typing import Any, TypeVar

from sqlalchemy import JSON, Column, Dialect, LargeBinary, Table, select, update
from sqlalchemy.orm import Session, sessionmaker

from cardcenter.cards.models import Card
from cardcenter.core.db import (
    Base,
    UTCDateTime,
    WalCheckpoints,
    begin_writing,
    engine_of,
    json_text,
    utcnow,
)
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
    RECONCILIATION_COLUMNS,
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
    reconciliation_row,
    record_values,
    upsert_monthly_usage,
    write_back_digest,
)
from cardcenter.sales import ledger
from cardcenter.sales.models import IN_TRANSIT, Sale, SaleStatus
from cardlayout.card.operations import decode_history, decode_write_back, verify_meter_files_many
from cardlayout.errors import CardLayoutError, SecurityError
from cardlayout.files import History, MeterStatus, WriteBack
from cardlayout.security.diversify import CardKeys

__all__ = [
    "BATCH_SIZE",
    "SERVER_BATCH_SIZE",
    "ImportSummary",
    "default_batch_size",
    "import_records",
]

Progress = Callable[[int, "int | None"], None]
"""``progress(records done, total or None)``, called after each committed batch."""

BATCH_SIZE = 10_000
"""Lines per transaction by default on SQLite. A batch's commit writes every page it
touched to SQLite's log, and the write-backs' digest index takes its records at random
places, so nearly every page of that index is written again at each commit: fewer,
larger batches write it less often. Importing 100,000 records into copies of one
database, alternating on a noisy machine: 15,600 to 17,600 write-backs/s at 10,000
lines (eight runs; the writing process 56 to 64 µs a write-back), 13,600 to 17,400 at
2,000 (six runs; 58 to 76 µs), 16,100 to 16,600 at 5,000 and 15,100 to 16,000 at
20,000 (two runs each; the first batch is checked before the two processes overlap).
A batch rolled back by an error is still quick to run again."""
SERVER_BATCH_SIZE = 2000
"""Lines per transaction by default on PostgreSQL: there 10,000 made the import six
times slower than 2,000 (641 against 4,070 write-backs/s in bench/centre.py), and 2,000
was the fastest of 1,000 to 5,000 measured before."""
CHECKPOINT_RECORDS = 10_000
"""Records between checkpoints of SQLite's log (:class:`WalCheckpoints`): a write-back
adds about 3.5 kB to the log, so it stays near 35 MB (and 100 000 records take ten)."""
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

    def add(self, other: ImportSummary) -> None:
        """Count ``other`` (a later batch) in."""
        self.records += other.records
        self.reconciled += other.reconciled
        self.duplicates += other.duplicates
        self.stale += other.stale
        self.refused += other.refused
        self.findings += other.findings


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
    """One line, decoded and MAC-verified, with its ``write_backs`` row made."""

    line: int
    write_back: WriteBack
    history: History | None
    digest: str
    record: tuple[Any, ...]
    """The ``write_backs`` values of :data:`_RECORD_COLUMNS` (the row but for the
    meter, the id and the time read): :func:`record_values`, made and bound for the
    driver (:class:`_RecordBinder`) where the record is checked, so the process
    writing the books does neither."""

    def __reduce__(self) -> tuple[type[_Parsed], tuple[Any, ...]]:
        """Pickled as its fields in order, for the pipe between the two processes.

        A slots dataclass is otherwise pickled with its state as a mapping,
        set attribute by attribute when read: 3 µs more a record for the
        process writing the books to receive, and as much to send.
        """
        return (_Parsed, (self.line, self.write_back, self.history, self.digest, self.record))


@dataclass(slots=True)
class _Chunk:
    """A batch as read: ``lines`` of the input as they are, the first being line ``first``.

    Blank lines are in it and are skipped where it is checked (:meth:`records`),
    so reading a batch is a slice of the input and sending it to the checking
    process is one list of strings.
    """

    first: int
    lines: list[str]

    def records(self) -> Iterator[tuple[int, str]]:
        """The non-blank lines with their numbers (1-based, as an editor shows them)."""
        for number, line in enumerate(self.lines, self.first):
            if line and not line.isspace():  # strip() would copy the line
                yield number, line


@dataclass(slots=True)
class _Checked:
    """A batch's lines after :func:`_check`: what the books are needed for next."""

    records: int = 0
    """The batch's non-blank lines."""
    parsed: list[_Parsed] = field(default_factory=list)
    refused: list[tuple[int, str | None, str]] = field(default_factory=list)
    """(line, digest if the line was a record, reason), in line order."""
    known: int = 0
    """Lines skipped as stored before (only when a set of known digests was given)."""
    meter_nos: list[str] = field(default_factory=list)
    """The meters of :attr:`parsed`, sorted (:attr:`parsed` is in ``written_at`` order)."""


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
_CUSTOMERS = _table(Customer)
_MONTHLY = _table(MonthlyUsage)
_CARDS = _table(Card)
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


_meter_row = operator.attrgetter(*_METER_COLUMNS, "meter_id")
"""A baseline's :data:`_METER_COLUMNS` values and then its meter's id (in C): the
meter row's update, as ``Baseline.meter_values`` gives it to the ORM."""

_NEVER = datetime(1970, 1, 1, tzinfo=UTC)
"""A stand-in for a time a row is given later (it is dropped before the row is written)."""


def _compact_json(value: Any) -> str | None:
    return None if value is None else json_text(value)


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


def _decode(line: _Line) -> tuple[WriteBack, History | None] | str:
    """The record's two files decoded and matched to its names, or why it is refused."""
    try:
        write_back = decode_write_back(line.raw_write_back)
    except (CardLayoutError, ValueError) as exc:
        return f"the write-back cannot be decoded ({exc}): the file is damaged or truncated"
    if write_back is None:
        return "the write-back is cleared: there is nothing to reconcile"
    try:
        history = decode_history(line.raw_history) if line.raw_history is not None else None
    except (CardLayoutError, ValueError) as exc:
        return f"the history cannot be decoded ({exc}): the file is damaged or truncated"
    if (line.meter_no, line.customer_no) != (write_back.meter_no, write_back.customer_no):
        return (
            f"the record names meter {line.meter_no} and customer {line.customer_no}, but "
            f"its write-back is meter {write_back.meter_no} and customer "
            f"{write_back.customer_no}: the file was edited"
        )
    return write_back, history


def _check(keys: CardKeys, chunk: _Chunk, known: Container[str], binder: _RecordBinder) -> _Checked:
    """Read, decode and MAC-check a batch's lines: everything that needs no database.

    Each line is refused with the first thing wrong with it, in this order:
    not a record, a file that does not decode, names that differ from the
    write-back's, a MAC that does not verify. The meters' keys are derived
    for the whole batch in one request to the key store, and the batch's
    MACs computed together (:func:`verify_meter_files_many`). Lines whose
    digest is in ``known`` (stored before, so verified then) are only counted.
    """
    out = _Checked()
    decoded: list[tuple[_Line, WriteBack, History | None]] = []
    for number, text in chunk.records():
        out.records += 1
        line = _read(number, text)
        if isinstance(line, str):
            out.refused.append((number, None, line))
        elif line.digest in known:
            out.known += 1
        else:
            files = _decode(line)
            if isinstance(files, str):
                out.refused.append((number, line.digest, files))
            else:
                decoded.append((line, *files))
    try:
        meter_keys = keys.writeback_keys(write_back.meter_no for _, write_back, _ in decoded)
    except CardLayoutError as exc:  # no write-back master key, say: no record can be checked
        reason = f"the record cannot be verified ({exc}): the file is damaged"
        out.refused += [(line.line, line.digest, reason) for line, _, _ in decoded]
        return out
    outcomes = verify_meter_files_many(
        [
            (
                meter_keys.value(write_back.meter_no),
                line.serial,
                write_back,
                line.raw_write_back,
                history,
                line.raw_history,
            )
            for line, write_back, history in decoded
        ]
    )
    for (line, write_back, history), error in zip(decoded, outcomes, strict=True):
        if isinstance(error, SecurityError):
            out.refused.append((line.line, line.digest, f"{error}; not reconciled"))
        elif error is not None:
            reason = f"the record cannot be verified ({error}): the file is damaged"
            out.refused.append((line.line, line.digest, reason))
        else:
            out.parsed.append(
                _Parsed(
                    line.line, write_back, history, line.digest, _record(line, write_back, history)
                )
            )
    binder.bind(out.parsed)
    # Each meter's records in the order the meter wrote them (sort is stable),
    # and the meters, for the books: what the writing process needs first.
    out.parsed.sort(key=_written_at)
    out.meter_nos = sorted({p.write_back.meter_no for p in out.parsed})
    return out


def _written_at(parsed: _Parsed) -> datetime:
    return parsed.write_back.written_at


_PERIOD_START, _PERIOD_END, _DETAIL, _CREATED_AT = (
    RECONCILIATION_COLUMNS.index(name)
    for name in ("period_start", "period_end", "detail", "created_at")
)
_RECORD_COLUMNS = tuple(
    name
    for name in (column.name for column in _WRITE_BACKS.c)
    if name not in ("id", "meter_id", "read_at")
)
"""The ``write_backs`` columns a checked record carries (:attr:`_Parsed.record`)."""
_WRITTEN_AT = _RECORD_COLUMNS.index("written_at")
_CARD_SERIAL = _RECORD_COLUMNS.index("card_serial")


def _record(line: _Line, write_back: WriteBack, history: History | None) -> tuple[Any, ...]:
    """The record's :data:`_RECORD_COLUMNS` values, as :func:`record_values` makes them."""
    values = record_values(
        digest=line.digest,
        meter_id=0,  # the books' meter, found when the record is written
        card_serial=line.serial.hex().upper(),
        source=WriteBackSource.IMPORT,
        write_back=write_back,
        history=history,
        raw_write_back=line.raw_write_back,
        raw_history=line.raw_history,
        read_at=_NEVER,  # the time the batch is written
    )
    return tuple(values[name] for name in _RECORD_COLUMNS)


class _RecordBinder:
    """Binds a batch's records (:attr:`_Parsed.record`) for a database's driver.

    Made from the engine's dialect before the checking process is forked,
    so that process binds the records it checks: each value through its
    column's bind processor, as :class:`_Driver` does, but bytes as they
    are (:func:`_converters`).
    """

    def __init__(self, dialect: Dialect) -> None:
        self._converters = [
            (index, convert)
            for index, convert in enumerate(
                _converters(dialect, _WRITE_BACKS, _RECORD_COLUMNS, binary=False)
            )
            if convert is not None
        ]

    def bind(self, parsed: list[_Parsed]) -> None:
        """Replace each record with its bound values, column by column (``zip``, in C)."""
        if not parsed or not self._converters:
            return
        columns = list(zip(*(p.record for p in parsed), strict=True))
        for index, convert in self._converters:
            columns[index] = tuple(map(convert, columns[index]))
        for p, record in zip(parsed, zip(*columns, strict=True), strict=True):
            p.record = record


def _unknown_meter_text(write_back: WriteBack) -> str:
    return (
        f"meter {write_back.meter_no} (customer {write_back.customer_no}) wrote a write-back "
        "with a valid MAC, but the books have no such meter: register the meter or find "
        "where the card was read"
    )


# ---------------------------------------------------------------- reading a batch's books


class _Reader:
    """The batch's reads, straight to the driver: ``... IN (...)`` a chunk at a time.

    SQLAlchemy renders an ``IN`` list of 500 values parameter by parameter
    and processes every result row, which costs more than the database's
    work on rows this small (the same reasoning as :class:`_Driver`). Each
    column read still goes through its type's result processor for the
    dialect, so a time comes back aware and in UTC exactly as through the
    ORM. SQLite and PostgreSQL; on PostgreSQL the rows a batch will update
    are locked (``FOR UPDATE``), as the ORM's ``with_for_update`` did.
    """

    def __init__(self, session: Session) -> None:
        self.connection = session.connection()
        self.dialect = self.connection.dialect
        self.mark = "?" if self.dialect.paramstyle == "qmark" else "%s"
        self.locking = self.dialect.name == "postgresql"

    def rows(
        self,
        columns: Sequence[Column[Any]],
        sql: str,
        values: Sequence[Any],
        after: str = "",
        after_values: Sequence[Any] = (),
    ) -> Iterator[Sequence[Any]]:
        """Rows of ``SELECT columns sql (values) after``, each value through its column type.

        ``sql`` ends with ``... IN``; ``after`` may hold more placeholders
        (written ``{mark}``), filled with ``after_values``.
        """
        names = ", ".join(f"{column.table.name}.{column.name}" for column in columns)
        processors = [
            (index, process)
            for index, column in enumerate(columns)
            if (
                process := column.type.dialect_impl(self.dialect).result_processor(
                    self.dialect, None
                )
            )
        ]
        tail = after.format(mark=self.mark)
        for chunk in _chunks(values):
            marks = ", ".join([self.mark] * len(chunk))
            result = self.connection.exec_driver_sql(
                f"SELECT {names} {sql} ({marks}) {tail}", (*chunk, *after_values)
            )
            fetched: Sequence[Sequence[Any]] = result.fetchall()
            if processors and fetched:  # column by column, transposed by zip (in C)
                by_column = list(zip(*fetched, strict=True))
                for index, process in processors:
                    by_column[index] = tuple(map(process, by_column[index]))
                fetched = list(zip(*by_column, strict=True))
            yield from fetched


_BASELINE = (
    ("meter_id", _METERS.c.id),
    ("meter_no", _METERS.c.meter_no),
    ("utility", _METERS.c.utility),
    ("installed_at", _METERS.c.installed_at),
    ("customer_id", _METERS.c.customer_id),
    ("customer_no", _CUSTOMERS.c.customer_no),
    ("customer_tariff_id", _CUSTOMERS.c.tariff_id),
    ("category_id", _CUSTOMERS.c.category_id),
    *((name, _METERS.c[name]) for name in _METER_COLUMNS),
)
"""Baseline's fields in order, each with the column it is read from."""
_BASELINE_COLUMNS = [column for _, column in _BASELINE]
if [f.name for f in fields(Baseline)][: len(_BASELINE)] != [name for name, _ in _BASELINE]:
    raise AssertionError("Baseline's fields moved: _BASELINE builds it by position")


def _baselines(session: Session, meter_nos: Sequence[str]) -> dict[str, Baseline]:
    """The batch's meters (locked for this transaction) with their customers."""
    reader = _Reader(session)
    out: dict[str, Baseline] = {}
    rows = reader.rows(
        _BASELINE_COLUMNS,
        "FROM meters LEFT OUTER JOIN customers ON customers.id = meters.customer_id "
        "WHERE meters.meter_no IN",
        meter_nos,
        "FOR UPDATE OF meters" if reader.locking else "",
    )
    for row in rows:
        out[row[1]] = Baseline(*row)
    return out


def _tampered(session: Session, bases: dict[str, Baseline]) -> None:
    """Mark the meters whose last reconciled write-back had the tamper bit."""
    by_id = {b.meter_id: b for b in bases.values() if b.last_write_back_at is not None}
    rows = _Reader(session).rows(
        (_WRITE_BACKS.c.meter_id,),
        "FROM write_backs JOIN meters ON meters.id = write_backs.meter_id "
        "AND meters.last_write_back_at = write_backs.written_at WHERE meters.id IN",
        list(by_id),
        f"AND (write_backs.meter_status & {int(MeterStatus.TAMPER)}) <> 0",
    )
    for (meter_id,) in rows:
        by_id[meter_id].tampered = True


def _in_transit(session: Session, meter_ids: Sequence[int]) -> dict[int, list[_TransitSale]]:
    reader = _Reader(session)
    statuses = [status.value for status in IN_TRANSIT]
    rows = reader.rows(
        [
            _SALES.c[name]
            for name in (
                "meter_id",
                "id",
                "customer_id",
                "purchase_count",
                "credit",
                "parameter_version",
                "tariff_version_id",
            )
        ],
        "FROM sales WHERE sales.meter_id IN",
        meter_ids,
        f"AND sales.status IN ({', '.join(['{mark}'] * len(statuses))})"
        + (" FOR UPDATE" if reader.locking else ""),
        statuses,
    )
    out: dict[int, list[_TransitSale]] = {}
    for meter_id, *sale in rows:
        out.setdefault(meter_id, []).append(_TransitSale(*sale))
    return out


def _stored_digests(session: Session, digests: Sequence[str]) -> set[str]:
    rows = _Reader(session).rows(
        (_WRITE_BACKS.c.digest,), "FROM write_backs WHERE write_backs.digest IN", digests
    )
    return {digest for (digest,) in rows}


def _stored_months(
    session: Session, meter_ids: Sequence[int], first: str | None
) -> dict[tuple[int, str], int]:
    if first is None:
        return {}
    rows = _Reader(session).rows(
        (_MONTHLY.c.meter_id, _MONTHLY.c.month, _MONTHLY.c.quantity),
        "FROM monthly_usage WHERE monthly_usage.meter_id IN",
        meter_ids,
        "AND monthly_usage.month >= {mark}",
        (first,),
    )
    return {(meter_id, month): quantity for meter_id, month, quantity in rows}


def _register_cards(session: Session, written: Sequence[tuple[_Parsed, int]]) -> None:
    """Mark registered the cards these write-backs were collected from, as a desk does.

    Their meter wrote on them, so it has taken them: a replacement's serial is
    registered in the meter, and its next sale is a purchase card's, which may
    be added to. Only a card of the record's own meter not registered yet is
    touched (few: a replacement not seen since it was issued).
    """
    meters_of = {(p.record[_CARD_SERIAL], meter_id) for p, meter_id in written}
    if not meters_of:
        return
    rows = _Reader(session).rows(
        (_CARDS.c.id, _CARDS.c.serial, _CARDS.c.meter_id),
        "FROM cards WHERE cards.serial IN",
        sorted({serial for serial, _ in meters_of}),
        "AND cards.registered = {mark}",
        (False,),
    )
    ids = [card_id for card_id, serial, meter_id in rows if (serial, meter_id) in meters_of]
    for chunk in _chunks(ids):  # set-wise: a fleet never read at a desk has them all to mark
        session.execute(update(_CARDS).where(_CARDS.c.id.in_(chunk)).values(registered=True))


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


_JOURNAL_COLUMNS = (
    "at",
    "source",
    "destination",
    "amount",
    "memo",
    "customer_id",
    "sale_id",
    "reconciliation_id",
)
"""The journal columns :func:`_entry` gives values of (an import posts for no operator)."""


def _entry(
    source: str,
    destination: str,
    amount: int,
    memo: str,
    at: Any,
    customer_id: int,
    reconciliation_id: int,
    sale_id: int | None = None,
) -> tuple[Any, ...] | None:
    """A journal row as :func:`cardcenter.sales.ledger.post` makes it (sign and zero rules).

    The values of :data:`_JOURNAL_COLUMNS`, ``at`` already bound for the
    driver: the only column of these with a bind processor, and the same
    time for a whole batch.
    """
    if amount == 0:
        return None
    if amount < 0:
        source, destination, amount = destination, source, -amount
    return (at, source, destination, amount, memo, customer_id, sale_id, reconciliation_id)


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

    def bound(self, table: Table, name: str, value: Any) -> Any:
        """``value`` as the driver takes it for column ``name`` of ``table``."""
        return self.converter(table, name)(value)

    def converter(self, table: Table, name: str) -> Callable[[Any], Any]:
        """What makes a value of column ``name`` of ``table`` what the driver takes."""
        convert = _converters(self.dialect, table, (name,))[0]
        return convert if convert is not None else _as_it_is

    def _tuples(
        self, table: Table, names: Sequence[str], rows: Sequence[dict[str, Any]]
    ) -> list[tuple[Any, ...]]:
        """Each row's values of ``names`` as a tuple, through the columns' bind processors.

        The tuples are made by ``itemgetter``, in C.
        """
        get = operator.itemgetter(*names)
        values: list[tuple[Any, ...]] = [get(row) for row in rows]
        if len(names) == 1:
            values = [(value,) for value in values]
        return self._converted(table, names, values)

    def _converted(
        self, table: Table, names: Sequence[str], values: list[tuple[Any, ...]]
    ) -> list[tuple[Any, ...]]:
        """``values`` (tuples of ``names``) through the columns' bind processors.

        Column by column (transposed by ``zip``, in C): most columns need no
        processing at all.
        """
        converters = [(i, c) for i, c in enumerate(_converters(self.dialect, table, names)) if c]
        if not converters or not values:
            return values
        columns = list(zip(*values, strict=True))
        for i, convert in converters:
            columns[i] = tuple(map(convert, columns[i]))
        return list(zip(*columns, strict=True))

    def insert(self, table: Table, rows: Sequence[dict[str, Any]]) -> None:
        """INSERT every row (all with the same keys)."""
        if not rows:
            return
        names = list(rows[0])
        copy_rows(self.session, table.name, names, self._tuples(table, names, rows))

    def update(self, table: Table, rows: Sequence[dict[str, Any]], key: str = "id") -> None:
        """UPDATE each row's columns where ``key`` is the row's ``key`` (one executemany)."""
        if not rows:
            return
        names = [n for n in rows[0] if n != key]
        get = operator.itemgetter(*names, key)
        self.update_tuples(table, names, key, [get(row) for row in rows])

    def update_tuples(
        self, table: Table, names: Sequence[str], key: str, rows: list[tuple[Any, ...]]
    ) -> None:
        """UPDATE ``names`` where ``key`` is: each row the values of ``names``, then ``key``."""
        if not rows:
            return
        sql = (
            f"UPDATE {table.name} SET {', '.join(f'{n} = {self.mark}' for n in names)} "
            f"WHERE {key} = {self.mark}"
        )
        self.connection.exec_driver_sql(sql, self._converted(table, [*names, key], rows))

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


def _as_it_is(value: _T) -> _T:
    return value


def _converters(
    dialect: Dialect, table: Table, names: Sequence[str], *, binary: bool = True
) -> list[Callable[[Any], Any] | None]:
    """The bind processor of each column named (None where a value goes as it is).

    ``binary=False`` leaves bytes as they are: both drivers take them so, and
    SQLite's processor makes a ``memoryview``, which cannot be sent through
    the checking process's pipe.
    """
    out: list[Callable[[Any], Any] | None] = []
    for name in names:
        column_type = table.c[name].type
        if isinstance(column_type, JSON):
            # JSON text without the spaces: both databases take text for a JSON column
            out.append(_compact_json)
            continue
        if not binary and isinstance(column_type, LargeBinary):
            out.append(None)
            continue
        convert = column_type.dialect_impl(dialect).bind_processor(dialect)
        if convert is not None and isinstance(column_type, UTCDateTime):
            # a batch repeats a few times (now, the write-back times): convert each once
            convert = functools.lru_cache(maxsize=4096)(convert)
        out.append(convert)
    return out


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
    written = [*stale, *((f.parsed, f.meter_id) for f in fresh)]
    ids = db.new_ids(_WRITE_BACKS, len(written))
    read_at = db.bound(_WRITE_BACKS, "read_at", now)
    copy_rows(  # the records' values were bound where they were checked (_RecordBinder)
        session,
        _WRITE_BACKS.name,
        ("id", "meter_id", "read_at", *_RECORD_COLUMNS),
        [(i, meter_id, read_at, *p.record) for i, (p, meter_id) in zip(ids, written, strict=True)],
    )
    rec_ids = db.new_ids(_RECONCILIATIONS, len(fresh))
    # Each row bound for the driver as it is made: its times are the batch's own
    # time, the meter's last write-back (few distinct) and the write-back's (bound
    # already, in the record), and its detail is JSON text.
    bind_time = db.converter(_RECONCILIATIONS, "period_start")
    created_at = db.bound(_RECONCILIATIONS, "created_at", now)
    reconciliations = []
    for i, f, wb_id in zip(rec_ids, fresh, ids[len(stale) :], strict=True):
        values = list(
            reconciliation_row(
                f.customer_id, f.meter_id, wb_id, None, f.parsed.write_back, f.assessment, now
            )
        )
        values[_PERIOD_START] = bind_time(f.period_start)
        values[_PERIOD_END] = f.parsed.record[_WRITTEN_AT]
        values[_DETAIL] = _compact_json(values[_DETAIL])
        values[_CREATED_AT] = created_at
        reconciliations.append((i, *values))
    copy_rows(session, _RECONCILIATIONS.name, ("id", *RECONCILIATION_COLUMNS), reconciliations)

    posted_at = db.bound(_JOURNAL, "at", now)
    entries: list[tuple[Any, ...]] = []
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
                posted_at,
                sale.customer_id,
                rec_id,
                sale.id,
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
            posted_at,
            f.customer_id,
            rec_id,
        )
        if row is not None:
            entries.append(row)
        findings += [
            _finding(kind, text, now, f.customer_id, f.meter_id, rec_id)
            for kind, text in a.findings
        ]
    findings += [_finding(FindingKind.UNKNOWN_METER, text, now) for text in unknown]
    copy_rows(session, _JOURNAL.name, _JOURNAL_COLUMNS, entries)
    db.insert(_FINDINGS, findings)
    db.update(_SALES, delivered)
    moved = sorted({f.parsed.write_back.meter_no for f in fresh})
    db.update_tuples(_METERS, _METER_COLUMNS, "id", [_meter_row(bases[no]) for no in moved])
    upsert_monthly_usage(session, [(m, month, q) for (m, month), q in months.items()])
    _register_cards(session, written)
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
    session: Session, checked: _Checked, tariffs: TariffBook, settings: ReconcileSettings
) -> ImportSummary:
    """Reconcile a checked batch against the books in ``session``'s transaction; its counts.

    The caller commits (:class:`_Committer`); ``records`` is left to it.
    """
    # Bytes stored before are duplicates whatever else is wrong with the line
    # (they were verified when they were stored): an import run again skips them.
    stored = _stored_digests(
        session,
        [p.digest for p in checked.parsed] + [d for _, d, _ in checked.refused if d],
    )
    duplicates = checked.known
    refused: list[tuple[int, str]] = []
    for number, digest, reason in checked.refused:
        if digest is not None and digest in stored:
            duplicates += 1
        else:
            refused.append((number, reason))
    # In written_at order (_check), so each meter's records come in the order it wrote them.
    parsed = [p for p in checked.parsed if p.digest not in stored]
    duplicates += len(checked.parsed) - len(parsed)

    bases = _baselines(session, checked.meter_nos)
    _tampered(session, bases)
    meter_ids = sorted(b.meter_id for b in bases.values())
    transit = _in_transit(session, meter_ids)
    first_month = min((month for p in parsed for month in _months_of(p.history)), default=None)
    stored_months = _stored_months(session, meter_ids, first_month)

    seen: set[str] = set()
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
            duplicates += 1
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
    findings = _write(session, stale, fresh, bases, months, new_unknown)

    return ImportSummary(
        reconciled=len(fresh),
        duplicates=duplicates,
        stale=len(stale),
        refused=sorted(refused),
        findings=findings,
    )


# ---------------------------------------------------------------- checking beside writing


def _batches(lines: Iterable[str], size: int) -> Iterator[_Chunk]:
    """The lines, ``size`` at a time (blank lines count: they are skipped when checked)."""
    read = iter(lines)
    first = 1
    while batch := list(itertools.islice(read, size)):
        yield _Chunk(first, batch)
        first += len(batch)


class _ReadAhead:
    """The next batch, read before the one in hand is written; a failure kept for later.

    Reading ahead must not lose what an import without it would have done:
    when the lines fail (a damaged file, an interrupted stream), the whole
    batches read before are still written, then the error is raised.
    """

    def __init__(self, batches: Iterator[_Chunk]) -> None:
        self._batches = batches
        self.error: Exception | None = None

    def next(self) -> _Chunk | None:
        if self.error is not None:
            return None
        try:
            return next(self._batches, None)
        except Exception as exc:
            self.error = exc
            return None

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error


def _serve(
    connection: Connection, parent_end: Connection, keys: CardKeys, binder: _RecordBinder
) -> None:
    """The checking process: :func:`_check` each batch received, send back the outcome.

    A fork of the importing process, holding nothing but what the parent
    held (the key store's keys among it): no key travels through the pipe,
    only lines one way and checked records the other. It never touches the
    parent's database connections and ends with ``os._exit``
    (multiprocessing's way for a fork), so none is closed under the parent.
    Ctrl-C is the parent's to handle; the objects inherited from the parent
    are frozen out of the garbage collector, so no finaliser of the parent's
    runs here and the collector has only this process's batches to walk
    (it is on between batches: the fork was made while the parent held it).

    It ends when the parent's end of the pipe closes. The fork inherits that
    end too, so it closes its copy first: otherwise the pipe would never
    report end-of-file here (the parent once waited a second for this
    process at the end of every import, then killed it).
    """
    parent_end.close()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    gc.freeze()
    gc.enable()
    while True:
        with _collector_paused():
            try:
                batch = connection.recv()
            except (EOFError, OSError):
                return
            outcome: _Checked | Exception
            try:
                outcome = _check(keys, batch, (), binder)
            except Exception as exc:
                outcome = exc
            try:
                connection.send(outcome)
            except (BrokenPipeError, ConnectionResetError):
                return
            except Exception as exc:  # an exception that cannot be pickled
                connection.send(RuntimeError(f"{type(exc).__name__}: {exc}"))
            del batch, outcome


class _Checker:
    """A second process that checks the next batch while this one writes the last.

    Checking (JSON, hex, the two files, the key and two MACs, the record's
    row) and writing (the books) need nothing of each other until the
    writing: run side by side they use both cores of a small machine. The
    process is forked, so the key store it uses is the parent's own object
    (:attr:`KeyStore.forkable`).
    """

    def __init__(self, keys: CardKeys, binder: _RecordBinder) -> None:
        context = multiprocessing.get_context("fork")
        self._connection, child = context.Pipe()
        self._process = context.Process(
            target=_serve,
            args=(child, self._connection, keys, binder),
            name="cardcenter bulk check",
            daemon=True,
        )
        self._process.start()
        child.close()

    def send(self, batch: _Chunk) -> None:
        self._connection.send(batch)

    def receive(self) -> _Checked:
        try:
            outcome = self._connection.recv()
        except EOFError:
            self._process.join(timeout=1)
            raise RuntimeError(
                f"the process checking the records stopped (exit code {self._process.exitcode}) "
                "before it answered; the batches before were imported, run the import again"
            ) from None
        if isinstance(outcome, Exception):
            outcome.add_note("(raised in the process checking the records)")
            raise outcome
        assert isinstance(outcome, _Checked)
        return outcome

    def close(self) -> None:
        """Stop the process: it ends when its pipe closes, and holds nothing worth waiting for."""
        self._connection.close()
        self._process.join(timeout=1)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join()


def _checked_batches(
    sessions: sessionmaker[Session],
    keys: CardKeys,
    batches: Iterator[_Chunk],
    side_by_side: bool,
) -> Generator[tuple[_Checked, bool], None, None]:
    """Each batch's checked lines, in order, and whether it is the last batch.

    With ``side_by_side`` (and a key store a fork may use), a
    :class:`_Checker` process checks batch n + 1 while the caller writes
    batch n (the first batch is checked here, beside the process checking
    the second); every record is checked, and the writing counts the ones
    already stored as duplicates. Otherwise the batches are checked here,
    one after the other, and the records already stored are looked up first
    so that a run again skips their MACs.
    """
    binder = _RecordBinder(engine_of(sessions).dialect)
    ahead = _ReadAhead(batches)
    first = ahead.next()
    upcoming = ahead.next() if first is not None else None
    if first is None or upcoming is None or not (side_by_side and _can_fork(keys)):
        batch = first
        while batch is not None:
            if upcoming is None:
                upcoming = ahead.next()
            yield _check(keys, batch, _known(sessions, batch), binder), upcoming is None
            batch, upcoming = upcoming, None
        ahead.raise_error()
        return
    checker = _Checker(keys, binder)
    try:
        # The first batch is checked here while the process checks the second:
        # nobody waits for the first one.
        checker.send(upcoming)
        waiting = 1
        upcoming = ahead.next()
        yield _check(keys, first, (), binder), False
        while waiting:
            checked = checker.receive()
            waiting -= 1
            if upcoming is not None:
                checker.send(upcoming)
                waiting += 1
                upcoming = ahead.next()
            yield checked, not waiting
    finally:
        checker.close()
    ahead.raise_error()


def _can_fork(keys: CardKeys) -> bool:
    return keys.store.forkable and "fork" in multiprocessing.get_all_start_methods()


def _known(sessions: sessionmaker[Session], batch: _Chunk) -> set[str]:
    """The digests of the batch's records stored before (their MACs need no check)."""
    digests = []
    for number, text in batch.records():
        line = _read(number, text)
        if not isinstance(line, str):
            digests.append(line.digest)
    with sessions() as session:
        return _stored_digests(session, digests)


class _Committer:
    """Commits a batch in a thread while the next checked batch is received.

    A commit is mostly the database's own work (writing the pages, and the
    flush that makes it durable), done without Python's lock, so receiving
    and unpickling the next batch can go on meanwhile. The next batch's
    transaction still begins only after :meth:`finish` has seen this one
    committed: each batch is read and written in a transaction of its own,
    in order, as without the thread. The batches do not checkpoint SQLite's
    log in their commits (:func:`begin_writing`): told of each commit,
    ``checkpoints`` copies the log into the database now and then, beside
    the batches that follow.
    """

    def __init__(self, checkpoints: WalCheckpoints) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cardcenter-commit")
        self._pending: tuple[Future[None], ImportSummary] | None = None
        self._checkpoints = checkpoints

    def start(self, session: Session, batch: ImportSummary) -> None:
        """Commit ``session`` (and close it) in the thread; ``batch`` is what it holds."""
        self._pending = (self._pool.submit(_commit, session), batch)

    def finish(self) -> ImportSummary | None:
        """Wait for the commit started last and give its batch; raise what the commit raised."""
        if self._pending is None:
            return None
        future, batch = self._pending
        self._pending = None
        future.result()
        self._checkpoints.request()
        return batch

    def __enter__(self) -> _Committer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._pool.shutdown(wait=True)  # a commit under way ends before the import returns


def _commit(session: Session) -> None:
    try:
        session.commit()
    finally:
        session.close()


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


def default_batch_size(dialect: str) -> int:
    """Lines per transaction unless told: :data:`BATCH_SIZE` on SQLite,
    :data:`SERVER_BATCH_SIZE` on a database server."""
    return BATCH_SIZE if dialect == "sqlite" else SERVER_BATCH_SIZE


def import_records(
    sessions: sessionmaker[Session],
    keys: CardKeys,
    lines: Iterable[str],
    *,
    total: int | None = None,
    progress: Progress | None = None,
    batch_size: int | None = None,
    settings: ReconcileSettings = DEFAULT_SETTINGS,
    side_by_side: bool = True,
) -> ImportSummary:
    """Import and reconcile write-back records, one JSON object per line.

    Blank lines are skipped; every other line is a record (``records``) and
    ends up reconciled, a duplicate, stale or refused with its line number
    (1-based, as an editor shows it). Each ``batch_size`` lines (the records
    and any blank lines among them) are one transaction, committed before
    the next batch is written; ``progress(done,
    total)`` follows each commit with the records done so far. Errors of the
    database itself propagate: the batches committed before stay, and
    importing the same file again finishes the rest. An error reading
    ``lines`` propagates once the whole batches read before it are written.
    Every batch but the last commits without waiting for the disk; the
    last one's commit flushes the log with them all, so when the import
    returns everything is on disk, and an import cut short by a power cut
    is run again like any other.

    ``side_by_side`` checks the records (decoding, keys, MACs) in a second
    process while this one writes the books, when the key store allows it
    (:attr:`KeyStore.forkable`) and there is more than one batch; memory
    holds three batches then (written, checked, read ahead). The process
    is forked from this one, which a program running other threads (a web
    server) should not do: False checks the records here, one batch at a
    time.
    """
    if batch_size is None:
        batch_size = default_batch_size(engine_of(sessions).dialect.name)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInputError("batch_size", "give a whole number of records of 1 or more")
    summary = ImportSummary()
    tariffs = TariffBook()

    def committed(batch: ImportSummary | None) -> None:
        if batch is not None:
            summary.add(batch)
            if progress is not None:
                progress(summary.records, total)

    checked_batches = _checked_batches(sessions, keys, _batches(lines, batch_size), side_by_side)
    checkpoints = WalCheckpoints(engine_of(sessions), every=CHECKPOINT_RECORDS // batch_size)
    with contextlib.closing(checked_batches), checkpoints, _Committer(checkpoints) as committer:
        while True:
            with _collector_paused():  # receiving a checked batch makes as many objects
                try:
                    item = next(checked_batches, None)
                finally:  # the batch before is committed (or its error raised) either way
                    committed(committer.finish())
                if item is None:
                    break
                checked, last = item
                session = sessions()
                try:
                    # The last batch's commit waits for the disk, and so makes the
                    # batches before durable too: the log is written in order.
                    begin_writing(session, durable=last, checkpointing=False)
                    batch = _import_batch(session, checked, tariffs, settings)
                except BaseException:
                    session.close()  # rolls the batch back
                    raise
                batch.records = checked.records
                committer.start(session, batch)
    return summary
