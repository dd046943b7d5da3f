"""Reconciling a meter's write-back with the books.

Every write-back a meter writes to a card reaches the centre once or more:
read at the service hall before a sale, read by a reading visit, or
collected by the offline card writer and imported in bulk
(:mod:`cardcenter.reconciliation.bulk`). Each is stored once, keyed by the
SHA-256 of its raw EF05 bytes (MAC included), so a card read twice or a file
imported twice is reconciled once. Reconciling one write-back against the
meter's baseline (what the last verified write-back said, kept on the
``Meter`` row) does four things:

1. **delivery**: the count the meter says it loaded proves every sale in
   transit up to that count arrived; each is marked delivered and its credit
   moves ``transit:N -> meter:N`` in the journal;
2. **consumption**: the meter's credit fell by ``consumed = previous balance
   + delivered - balance now``, which moves ``meter:N -> consumed:N``, so the
   journal's ``meter:N`` is what the meter holds and credit is conserved
   (DESIGN.md 7);
3. **checks**, each a :class:`Finding` for an operator: the consumption
   against what the tariff allows for the energy the meter counted, and
   against the meter's own charge register; credit or energy going backwards;
   illegal card insertions; tamper;
4. **baseline**: the meter row takes the new figures, and the months the
   meter froze are upserted into ``monthly_usage``.

What the meter's registers mean is the meter model's (``cardmeter``, read
there, not guessed): ``remaining`` and ``overdraft_used`` split the one
signed credit register, so ``remaining - overdraft_used`` is it;
``cumulative_used`` is the money the meter ever deducted (exactly:
``cardmeter.pricing.charge``); ``cumulative_quantity`` and the frozen months
are *primary* quantity, already multiplied by CT x PT, so the tariff bounds
are taken with ``ct_pt=1``.

The rules live in :func:`assess`, a pure function of the baseline, the
write-back and the sales in transit; :func:`reconcile_write_back` applies
its result through the ORM for one card at the desk, and the bulk import
applies the same result with a few set-wise statements per batch.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from cardcenter.cards.models import Card
from cardcenter.core.db import utcnow
from cardcenter.core.errors import (
    CardRefusedError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
)
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
from cardcenter.sales import ledger
from cardcenter.sales.models import IN_TRANSIT, Sale, SaleStatus
from cardcenter.tariffs.models import Tariff, TariffVersion
from cardcenter.tariffs.pricing import format_money, format_quantity, price_range
from cardcenter.tariffs.services import tariff_of, version_at
from cardlayout.files import MAX_EVENTS, MONTHS, EventCode, History, MeterStatus, WriteBack

__all__ = [
    "RECONCILIATION_COLUMNS",
    "Assessment",
    "Baseline",
    "ReconcileResult",
    "ReconcileSettings",
    "TariffBook",
    "assess",
    "check_identity",
    "close_finding",
    "consumption_memo",
    "copy_rows",
    "delivery_memo",
    "insert_rows",
    "is_stale",
    "list_findings",
    "monthly_usages",
    "reconcile_write_back",
    "reconciliation_row",
    "record_values",
    "upsert_monthly_usage",
    "write_back_digest",
]

PRICE_SCALE = 10_000
"""``quantity (0.01 units) x price (0.0001 per unit)`` is in 1/10 000 minor units."""
BASIS_POINTS = 10_000
NOTE_LIMIT = 400
DETAIL_LIMIT = 400
TAMPER_EVENTS = frozenset(
    {EventCode.COVER_OPEN, EventCode.MAGNETIC_TAMPER, EventCode.REVERSE_CURRENT}
)
"""The meter's tamper kinds (``cardmeter tamper``): someone opened or interfered with it."""
UNITS = {"electricity": "kWh", "water": "m3", "gas": "m3"}
_TAMPER_BIT = int(MeterStatus.TAMPER)


@dataclass(frozen=True)
class ReconcileSettings:
    """How strict the checks are.

    ``tolerance`` (minor units) and ``tolerance_ratio_bp`` (basis points of
    the most the tariff implies): the larger of the two is allowed outside
    the tariff's bounds before a consumption is a mismatch, since a meter's
    clock, a tariff switch or a rounded-down residue move a charge a little.
    ``illegal_card_threshold``: this many illegal insertions since the last
    write-back make a finding (one is usually a customer trying a
    neighbour's card by mistake).
    """

    tolerance: int = 100
    tolerance_ratio_bp: int = 200
    illegal_card_threshold: int = 2


@dataclass
class ReconcileResult:
    """What :func:`reconcile_write_back` did with one write-back."""

    record: WriteBackRecord
    reconciliation: Reconciliation | None
    duplicate: bool
    """The same bytes were stored before: nothing was done again."""
    stale: bool
    """Older than what the centre already knows of the meter: stored, no money moved."""
    delivered: list[Sale]
    findings: list[Finding]


# ---------------------------------------------------------------- the pure part


class SaleLike(Protocol):
    """What :func:`assess` reads of a sale in transit (an ORM ``Sale`` or a row)."""

    @property
    def id(self) -> int: ...
    @property
    def customer_id(self) -> int: ...
    @property
    def purchase_count(self) -> int: ...
    @property
    def credit(self) -> int: ...
    @property
    def parameter_version(self) -> int: ...
    @property
    def tariff_version_id(self) -> int | None: ...


@dataclass(slots=True)
class Baseline:
    """A meter as the centre last learnt it, with its customer's identity.

    The fields named as on ``Meter`` are that row's reconciliation baseline;
    ``tampered`` is whether the last reconciled write-back had the tamper
    bit, so a finding is made when it is newly set, not at every read.
    """

    meter_id: int
    meter_no: str
    utility: str
    installed_at: datetime
    customer_id: int | None
    customer_no: str | None
    customer_tariff_id: int | None
    category_id: int | None
    loaded_count: int
    remaining: int
    overdraft_used: int
    illegal_card_count: int
    cumulative_quantity: int | None
    cumulative_used: int | None
    last_event_at: datetime | None
    last_write_back_at: datetime | None
    parameter_version: int
    tariff_version_id: int | None
    tampered: bool = False

    @property
    def balance(self) -> int:
        return self.remaining - self.overdraft_used

    @classmethod
    def of_meter(cls, meter: Meter, customer: Customer | None, *, tampered: bool) -> Baseline:
        return cls(
            meter_id=meter.id,
            meter_no=meter.meter_no,
            utility=meter.utility,
            installed_at=meter.installed_at,
            customer_id=customer.id if customer is not None else None,
            customer_no=customer.customer_no if customer is not None else None,
            customer_tariff_id=customer.tariff_id if customer is not None else None,
            category_id=customer.category_id if customer is not None else None,
            loaded_count=meter.loaded_count,
            remaining=meter.remaining,
            overdraft_used=meter.overdraft_used,
            illegal_card_count=meter.illegal_card_count,
            cumulative_quantity=meter.cumulative_quantity,
            cumulative_used=meter.cumulative_used,
            last_event_at=meter.last_event_at,
            last_write_back_at=meter.last_write_back_at,
            parameter_version=meter.parameter_version,
            tariff_version_id=meter.tariff_version_id,
            tampered=tampered,
        )

    def meter_values(self) -> dict[str, Any]:
        """The ``Meter`` columns this baseline sets (for an UPDATE or the ORM object)."""
        return {
            "loaded_count": self.loaded_count,
            "remaining": self.remaining,
            "overdraft_used": self.overdraft_used,
            "illegal_card_count": self.illegal_card_count,
            "cumulative_quantity": self.cumulative_quantity,
            "cumulative_used": self.cumulative_used,
            "last_event_at": self.last_event_at,
            "last_write_back_at": self.last_write_back_at,
            "parameter_version": self.parameter_version,
            "tariff_version_id": self.tariff_version_id,
        }


@dataclass(slots=True)
class Assessment:
    """Everything one reconciliation decided, before anything is written."""

    delivered: list[SaleLike]
    delivered_credit: int
    consumed: int
    energy: int | None
    implied: tuple[int, int] | None
    illegal_cards: int
    relay_events: int
    tamper_events: int
    findings: list[tuple[FindingKind, str]]
    detail: dict[str, Any]
    monthly: list[tuple[str, int]] = field(default_factory=list)


def write_back_digest(raw_write_back: bytes) -> str:
    """The key a write-back is stored under: SHA-256 of its raw EF05 bytes, hex."""
    return hashlib.sha256(raw_write_back).hexdigest()


def check_identity(base: Baseline, write_back: WriteBack) -> None:
    """Refuse a write-back of another meter or customer (nothing is stored).

    The MAC binds a write-back to its meter and customer numbers; that it
    verifies does not make it this meter's.
    """
    if write_back.meter_no != base.meter_no:
        raise CardRefusedError(
            f"The write-back is from meter {write_back.meter_no}, not meter {base.meter_no}: "
            "reconcile it against its own meter."
        )
    if base.customer_no is None:
        raise CardRefusedError(
            f"Meter {base.meter_no} has no customer account: open the account before "
            "reconciling its write-backs."
        )
    if write_back.customer_no != base.customer_no:
        raise CardRefusedError(
            f"Meter {base.meter_no} wrote back for customer {write_back.customer_no}, but the "
            f"books have it at customer {base.customer_no}: check which account the meter "
            "is bound to."
        )


def is_stale(base: Baseline, write_back: WriteBack) -> bool:
    """Written before the write-back the baseline came from.

    The same minute is not stale: a card inserted twice within a minute
    carries two different write-backs with one time (the identical one is a
    duplicate, caught by its digest), and the later one must count.
    """
    last = base.last_write_back_at
    return last is not None and write_back.written_at < last


def _quantity(base: Baseline, quantity: int) -> str:
    return f"{format_quantity(quantity)} {UNITS.get(base.utility, 'units')}"


@functools.lru_cache(maxsize=4096)
def _iso(at: datetime | None) -> str | None:
    """ISO 8601 in UTC to the second (cached: a batch has few distinct times)."""
    return None if at is None else at.astimezone(UTC).isoformat(timespec="seconds")


def _since(base: Baseline) -> str:
    return _iso(base.last_write_back_at) or "the meter was installed"


@functools.lru_cache(maxsize=64)
def _months_back(month: date) -> tuple[str, ...]:
    """``YYYY-MM`` of ``month`` and the months before it, newest first (cached: a
    whole fleet shares a few latest months)."""
    first = month.year * 12 + month.month - 1
    return tuple(f"{i // 12:04d}-{i % 12 + 1:02d}" for i in range(first, first - MONTHS, -1))


def monthly_usages(history: History | None) -> list[tuple[str, int]]:
    """The frozen months of a history as ``(YYYY-MM, quantity)``, newest first.

    ``monthly_usages[i]`` is the month ``latest_frozen_month`` minus ``i``
    (the meter freezes months it skipped as 0, docs/meter.md 4), primary
    quantity in 0.01 units. The oldest months that are 0 are left out: the
    card always carries twelve slots, and the ones before a new meter's
    first use are no data, not months of no consumption (they would drag
    the consumption statistics down).
    """
    if history is None or history.latest_frozen_month is None:
        return []
    months = list(
        zip(_months_back(history.latest_frozen_month), history.monthly_usages, strict=True)
    )
    while months and months[-1][1] == 0:
        months.pop()
    return months


def assess(
    base: Baseline,
    write_back: WriteBack,
    history: History | None,
    in_transit: Iterable[SaleLike],
    tariffs: TariffBook,
    session: Session,
    settings: ReconcileSettings,
) -> Assessment:
    """Decide what a (fresh, identity-checked) write-back means; then advance ``base``.

    Pure except for tariff look-ups through ``tariffs`` (cached). ``base`` is
    updated in place to the write-back's figures, so a second write-back of
    the same meter in the same batch is reconciled against this one.
    """
    wb = write_back
    # 1. delivery: the count the meter loaded proves every sale up to it arrived
    delivered = [s for s in in_transit if s.purchase_count <= wb.purchase_count]
    if len(delivered) > 1:
        delivered.sort(key=lambda s: (s.purchase_count, s.id))
    delivered_credit = sum(s.credit for s in delivered) if delivered else 0

    # 2. consumption: the fall of the signed credit register, less what arrived
    balance = wb.remaining_amount - wb.overdraft_used
    consumed = base.balance + delivered_credit - balance
    energy = used = None
    if history is not None and base.cumulative_quantity is not None:
        energy = history.cumulative_quantity - base.cumulative_quantity
    if history is not None and base.cumulative_used is not None:
        used = history.cumulative_used - base.cumulative_used

    findings: list[tuple[FindingKind, str]] = []
    since = _since(base)
    if consumed < 0 or (energy is not None and energy < 0):
        parts = []
        if consumed < 0:
            parts.append(
                f"the meter's credit rose by {format_money(-consumed)} more than the "
                f"{format_money(delivered_credit)} delivered"
            )
        if energy is not None and energy < 0:
            parts.append(
                f"its energy register went back by {_quantity(base, -energy)} "
                f"(from {format_quantity(base.cumulative_quantity or 0)} to "
                f"{format_quantity(history.cumulative_quantity if history else 0)})"
            )
        findings.append(
            (
                FindingKind.NEGATIVE_CONSUMPTION,
                f"{' and '.join(parts)} since {since}: credit was loaded without a sale, "
                "or the meter was reset or replaced; check the meter and its sales",
            )
        )

    # 3. the tariff: what the energy counted may have cost
    start = base.last_write_back_at or base.installed_at
    implied = tolerance = None
    versions: list[int] = []
    if energy is not None and energy >= 0:
        extra = [s.tariff_version_id for s in delivered if s.tariff_version_id is not None]
        ranged = tariffs.prices_in_force(session, base, start, wb.written_at, extra)
        if ranged is not None:
            (low, high), versions = ranged
            # cardcenter.tariffs.pricing.implied_charge_bounds over every version that
            # was in force: energy is primary already (ct_pt 1), the residue carry
            # allows a minor unit either way of the exact product.
            implied = ((energy * low) // PRICE_SCALE, -(-(energy * high) // PRICE_SCALE))
            tolerance = max(
                settings.tolerance, -(-implied[1] * settings.tolerance_ratio_bp // BASIS_POINTS)
            )
            if not implied[0] - tolerance <= consumed <= implied[1] + tolerance:
                findings.append(
                    (
                        FindingKind.MISMATCH,
                        f"consumed {format_money(consumed)} but the tariff implies "
                        f"{format_money(implied[0])} to {format_money(implied[1])} for "
                        f"{_quantity(base, energy)} since {since} (tolerance "
                        f"{format_money(tolerance)}): check the meter's tariff, CT/PT and wiring",
                    )
                )
    if used is not None and used != consumed:
        findings.append(
            (
                FindingKind.MISMATCH,
                f"the meter charged {format_money(used)} since {since} but its credit fell "
                f"by {format_money(consumed)} after {format_money(delivered_credit)} "
                "delivered: it loaded credit the centre has no sale for, or did not load a "
                "sale counted as delivered; check the sales of this meter",
            )
        )

    # 4. illegal cards and tamper
    illegal = wb.illegal_card_count - base.illegal_card_count
    if illegal < 0:  # a test/clear card reset the meter's count
        illegal = wb.illegal_card_count
    if illegal >= settings.illegal_card_threshold:
        findings.append(
            (
                FindingKind.ILLEGAL_CARDS,
                f"{illegal} illegal card insertions since {since} (the meter counts "
                f"{wb.illegal_card_count}): a foreign, forged or old card was tried; "
                "ask the customer and check the card",
            )
        )
    events = history.events if history is not None else ()
    last_seen = base.last_event_at
    new_events = [e for e in events if last_seen is None or e.time > last_seen] if events else []
    tamper = [e for e in new_events if e.code in TAMPER_EVENTS] if new_events else []
    relay = sum(1 for e in new_events if e.code == EventCode.RELAY_TRIP) if new_events else 0
    flag = bool((int(wb.meter_status) | (int(history.status) if history else 0)) & _TAMPER_BIT)
    newly_flagged = flag and not base.tampered
    if tamper or newly_flagged:
        what = []
        if newly_flagged:
            what.append("the meter's tamper flag is set")
        if tamper:
            names = sorted({e.code.name.lower().replace("_", "-") for e in tamper})
            what.append(
                f"{len(tamper)} {' and '.join(names)} event(s), the latest at "
                f"{_iso(max(e.time for e in tamper))}"
            )
        findings.append(
            (
                FindingKind.TAMPER,
                f"{'; '.join(what)} since {since}: send someone to inspect the meter's seals",
            )
        )

    # Every number the checks used, compact: a reconciliation is written per
    # meter and card read, so this is most of what the books keep of it.
    detail: dict[str, Any] = {
        "before": {
            "at": _iso(base.last_write_back_at),
            "count": base.loaded_count,
            "remaining": base.remaining,
            "overdraft_used": base.overdraft_used,
            "illegal_cards": base.illegal_card_count,
            "quantity": base.cumulative_quantity,
            "used": base.cumulative_used,
            "event_at": _iso(base.last_event_at),
            "tamper": base.tampered,
        },
        "after": {
            "at": _iso(wb.written_at),
            "count": wb.purchase_count,
            "remaining": wb.remaining_amount,
            "overdraft_used": wb.overdraft_used,
            "illegal_cards": wb.illegal_card_count,
            "status": int(wb.meter_status),
            "result": int(wb.insertion_result),
            "quantity": history.cumulative_quantity if history is not None else None,
            "used": history.cumulative_used if history is not None else None,
            "purchased": history.cumulative_purchased if history is not None else None,
            "ct": wb.ct_ratio,
            "pt": wb.pt_ratio,
        },
        "delivered": [[s.id, s.purchase_count, s.credit] for s in delivered],
        "delivered_credit": delivered_credit,
        "consumed": consumed,
        "energy": energy,
        "used": used,
        "ct_pt": 1,  # energy is primary: the meter applied CT x PT already
        "tariff_versions": versions,
        "implied": list(implied) if implied else None,
        "tolerance": tolerance,
        "illegal_cards": illegal,
        "relay_events": relay,
        "tamper_events": len(tamper),
        "tamper_flag": flag,
        "new_events": len(new_events),
        "events_may_be_missing": len(new_events) == len(events) >= MAX_EVENTS,
    }

    # 5. the new baseline
    if delivered:
        top = delivered[-1]
        base.parameter_version = top.parameter_version
        if top.tariff_version_id is not None:
            base.tariff_version_id = top.tariff_version_id
    base.loaded_count = wb.purchase_count
    base.remaining = wb.remaining_amount
    base.overdraft_used = wb.overdraft_used
    base.illegal_card_count = wb.illegal_card_count
    # Without a history the energy baseline is unknown from here on: better no
    # check at the next write-back than one over a span the credit does not cover.
    base.cumulative_quantity = history.cumulative_quantity if history is not None else None
    base.cumulative_used = history.cumulative_used if history is not None else None
    if new_events:
        newest = max(e.time for e in new_events)
        base.last_event_at = max(newest, base.last_event_at or newest)
    base.last_write_back_at = wb.written_at
    base.tampered = flag

    return Assessment(
        delivered=delivered,
        delivered_credit=delivered_credit,
        consumed=consumed,
        energy=energy,
        implied=implied,
        illegal_cards=illegal,
        relay_events=relay,
        tamper_events=len(tamper),
        findings=[(kind, text[:DETAIL_LIMIT]) for kind, text in findings] if findings else [],
        detail=detail,
        monthly=monthly_usages(history),
    )


# ---------------------------------------------------------------- tariffs, cached


@dataclass(frozen=True, slots=True)
class _Version:
    """What the checks need of a tariff version: when it starts and its price range."""

    id: int
    tariff_id: int
    active_from: datetime
    low: int
    high: int


class TariffBook:
    """Tariff versions and their price ranges, looked up once and kept.

    One book serves one reconciliation or a whole bulk import (across its
    sessions: it keeps plain values, no ORM objects). Versions are never
    edited once they exist (cardcenter.tariffs.services), so what was read
    stays true for the import.
    """

    def __init__(self) -> None:
        self._versions: dict[int, list[_Version]] = {}
        """Versions of a tariff, sorted by (active_from, version)."""
        self._by_id: dict[int, _Version] = {}
        self._later: dict[int, list[_Version]] = {}
        """The versions of the same tariff that follow a version."""
        self._customer_tariff: dict[tuple[int | None, int | None, str], int | None] = {}
        self._at: dict[tuple[int, datetime], int | None] = {}

    def _load(self, session: Session, tariff_id: int) -> list[_Version]:
        versions = self._versions.get(tariff_id)
        if versions is None:
            versions = []
            for row in session.scalars(
                select(TariffVersion)
                .where(TariffVersion.tariff_id == tariff_id)
                .order_by(TariffVersion.active_from, TariffVersion.version)
            ):
                low, high = price_range(row)
                versions.append(_Version(row.id, tariff_id, row.active_from, low, high))
            self._versions[tariff_id] = versions
            for index, version in enumerate(versions):
                self._by_id[version.id] = version
                self._later[version.id] = versions[index + 1 :]
        return versions

    def _version(self, session: Session, version_id: int) -> _Version | None:
        if version_id not in self._by_id:
            tariff_id = session.scalar(
                select(TariffVersion.tariff_id).where(TariffVersion.id == version_id)
            )
            if tariff_id is None:
                return None
            self._load(session, tariff_id)
        return self._by_id.get(version_id)

    def _start_version(self, session: Session, base: Baseline, at: datetime) -> int | None:
        """The version the meter had at ``at``: the one it confirmed, else its customer's."""
        if base.tariff_version_id is not None:
            return base.tariff_version_id
        key = (base.customer_tariff_id, base.category_id, base.utility)
        if key not in self._customer_tariff:
            customer = session.get(Customer, base.customer_id) if base.customer_id else None
            try:
                found = tariff_of(session, customer, utility=base.utility) if customer else None
            except NotFoundError:
                found = None
            self._customer_tariff[key] = found.id if found is not None else None
        tariff_id = self._customer_tariff[key]
        if tariff_id is None:
            return None
        if (tariff_id, at) not in self._at:
            tariff = session.get(Tariff, tariff_id)
            try:
                version = version_at(session, tariff, at) if tariff is not None else None
            except NotFoundError:  # the tariff starts later: no prices to check against
                version = None
            self._at[tariff_id, at] = version.id if version is not None else None
        return self._at[tariff_id, at]

    def prices_in_force(
        self,
        session: Session,
        base: Baseline,
        start: datetime,
        end: datetime,
        extra: Sequence[int],
    ) -> tuple[tuple[int, int], list[int]] | None:
        """The least and greatest price the meter can have charged from ``start`` to ``end``.

        Over every version it may have had: the one in force at the start,
        later versions of that tariff starting up to ``end`` (the card
        carries the next version as the backup set, which the meter switches
        to on time) and ``extra`` (versions of sales delivered in the span).
        None if no tariff is known. Returns the range and the version ids.
        """
        chosen: list[_Version] = []
        first_id = self._start_version(session, base, start)
        first = self._version(session, first_id) if first_id is not None else None
        if first is not None and not extra and not self._later[first.id]:
            return (first.low, first.high), [first.id]  # the usual case: one version
        if first is not None:
            chosen.append(first)
            chosen += [v for v in self._later[first.id] if v.active_from <= end]
        for version_id in extra:
            if all(v.id != version_id for v in chosen):
                version = self._version(session, version_id)
                if version is not None:
                    chosen.append(version)
        if not chosen:
            return None
        low = min(v.low for v in chosen)
        high = max(v.high for v in chosen)
        return (low, high), [v.id for v in chosen]


# ---------------------------------------------------------------- writing


def record_values(
    *,
    digest: str,
    meter_id: int,
    card_serial: str,
    source: WriteBackSource,
    write_back: WriteBack,
    history: History | None,
    raw_write_back: bytes,
    raw_history: bytes | None,
    read_at: datetime,
) -> dict[str, Any]:
    """The ``write_backs`` row of a write-back (ORM keyword arguments or a Core row)."""
    return {
        "digest": digest,
        "meter_id": meter_id,
        "card_serial": card_serial.upper(),
        "source": source.value
        if isinstance(source, WriteBackSource)
        else WriteBackSource(source).value,
        "purchase_count": write_back.purchase_count,
        "remaining": write_back.remaining_amount,
        "overdraft_used": write_back.overdraft_used,
        "illegal_card_count": write_back.illegal_card_count,
        "meter_status": int(write_back.meter_status),
        "insertion_result": int(write_back.insertion_result),
        "written_at": write_back.written_at,
        "cumulative_purchased": history.cumulative_purchased if history is not None else None,
        "cumulative_used": history.cumulative_used if history is not None else None,
        "cumulative_quantity": history.cumulative_quantity if history is not None else None,
        "raw_write_back": bytes(raw_write_back),
        "raw_history": bytes(raw_history) if raw_history is not None else None,
        "read_at": read_at,
    }


RECONCILIATION_COLUMNS = (
    "write_back_id",
    "meter_id",
    "customer_id",
    "period_start",
    "period_end",
    "energy",
    "delivered",
    "consumed",
    "implied_min",
    "implied_max",
    "overdraft_used",
    "illegal_cards",
    "relay_events",
    "tamper_events",
    "findings",
    "detail",
    "created_at",
)
"""The ``reconciliations`` columns :func:`reconciliation_row` gives, in its order."""


def reconciliation_row(
    base_customer_id: int,
    meter_id: int,
    write_back_id: int,
    period_start: datetime | None,
    write_back: WriteBack,
    a: Assessment,
    created_at: datetime,
) -> tuple[Any, ...]:
    """The ``reconciliations`` row of an assessment: values of :data:`RECONCILIATION_COLUMNS`."""
    implied = a.implied
    return (
        write_back_id,
        meter_id,
        base_customer_id,
        period_start,
        write_back.written_at,
        a.energy,
        a.delivered_credit,
        a.consumed,
        implied[0] if implied else None,
        implied[1] if implied else None,
        write_back.overdraft_used,
        a.illegal_cards,
        a.relay_events,
        a.tamper_events,
        len(a.findings),
        a.detail,
        created_at,
    )


def insert_rows(
    session: Session,
    table: str,
    names: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    *,
    suffix: str = "",
) -> None:
    """``INSERT INTO table (names) VALUES (...) suffix`` for many rows, straight to the driver.

    The values must be what the driver takes (bind-processed). One
    executemany: SQLite's fastest way (faster than multi-row VALUES), and
    psycopg pipelines it on PostgreSQL. Plain inserts on PostgreSQL go faster
    still with COPY (:func:`copy_rows`).
    """
    if not rows:
        return
    connection = session.connection()
    mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    connection.exec_driver_sql(
        f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join([mark] * len(names))}) "
        f"{suffix}",
        list(rows),
    )


def copy_rows(
    session: Session, table: str, names: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    """Plain INSERT of many rows: COPY on PostgreSQL (psycopg's fastest way), else executemany."""
    if not rows:
        return
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        insert_rows(session, table, names, rows)
        return
    driver: Any = connection.connection.dbapi_connection
    with (
        driver.cursor() as cursor,
        cursor.copy(f"COPY {table} ({', '.join(names)}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row(row)


def delivery_memo(sale: SaleLike) -> str:
    """The journal memo of a sale's credit reaching the meter."""
    return f"delivered: sale {sale.id}, purchase {sale.purchase_count}"


def consumption_memo(write_back: WriteBack) -> str:
    """The journal memo of what a meter consumed up to a write-back."""
    return f"consumed: meter {write_back.meter_no} to {_iso(write_back.written_at)}"


def upsert_monthly_usage(session: Session, rows: Sequence[tuple[int, str, int]]) -> None:
    """Insert or update ``monthly_usage`` rows: (meter id, ``YYYY-MM``, quantity).

    ``INSERT ... ON CONFLICT (meter_id, month) DO UPDATE``, which SQLite and
    PostgreSQL both have, so a concurrent import of the same meter cannot
    fail on the unique key as a read-then-write would. A (meter, month) may
    appear once in ``rows``.
    """
    if not rows:
        return
    conflict = "ON CONFLICT (meter_id, month) DO UPDATE SET quantity = excluded.quantity"
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        # three arrays in one statement: psycopg would send an executemany row by row
        meter_ids, months, quantities = (list(column) for column in zip(*rows, strict=True))
        connection.exec_driver_sql(
            f"INSERT INTO {MonthlyUsage.__tablename__} (meter_id, month, quantity) "
            f"SELECT * FROM unnest(%s::bigint[], %s::varchar[], %s::bigint[]) {conflict}",
            (meter_ids, months, quantities),
        )
        return
    insert_rows(
        session,
        MonthlyUsage.__tablename__,
        ("meter_id", "month", "quantity"),
        rows,
        suffix=conflict,
    )


def _previous_tamper(session: Session, meter: Meter) -> bool:
    """Whether the write-back the baseline came from had the tamper bit."""
    if meter.last_write_back_at is None:
        return False
    statuses = session.scalars(
        select(WriteBackRecord.meter_status).where(
            WriteBackRecord.meter_id == meter.id,
            WriteBackRecord.written_at == meter.last_write_back_at,
        )
    )
    return any(int(s) & MeterStatus.TAMPER for s in statuses)


def reconcile_write_back(
    session: Session,
    *,
    meter: Meter,
    card_serial: str,
    write_back: WriteBack,
    history: History | None,
    raw_write_back: bytes,
    raw_history: bytes | None,
    source: WriteBackSource,
    card: Card | None = None,
    operator_id: int | None = None,
    settings: ReconcileSettings = ReconcileSettings(),
) -> ReconcileResult:
    """Store a verified write-back once and reconcile it against the books.

    The caller has verified both MACs (:func:`cardlayout.card.operations.verify_meter_report`
    or the card-reading helpers). A write-back of another meter or customer
    is refused (:class:`CardRefusedError`) and nothing is stored. The same
    bytes seen before return the stored record (``duplicate``); a write-back
    no newer than the meter's baseline is stored but moves no money
    (``stale``). Otherwise sales are delivered, consumption posted, findings
    made and the meter's baseline advanced (module docstring). Flushes; the
    caller commits.
    """
    # The meter's row locked and read again: on PostgreSQL the caller's copy may be
    # older than a bulk import committed since (READ COMMITTED), and a baseline from
    # it would count the import's span of consumption a second time.
    session.flush()
    session.refresh(meter, with_for_update=True)
    customer = meter.customer
    base = Baseline.of_meter(meter, customer, tampered=False)
    check_identity(base, write_back)
    assert customer is not None  # check_identity refuses a meter without one
    if card is not None:
        # Its meter wrote this write-back on it: the meter has taken the card (a
        # replacement's serial is registered), whether the write-back is new, stale
        # or stored already (an import of the offline card writer's records).
        card.registered = True
    digest = write_back_digest(raw_write_back)
    existing = session.scalar(select(WriteBackRecord).where(WriteBackRecord.digest == digest))
    if existing is not None:
        known = session.scalar(
            select(Reconciliation).where(Reconciliation.write_back_id == existing.id)
        )
        return ReconcileResult(existing, known, True, False, [], [])

    now = utcnow()
    record = WriteBackRecord(
        **record_values(
            digest=digest,
            meter_id=meter.id,
            card_serial=card_serial,
            source=source,
            write_back=write_back,
            history=history,
            raw_write_back=raw_write_back,
            raw_history=raw_history,
            read_at=now,
        )
    )
    if is_stale(base, write_back):
        session.add(record)
        session.flush()
        return ReconcileResult(record, None, False, True, [], [])

    base.tampered = _previous_tamper(session, meter)
    sales = list(
        session.scalars(
            select(Sale)
            .where(Sale.meter_id == meter.id, Sale.status.in_(IN_TRANSIT))
            .order_by(Sale.purchase_count, Sale.id)
            .with_for_update()
        )
    )
    period_start = meter.last_write_back_at
    a = assess(base, write_back, history, sales, TariffBook(), session, settings)
    session.add(record)
    session.flush()
    reconciliation = Reconciliation(
        **dict(
            zip(
                RECONCILIATION_COLUMNS,
                reconciliation_row(
                    customer.id, meter.id, record.id, period_start, write_back, a, now
                ),
                strict=True,
            )
        )
    )
    session.add(reconciliation)
    session.flush()

    delivered: list[Sale] = []
    for sale in sales:
        if any(s is sale for s in a.delivered):
            sale.status = SaleStatus.DELIVERED
            sale.delivered_at = write_back.written_at
            ledger.post(
                session,
                ledger.transit(sale.customer_id),
                ledger.meter(sale.customer_id),
                sale.credit,
                delivery_memo(sale),
                customer_id=sale.customer_id,
                sale_id=sale.id,
                reconciliation_id=reconciliation.id,
                operator_id=operator_id,
            )
            delivered.append(sale)
    ledger.post(
        session,
        ledger.meter(customer.id),
        ledger.consumed(customer.id),
        a.consumed,
        consumption_memo(write_back),
        customer_id=customer.id,
        reconciliation_id=reconciliation.id,
        operator_id=operator_id,
    )
    findings = [
        Finding(
            kind=kind,
            customer_id=customer.id,
            meter_id=meter.id,
            reconciliation_id=reconciliation.id,
            detail=text,
            created_at=now,
        )
        for kind, text in a.findings
    ]
    session.add_all(findings)
    for name, value in base.meter_values().items():
        setattr(meter, name, value)
    upsert_monthly_usage(session, [(meter.id, m, q) for m, q in a.monthly])
    session.flush()
    return ReconcileResult(record, reconciliation, False, False, delivered, findings)


# ---------------------------------------------------------------- findings


def list_findings(
    session: Session,
    *,
    status: FindingStatus | None = FindingStatus.OPEN,
    customer_id: int | None = None,
) -> list[Finding]:
    """Findings, oldest first: open ones by default, ``status=None`` for all."""
    stmt = select(Finding).order_by(Finding.created_at, Finding.id)
    if status is not None:
        stmt = stmt.where(Finding.status == FindingStatus(status))
    if customer_id is not None:
        stmt = stmt.where(Finding.customer_id == customer_id)
    return list(session.scalars(stmt))


def close_finding(session: Session, finding_id: int, *, operator_id: int, note: str) -> Finding:
    """Close a finding with what was done about it (the note is required).

    A finding is closed once; closing it again is a :class:`ConflictError`,
    so a second operator cannot overwrite the first one's note.
    """
    text = note.strip() if isinstance(note, str) else ""
    if not text:
        raise InvalidInputError("note", "say what was found or done before closing the finding")
    if len(text) > NOTE_LIMIT:
        raise InvalidInputError("note", f"keep the note to {NOTE_LIMIT} characters")
    finding = session.get(Finding, finding_id, with_for_update=True)
    if finding is None:
        raise NotFoundError(f"There is no finding {finding_id}: check the finding number.")
    if finding.status == FindingStatus.CLOSED:
        raise ConflictError(
            f"Finding {finding_id} was already closed at {_iso(finding.closed_at)}: "
            "reopening is not possible; add a new note elsewhere if needed."
        )
    finding.status = FindingStatus.CLOSED
    finding.closed_at = utcnow()
    finding.closed_by = operator_id
    finding.note = text
    session.flush()
    return finding
