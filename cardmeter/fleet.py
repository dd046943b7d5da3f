"""A fleet of card meters in numpy: many meters, many days, the card write-backs.

:class:`Fleet` runs the rules of docs/meter.md for every meter at once, one
interval at a time, with array operations only (no Python loop over meters
inside the interval loop), so that 100 000 meters for a month take seconds
rather than the hours the scalar model (:mod:`cardmeter.metering`) would. It
is the same meter, bill for bill: each step of
:func:`cardmeter.metering.advance` and :mod:`cardmeter.credit` has its
vectorised twin here, in the same order, and ``tests/cardmeter/test_fleet.py``
replays meters of a fleet through the scalar model and compares every
register. Money and quantity are ``int64`` throughout; only the random load
is drawn as ``float32`` and becomes integer 0.01 kWh per interval
(``np.rint``) before anything is counted or charged.

What the fleet does, per interval starting at ``t`` (docs/meter.md 2 to 4):

1. customers who planned to visit their meter at ``t`` insert the user card
   (:func:`cardmeter.credit.card_inserted`) and, most of them, load a purchase
   (:func:`cardmeter.insertion.commit`): see :meth:`Fleet.run`;
2. the tier accumulator of every meter with a settlement instant in
   ``(previous start, t]`` is reset; at the first interval of a new month the
   month's quantity is frozen (newest first, 12 kept);
3. each closed meter consumes its load: primary quantity = measured x CT x
   PT, priced by the TOU rate of ``t``'s 15-minute slot and/or the tiers
   (an interval crossing a threshold is split with ``np.maximum``
   arithmetic), charged with the exact residue rule (``residue += q * p``;
   ``charge = residue // 10_000``; ``residue %= 10_000``). An open relay
   consumes nothing;
4. at ``t + interval`` the credit state is evaluated: "off" (remaining <=
   -overdraft limit) and "zero" (remaining <= 0, overdraft not enabled) trip
   whenever found, "alarm 2" trips once; each trip is a RELAY_TRIP event whose
   detail is the :class:`cardmeter.credit.TripReason`.

What the fleet leaves out, and why that keeps it exact rather than
approximate: its meters have **no friendly hours or days and no load limit**
(their EF01 says so: :meth:`Fleet.parameters`), because a hold or a power
trip depends on per-meter calendars and power that do not vectorise cheaply;
for such meters the scalar model never holds or trips for load either. Its
meters have **no backup tariff set**, so there is no tariff switch. Its clock
and calendar are **UTC**: TOU slots, settlement instants and month
boundaries are UTC wall-clock (a meter with ``timezone="UTC"``), so a month
boundary is one instant for the whole fleet. No tamper, no illegal cards.

The write-back records (:meth:`Fleet.write_backs`, :func:`write_records`,
:func:`read_records`) are the offline card writer's stored-record format:
what it keeps after reading each customer's card, and what the billing
centre bulk-imports to reconcile. One JSON object per line (UTF-8, a newline after
each), keys in this order::

    {"meter_no": "100100000042",         12 digits, as on the card
     "customer_no": "310100001726",      12 digits
     "card_serial": "C15C468400000042",  the card's 8-byte serial, hex, upper case
     "write_back": "6805003A...16",      the whole EF05 file (frame, body, MAC), hex
     "history": "68060090...16"}         the whole EF06 file (frame, body, MAC), hex

``write_back`` and ``history`` are byte for byte what the meter wrote on the
card (``WRITE_BACK.encode`` / ``HISTORY.encode`` of the MAC'd values,
docs/card.md 3.4 and 3.5) at a user-card insertion that loaded nothing
(insertion result 01), so the centre decodes and verifies them with the same
code as a card read in the service hall:
:func:`cardlayout.security.mac.verify_data_mac` under
``CardKeys.writeback_key(meter_no)``, labels ``write-back`` and ``history``,
over the meter number, customer number (both from the write-back) and card
serial. The three identity fields are there to find the account quickly;
nothing in a record is to be trusted before the MACs verify.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import statistics
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from cardlayout.card.operations import seal_meter_report
from cardlayout.files import (
    HISTORY,
    MAX_EVENTS,
    MAX_PERIODS,
    MAX_RATES,
    MAX_SETTLEMENT_DATES,
    MAX_TIERS,
    MONTHS,
    WRITE_BACK,
    CardType,
    DayPeriod,
    Event,
    EventCode,
    History,
    InsertionResult,
    MeterStatus,
    Parameters,
    SettlementDate,
    TariffSet,
    UserType,
    WriteBack,
)
from cardlayout.security.diversify import CardKeys
from cardmeter.clock import add_months, latest_settlement, month_of
from cardmeter.credit import CloseCause, TripReason
from cardmeter.pricing import RESIDUE_SCALE, price_parts, tou_rate
from cardmeter.registers import RATES, MeterState

__all__ = [
    "BUY_CHANCE",
    "DEFAULT_TARIFFS",
    "SLOTS",
    "SLOT_MINUTES",
    "VISIT_CHANCE",
    "CardVisit",
    "Fleet",
    "FleetRun",
    "TariffPlan",
    "WriteBackRecord",
    "read_records",
    "tier_cost",
    "write_records",
]

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]
Bools = npt.NDArray[np.bool_]

SLOT_MINUTES: Final = 15
SLOTS: Final = 24 * 60 // SLOT_MINUTES
"""The day is 96 slots of 15 minutes: the TOU table has one rate per slot."""
MINUTES_PER_DAY: Final = 24 * 60
QUANTITY_PER_KWH: Final = 100
"""Quantities are 0.01 kWh."""

VISIT_CHANCE: Final = 0.6
"""Default daily chance that a customer whose meter is at alarm 1 or below, or whose
relay is open, goes to the meter with the card (at the customer's own hour)."""
BUY_CHANCE: Final = 0.85
"""Default chance that such a visit loads a purchase (else the card is only inserted:
it acknowledges an alarm-2 trip or enables overdraft at zero)."""

_NO_SETTLEMENT: Final = -1
_BIG: Final = 1 << 60
"""Padding threshold for tiers a meter does not have: never reached."""
_NOISE_LEVELS: Final = 256
_NOISE_SIGMA: Final = 0.5
_DAY_SIGMA: Final = 0.25
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

Progress = Callable[[int, int], None]
"""``progress(done, total)``: intervals done of the run."""
RecordProgress = Callable[[int], None]
"""``progress(count)``: records written so far."""

LoadClass = Literal["residential", "commercial"]


# -- tariffs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TariffPlan:
    """A tariff and the share of the fleet on it.

    ``tariff`` is the EF03 value the meters hold; ``user_type`` says how it
    bills (docs/meter.md 2). ``load`` picks the daily load shape and the
    credit parameters (alarm levels, overdraft, purchase sizes) of the
    customers on the plan. TOU periods must start on a quarter hour, so that
    the 96-slot table is the tariff exactly.
    """

    name: str
    user_type: UserType
    tariff: TariffSet
    share: float
    load: LoadClass = "residential"


_RES_TOU = TariffSet(
    rate_prices=(8883, 5883, 3283),  # peak, shoulder, valley
    periods=(
        DayPeriod(0, 0, 3),
        DayPeriod(8, 0, 1),
        DayPeriod(11, 30, 2),
        DayPeriod(17, 0, 1),
        DayPeriod(21, 0, 2),
        DayPeriod(23, 0, 3),
    ),
)
_COM_TOU = TariffSet(
    rate_prices=(12500, 8200, 4100, 14000),  # peak, shoulder, valley, summer-critical
    periods=(
        DayPeriod(0, 0, 3),
        DayPeriod(7, 0, 2),
        DayPeriod(9, 0, 1),
        DayPeriod(11, 0, 4),
        DayPeriod(12, 0, 2),
        DayPeriod(14, 0, 1),
        DayPeriod(19, 0, 2),
        DayPeriod(22, 0, 3),
    ),
)
_YEARLY_STEPPED = TariffSet(
    tier_thresholds=(216_000, 420_000),  # 2160 and 4200 kWh a year
    tier_prices=(4883, 5383, 7883),
    settlement_dates=(SettlementDate.yearly(1, 1, 0),),
)
_MONTHLY_TOU_STEPPED = TariffSet(
    rate_prices=(5683, 2883),  # peak, valley; the tier price is added
    periods=(DayPeriod(8, 0, 1), DayPeriod(22, 0, 2)),
    tier_thresholds=(18_000, 26_000),  # 180 and 260 kWh a month
    tier_prices=(0, 500, 3000),
    settlement_dates=(SettlementDate.monthly(1, 0),),
)

DEFAULT_TARIFFS: Final[tuple[TariffPlan, ...]] = (
    TariffPlan("residential flat", UserType.SINGLE_RATE, TariffSet(rate_prices=(5883,)), 0.60),
    TariffPlan(
        "commercial flat", UserType.SINGLE_RATE, TariffSet(rate_prices=(8120,)), 0.10, "commercial"
    ),
    TariffPlan("residential TOU", UserType.TOU, _RES_TOU, 0.15),
    TariffPlan("commercial TOU", UserType.TOU, _COM_TOU, 0.05, "commercial"),
    TariffPlan("residential stepped, yearly", UserType.STEPPED, _YEARLY_STEPPED, 0.07),
    TariffPlan(
        "residential TOU + stepped, monthly", UserType.TOU_STEPPED, _MONTHLY_TOU_STEPPED, 0.03
    ),
)
"""70 % flat, 20 % TOU, 7 % stepped, 3 % TOU + stepped; prices in 0.0001 currency/kWh."""


def _check_plan(plan: TariffPlan) -> None:
    """Refuse a plan the meter could not bill (the scalar pricing is the judge)."""
    for period in plan.tariff.periods:
        if period.minute % SLOT_MINUTES:
            raise ValueError(
                f"plan {plan.name!r}: period {period.hour:02}:{period.minute:02} does not "
                f"start on a quarter hour; the fleet's TOU table has {SLOT_MINUTES}-minute slots"
            )
    if not plan.share >= 0:
        raise ValueError(f"plan {plan.name!r}: share must be >= 0, not {plan.share}")
    slot_start = datetime(2000, 1, 1, tzinfo=UTC)
    for slot in range(SLOTS):
        # raises TariffError if a price the user type needs is missing
        price_parts(
            plan.user_type, plan.tariff, slot_start + timedelta(minutes=SLOT_MINUTES * slot), 0, 1
        )


def _settlement_key(date_: SettlementDate) -> int:
    """``MMDDhh`` for a yearly date, ``DDhh`` for a monthly one (never equal)."""
    return (date_.month or 0) * 10_000 + date_.day * 100 + date_.hour


def _settlement_of_key(key: int) -> SettlementDate:
    month, rest = divmod(key, 10_000)
    day, hour = divmod(rest, 100)
    return SettlementDate(month=month or None, day=day, hour=hour)


def _periods_of_slots(rates: U8) -> tuple[DayPeriod, ...]:
    """The day periods of a 96-slot rate-index table: one where the rate changes."""
    periods: list[DayPeriod] = []
    for slot in range(SLOTS):
        if slot == 0 or rates[slot] != rates[slot - 1]:
            minute = slot * SLOT_MINUTES
            periods.append(DayPeriod(minute // 60, minute % 60, int(rates[slot]) + 1))
    if len(periods) > MAX_PERIODS:
        raise ValueError(f"{len(periods)} day periods; the card holds {MAX_PERIODS}")
    return tuple(periods)


# -- load ------------------------------------------------------------------------------

# Mean load by hour of day, relative (each normalised to a mean of 1 below).
# fmt: off
_RESIDENTIAL_HOURS = (
    0.45, 0.38, 0.35, 0.34, 0.35, 0.45, 0.75, 1.05, 1.00, 0.85, 0.80, 0.85,
    0.95, 0.85, 0.80, 0.85, 1.00, 1.35, 1.75, 1.90, 1.80, 1.55, 1.10, 0.70,
)
_COMMERCIAL_HOURS = (
    0.30, 0.30, 0.30, 0.30, 0.30, 0.30, 0.35, 0.60, 1.30, 1.70, 1.80, 1.80,
    1.60, 1.70, 1.80, 1.75, 1.60, 1.30, 0.90, 0.50, 0.40, 0.35, 0.30, 0.30,
)
# fmt: on
_RESIDENTIAL_WEEKEND = 1.10
_COMMERCIAL_WEEKEND = 0.45


def _shape(hours: Sequence[float]) -> npt.NDArray[np.float64]:
    per_slot = np.repeat(np.asarray(hours, dtype=np.float64), SLOTS // 24)
    shape: npt.NDArray[np.float64] = per_slot / per_slot.mean()
    return shape


_RES_SHAPE = _shape(_RESIDENTIAL_HOURS)
_COM_SHAPE = _shape(_COMMERCIAL_HOURS)
# [weekend][slot] -> (residential, commercial) factor
_SHAPES: Final = np.stack(
    [
        np.stack([_RES_SHAPE, _COM_SHAPE], axis=1),
        np.stack([_RES_SHAPE * _RESIDENTIAL_WEEKEND, _COM_SHAPE * _COMMERCIAL_WEEKEND], axis=1),
    ]
).astype(np.float32)


def _noise_table() -> F32:
    """256 equiprobable quantiles of a mean-1 lognormal (sigma 0.5).

    One random byte per meter and interval picks a quantile: a byte costs a
    quarter of a float draw, and 256 levels are plenty for a load's
    interval-to-interval scatter.
    """
    dist = statistics.NormalDist()
    levels = np.array(
        [
            math.exp(_NOISE_SIGMA * dist.inv_cdf((k + 0.5) / _NOISE_LEVELS))
            for k in range(_NOISE_LEVELS)
        ]
    )
    table: F32 = (levels / levels.mean()).astype(np.float32)
    return table


_NOISE: Final = _noise_table()


# -- results ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FleetRun:
    """What one :meth:`Fleet.run` did (totals over the fleet).

    ``quantity`` primary 0.01 units consumed, ``charged`` minor units
    deducted, ``purchased`` minor units loaded by ``purchases`` purchases,
    ``trips`` and ``closes`` relay operations.
    """

    intervals: int
    meters: int
    quantity: int
    charged: int
    purchases: int
    purchased: int
    trips: int
    closes: int

    @property
    def meter_intervals(self) -> int:
        return self.intervals * self.meters


@dataclass(frozen=True)
class CardVisit:
    """A customer's card insertion recorded by a run: when, and the amount loaded (0: none)."""

    when: datetime
    amount: int


@dataclass(frozen=True)
class WriteBackRecord:
    """One card as the offline card writer stored it: identity and the two files (framed)."""

    meter_no: str
    customer_no: str
    card_serial: bytes
    write_back: bytes
    history: bytes

    def to_json(self) -> dict[str, str]:
        """The stored-record format of the module docstring."""
        return {
            "meter_no": self.meter_no,
            "customer_no": self.customer_no,
            "card_serial": self.card_serial.hex().upper(),
            "write_back": self.write_back.hex().upper(),
            "history": self.history.hex().upper(),
        }

    @classmethod
    def from_json(cls, doc: dict[str, str]) -> WriteBackRecord:
        """Read a stored record; hex in either case. Raises ValueError if malformed."""
        try:
            return cls(
                meter_no=str(doc["meter_no"]),
                customer_no=str(doc["customer_no"]),
                card_serial=bytes.fromhex(doc["card_serial"]),
                write_back=bytes.fromhex(doc["write_back"]),
                history=bytes.fromhex(doc["history"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a write-back record: {exc}") from None


def write_records(
    path: str | Path,
    records: Iterable[WriteBackRecord],
    progress: RecordProgress | None = None,
    *,
    every: int = 10_000,
) -> int:
    """Write ``records`` as JSON lines to ``path``; return how many.

    ``progress(count)`` is called every ``every`` records and once at the end.
    The file appears whole or not at all, as :func:`cardlayout.fileio.atomic_write`
    does it but streamed: a temporary file in the same directory, fsynced and
    renamed into place, so a bulk import never reads half a file and a
    failed run leaves the previous file. The file is private to its owner
    (mode 0600, as ``mkstemp`` makes it): it names every customer's card.
    """
    target = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    count = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
            for record in records:
                out.write(json.dumps(record.to_json(), separators=(",", ":")))
                out.write("\n")
                count += 1
                if progress is not None and count % every == 0:
                    progress(count)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    if progress is not None:
        progress(count)
    return count


def read_records(path: str | Path) -> Iterator[WriteBackRecord]:
    """Read a file of :func:`write_records`, one record per non-empty line."""
    with Path(path).open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                yield WriteBackRecord.from_json(json.loads(line))
            except ValueError as exc:
                raise ValueError(f"{path} line {number}: {exc}") from None


# -- tiers -----------------------------------------------------------------------------


def _tier_cost(before: I64, quantity: I64, p0: I64, th: I64, dp: I64) -> I64:
    """Tier part of ``quantity`` after ``before`` (1/10 000 minor units), vectorised.

    The cost of the first x units since settlement is
    ``F(x) = p0*x + sum_j dp[j] * max(0, x - th[j])`` with ``dp[j] = p[j+1] -
    p[j]``, so the interval from s to s+q costs ``F(s+q) - F(s)``: each part
    at its own tier's price, split at every threshold it crosses, the unit
    that reaches a threshold exactly still in the lower tier
    (:func:`cardmeter.pricing.tier_index`). ``th`` and ``dp`` are ``(J, m)``;
    thresholds a meter does not have are padded with a never-reached value
    and ``dp`` 0.
    """
    after = before + quantity
    cost = p0 * quantity
    for threshold, step in zip(th, dp, strict=True):
        cost += step * (np.maximum(after - threshold, 0) - np.maximum(before - threshold, 0))
    return cost


def _tier_table(thresholds: I64, prices: I64, count: I64) -> tuple[I64, I64, I64]:
    """``(p0, th, dp)`` of :func:`_tier_cost` from per-meter tier arrays.

    ``thresholds`` ``(m, 6)``, ``prices`` ``(m, 7)``, ``count`` the tier count
    of each meter (prices used; thresholds used = count - 1).
    """
    m = count.size
    width = max(int(count.max()) - 1, 0) if m else 0
    th: I64 = np.full((width, m), _BIG, dtype=np.int64)
    dp: I64 = np.zeros((width, m), dtype=np.int64)
    p0: I64 = prices[:, 0].copy() if m else np.zeros(0, dtype=np.int64)
    for j in range(width):
        has = count > j + 1
        th[j, has] = thresholds[has, j]
        dp[j, has] = prices[has, j + 1] - prices[has, j]
    return p0, th, dp


def tier_cost(
    settled: npt.ArrayLike,
    quantity: npt.ArrayLike,
    thresholds: Sequence[int],
    prices: Sequence[int],
) -> I64:
    """Tier part of the price of ``quantity`` after ``settled`` units, in 1/10 000 minor units.

    The fleet's split of an interval across tier thresholds, for any number
    of meters on one tier table (``len(prices) == len(thresholds) + 1``):
    ``sum(q_t * prices[t])`` over the parts q_t of the quantity in each tier.
    Quantities in 0.01 units, prices in 0.0001 currency per unit.
    """
    if len(prices) != len(thresholds) + 1:
        raise ValueError(f"{len(prices)} tier prices need {len(prices) - 1} thresholds")
    before = np.asarray(settled, dtype=np.int64)
    q = np.asarray(quantity, dtype=np.int64)
    before, q = np.broadcast_arrays(before, q)
    m = before.size
    table_th = np.zeros((m, MAX_TIERS - 1), dtype=np.int64)
    table_p = np.zeros((m, MAX_TIERS), dtype=np.int64)
    table_th[:, : len(thresholds)] = thresholds
    table_p[:, : len(prices)] = prices
    p0, th, dp = _tier_table(table_th, table_p, np.full(m, len(prices), dtype=np.int64))
    return _tier_cost(before.ravel(), q.ravel(), p0, th, dp).reshape(before.shape)


# -- the fleet -------------------------------------------------------------------------


def _aligned(when: datetime, what: str) -> datetime:
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"{what} {when.isoformat()} has no time zone; give an aware datetime")
    when = when.astimezone(UTC)
    if when.second or when.microsecond or when.minute % SLOT_MINUTES:
        raise ValueError(f"{what} {when.isoformat()} is not on a {SLOT_MINUTES}-minute boundary")
    return when


def _seconds(when: datetime) -> int:
    return int((when - _EPOCH) // timedelta(seconds=1))


def _hours_in(after: datetime, upto: datetime) -> Iterator[datetime]:
    """Whole-hour instants ``h`` with ``after < h <= upto`` (UTC)."""
    hour = after.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    while hour <= upto:
        yield hour
        hour += timedelta(hours=1)


class Fleet:
    """Per-meter registers and parameters as arrays (index ``i`` is one meter).

    Identity: ``meter_no``, ``customer_no`` (lists of 12-digit str),
    ``card_serial`` (``uint8`` ``(n, 8)``).

    Tariff (the EF03 each meter holds, as arrays; all ``int64`` unless said):
    ``user_type`` (``int8``, :class:`UserType` code), ``rate_prices`` ``(n,
    32)`` with ``rate_count``, ``slot_rate`` (``uint8`` ``(n, 96)``: the
    0-based rate index in force for each 15-minute slot of the day, UTC),
    ``tier_thresholds`` ``(n, 6)`` and ``tier_prices`` ``(n, 7)`` with
    ``tier_count``, ``settlement`` ``(n, 4)`` (``MMDDhh`` yearly, ``DDhh``
    monthly, -1 unused). Prices are 0.0001 currency per unit.

    Parameters (EF01): ``ct_ratio``, ``pt_ratio``, ``alarm1``, ``alarm2``,
    ``overdraft_limit``, ``close_allow`` (minor units).

    Registers (:class:`cardmeter.registers.MeterState` names): ``remaining``,
    ``residue``, ``cumulative_purchased``, ``cumulative_used``,
    ``cumulative_quantity``, ``quantity_by_rate`` ``(n, 32)`` (up to date
    after each run), ``settlement_quantity``, ``month_quantity``, ``frozen``
    ``(n, 12)`` newest first, ``purchase_count`` (last count loaded),
    ``last_purchase_amount``, ``relay_closed``, ``overdraft_enabled``,
    ``alarm2_tripped`` (``bool``), ``trip_reason`` (``int8``: 0 none, else
    :class:`TripReason`), and the newest 8 events (``event_code``,
    ``event_detail`` ``uint8`` and ``event_time`` epoch seconds, ``(n, 8)``
    rings at ``event_count % 8``). Fleet-wide: ``clock`` (next interval
    start), ``current_month``, ``frozen_month``, ``settled_through``
    (settlement instants up to it are applied).

    Customer behaviour (for the purchases of a run): ``load_class`` (``int8``,
    1 commercial), ``mean_kw`` (``float32``), ``visit_slot`` (the customer's
    slot of the day for visits) and ``top_up`` (usual purchase, minor units).
    """

    def __init__(self, n: int, start: datetime, plans: Sequence[TariffPlan], seed: int) -> None:
        """An empty fleet of ``n`` meters; use :meth:`build`."""
        self.n = n
        self.start = start
        self.clock = start
        self.plans = tuple(plans)
        self.seed = seed
        self.plan = np.zeros(n, dtype=np.int16)
        self.meter_no: list[str] = []
        self.customer_no: list[str] = []
        self.card_serial: U8 = np.zeros((n, 8), dtype=np.uint8)
        self.user_type = np.zeros(n, dtype=np.int8)
        self.rate_prices: I64 = np.zeros((n, MAX_RATES), dtype=np.int64)
        self.rate_count: I64 = np.zeros(n, dtype=np.int64)
        self.slot_rate: U8 = np.zeros((n, SLOTS), dtype=np.uint8)
        self.tier_thresholds: I64 = np.zeros((n, MAX_TIERS - 1), dtype=np.int64)
        self.tier_prices: I64 = np.zeros((n, MAX_TIERS), dtype=np.int64)
        self.tier_count: I64 = np.zeros(n, dtype=np.int64)
        self.settlement: I64 = np.full((n, MAX_SETTLEMENT_DATES), _NO_SETTLEMENT, dtype=np.int64)
        self.ct_ratio: I64 = np.ones(n, dtype=np.int64)
        self.pt_ratio: I64 = np.ones(n, dtype=np.int64)
        self.alarm1: I64 = np.zeros(n, dtype=np.int64)
        self.alarm2: I64 = np.zeros(n, dtype=np.int64)
        self.overdraft_limit: I64 = np.zeros(n, dtype=np.int64)
        self.close_allow: I64 = np.zeros(n, dtype=np.int64)
        self.remaining: I64 = np.zeros(n, dtype=np.int64)
        self.residue: I64 = np.zeros(n, dtype=np.int64)
        self.cumulative_purchased: I64 = np.zeros(n, dtype=np.int64)
        self.cumulative_used: I64 = np.zeros(n, dtype=np.int64)
        self.cumulative_quantity: I64 = np.zeros(n, dtype=np.int64)
        self.quantity_by_rate: I64 = np.zeros((n, RATES), dtype=np.int64)
        self.settlement_quantity: I64 = np.zeros(n, dtype=np.int64)
        self.month_quantity: I64 = np.zeros(n, dtype=np.int64)
        self.frozen: I64 = np.zeros((n, MONTHS), dtype=np.int64)
        self.purchase_count: I64 = np.zeros(n, dtype=np.int64)
        self.last_purchase_amount: I64 = np.zeros(n, dtype=np.int64)
        self.relay_closed: Bools = np.ones(n, dtype=np.bool_)
        self.overdraft_enabled: Bools = np.zeros(n, dtype=np.bool_)
        self.alarm2_tripped: Bools = np.zeros(n, dtype=np.bool_)
        self.trip_reason = np.zeros(n, dtype=np.int8)
        self.event_code: U8 = np.zeros((n, MAX_EVENTS), dtype=np.uint8)
        self.event_detail: U8 = np.zeros((n, MAX_EVENTS), dtype=np.uint8)
        self.event_time: I64 = np.zeros((n, MAX_EVENTS), dtype=np.int64)
        self.event_count: I64 = np.zeros(n, dtype=np.int64)
        self.current_month: date = month_of(start)
        self.frozen_month: date | None = None
        self.settled_through = start - timedelta(seconds=1)
        self.load_class = np.zeros(n, dtype=np.int8)
        self.mean_kw: F32 = np.zeros(n, dtype=np.float32)
        self.visit_slot: I64 = np.zeros(n, dtype=np.int64)
        self.top_up: I64 = np.zeros(n, dtype=np.int64)
        self._rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
        self._recording = False
        self._recorded_starts: list[datetime] = []
        self._recorded_load: list[I64] = []
        self._recorded_visits: list[tuple[datetime, I64, I64]] = []

    # -- building --------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        n: int,
        seed: int,
        start: datetime,
        tariffs: Sequence[TariffPlan] = DEFAULT_TARIFFS,
    ) -> Fleet:
        """``n`` meters opened and in service, their registers as of ``start``.

        Deterministic for ``seed``: the same arguments give the same fleet,
        and :meth:`run` the same consumption. Plans are drawn by their
        shares; every meter starts in the "normal" credit state (remaining
        above alarm 1, relay closed) with a plausible past: purchases and
        usage so far, a tier accumulator filled since its last settlement,
        12 frozen months. ``start`` must be on a 15-minute boundary.
        """
        if n < 1:
            raise ValueError(f"a fleet needs at least one meter, not {n}")
        if n > 10**8:
            raise ValueError("meter numbers have 8 digits for the fleet index: at most 10**8")
        start = _aligned(start, "fleet start")
        plans = tuple(tariffs)
        if not plans:
            raise ValueError("give at least one tariff plan")
        for plan in plans:
            _check_plan(plan)
        shares = np.array([p.share for p in plans], dtype=np.float64)
        if shares.sum() <= 0:
            raise ValueError("the plans' shares add up to 0")
        fleet = cls(n, start, plans, seed)
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
        fleet.plan[:] = rng.choice(len(plans), size=n, p=shares / shares.sum())
        fleet._identities(rng)
        fleet._tariffs()
        fleet._customers(rng)
        fleet._past(rng)
        return fleet

    def _identities(self, rng: np.random.Generator) -> None:
        prefix = 1000 + self.seed % 9000
        self.meter_no = [f"{prefix:04d}{i:08d}" for i in range(self.n)]
        customers = rng.permutation(self.n) + 3_101_000_000 * 100
        self.customer_no = [f"{int(c):012d}" for c in customers]
        # C1, a 3-byte batch number, then the 4-byte index: unique within the fleet
        self.card_serial[:, 0] = 0xC1
        self.card_serial[:, 1:4] = rng.integers(0, 256, 3, dtype=np.uint8)
        index = np.arange(self.n, dtype=">u4").view(np.uint8).reshape(self.n, 4)
        self.card_serial[:, 4:] = index

    def _tariffs(self) -> None:
        """Spread each plan's tariff into the per-meter arrays."""
        anchor = datetime(2000, 1, 1, tzinfo=UTC)
        for index, plan in enumerate(self.plans):
            rows = self.plan == index
            t = plan.tariff
            self.user_type[rows] = int(plan.user_type)
            self.rate_count[rows] = len(t.rate_prices)
            self.rate_prices[np.ix_(rows, np.arange(len(t.rate_prices)))] = t.rate_prices
            if plan.user_type in (UserType.TOU, UserType.TOU_STEPPED):
                table = [
                    tou_rate(t, anchor + timedelta(minutes=SLOT_MINUTES * s)) - 1
                    for s in range(SLOTS)
                ]
                self.slot_rate[rows] = np.array(table, dtype=np.uint8)
            if plan.user_type in (UserType.STEPPED, UserType.TOU_STEPPED):
                self.tier_count[rows] = len(t.tier_prices)
                thresholds = np.arange(len(t.tier_thresholds))
                self.tier_thresholds[np.ix_(rows, thresholds)] = t.tier_thresholds
                self.tier_prices[np.ix_(rows, np.arange(len(t.tier_prices)))] = t.tier_prices
            for k, settlement in enumerate(t.settlement_dates):
                self.settlement[rows, k] = _settlement_key(settlement)

    def _customers(self, rng: np.random.Generator) -> None:
        """Load class, mean power, CT/PT, credit parameters and buying habits."""
        n = self.n
        commercial = np.array([p.load == "commercial" for p in self.plans])[self.plan]
        self.load_class[:] = commercial
        res_kw = rng.lognormal(math.log(0.45), 0.5, n)  # ~11 kWh a day
        com_kw = rng.lognormal(math.log(12.0), 0.9, n)
        kw = np.where(commercial, com_kw, res_kw)
        self.mean_kw[:] = kw
        # current transformers for the bigger commercial loads (secondary 5 A)
        ct = np.select([kw > 150, kw > 60, kw > 25], [80, 40, 20], 1)
        self.ct_ratio[:] = np.where(commercial, ct, 1)
        self.pt_ratio[:] = 1

        def pick(res: Sequence[int], com: Sequence[int]) -> I64:
            return np.where(commercial, rng.choice(com, n), rng.choice(res, n)).astype(np.int64)

        self.alarm1[:] = pick((2000, 3000, 5000), (50_000, 100_000))
        self.alarm2[:] = pick((500, 1000), (20_000, 30_000))
        self.overdraft_limit[:] = pick((0, 1000, 2000, 5000), (0, 50_000, 100_000))
        self.close_allow[:] = pick((0, 0, 500, 1000), (0, 10_000))
        self.top_up[:] = pick(
            (5_000, 10_000, 10_000, 20_000, 30_000, 50_000), (300_000, 500_000, 1_000_000)
        )
        # visits between 07:00 and 21:00
        self.visit_slot[:] = rng.integers(7 * 4, 21 * 4, n)

    def _past(self, rng: np.random.Generator) -> None:
        """Registers as a meter in service for a while would have them at ``start``."""
        n = self.n
        daily = self.mean_kw.astype(np.float64) * 24 * QUANTITY_PER_KWH  # primary, 0.01 kWh
        self.purchase_count[:] = rng.integers(1, 60, n)
        self.last_purchase_amount[:] = self.top_up
        self.remaining[:] = self.alarm1 + 1 + rng.integers(0, self.top_up + self.top_up // 2)
        self.cumulative_used[:] = rng.integers(0, self.purchase_count * self.top_up + 1)
        self.cumulative_purchased[:] = self.cumulative_used + self.remaining
        self.residue[:] = rng.integers(0, RESIDUE_SCALE, n)
        price = np.maximum(self.rate_prices[:, 0] + self.tier_prices[:, 0], 1)
        self.cumulative_quantity[:] = self.cumulative_used * RESIDUE_SCALE // price
        # this month so far, the 12 before, and the tiers since the last settlement
        month_start = datetime(self.start.year, self.start.month, 1, tzinfo=UTC)
        days_in = (self.start - month_start) / timedelta(days=1)
        self.month_quantity[:] = np.rint(daily * days_in * rng.uniform(0.8, 1.2, n))
        self.frozen_month = add_months(self.current_month, -1)
        for k in range(MONTHS):
            first = add_months(self.current_month, -1 - k)
            length = (add_months(first, 1) - first).days
            self.frozen[:, k] = np.rint(daily * length * rng.uniform(0.8, 1.2, n))
        self.cumulative_quantity += self.frozen.sum(axis=1) + self.month_quantity
        self._past_by_rate()
        for index, plan in enumerate(self.plans):
            last = latest_settlement(plan.tariff, "UTC", self.settled_through)
            if last is None:
                continue
            rows = self.plan == index
            days = (self.start - last) / timedelta(days=1)
            noise = rng.uniform(0.8, 1.2, int(rows.sum()))
            self.settlement_quantity[rows] = np.rint(daily[rows] * days * noise)

    def _past_by_rate(self) -> None:
        """Split the past quantity over the rate registers as the load shape falls in them.

        Non-TOU meters count everything in rate 1; a TOU meter's share of a
        rate is its load shape's share of the slots at that rate. The
        remainder of the integer split goes to rate 1, so the registers add
        up to ``cumulative_quantity``.
        """
        total = self.cumulative_quantity
        self.quantity_by_rate[:, 0] = total
        kind = self.user_type
        tou = np.flatnonzero((kind == UserType.TOU) | (kind == UserType.TOU_STEPPED))
        if tou.size == 0:
            return
        shape = np.where(self.load_class[tou, None] == 1, _COM_SHAPE, _RES_SHAPE)  # (m, 96)
        weight = np.rint(shape * 1000).astype(np.int64)  # integer weights: no float in registers
        rates = self.slot_rate[tou].astype(np.int64)
        per_rate = np.zeros((tou.size, RATES), dtype=np.int64)
        rows = np.repeat(np.arange(tou.size), SLOTS)
        np.add.at(per_rate, (rows, rates.ravel()), weight.ravel())
        split = total[tou, None] * per_rate // per_rate.sum(axis=1, keepdims=True)
        split[:, 0] += total[tou] - split.sum(axis=1)
        self.quantity_by_rate[tou] = split

    # -- views for one meter -----------------------------------------------------------

    def parameters(self, i: int) -> Parameters:
        """Meter ``i``'s EF01 as it holds it: no friendly window, no load or hoarding limit."""
        return Parameters(
            user_type=UserType(int(self.user_type[i])),
            card_type=CardType.PURCHASE,
            meter_no=self.meter_no[i],
            customer_no=self.customer_no[i],
            alarm1=int(self.alarm1[i]),
            alarm2=int(self.alarm2[i]),
            ct_ratio=int(self.ct_ratio[i]),
            pt_ratio=int(self.pt_ratio[i]),
            overdraft_limit=int(self.overdraft_limit[i]),
            close_allow_threshold=int(self.close_allow[i]),
        )

    def tariff_set(self, i: int) -> TariffSet:
        """Meter ``i``'s current tariff set (EF03), rebuilt from the arrays."""
        kind = UserType(int(self.user_type[i]))
        tou = kind in (UserType.TOU, UserType.TOU_STEPPED)
        tiers = int(self.tier_count[i])
        keys = [int(k) for k in self.settlement[i] if k != _NO_SETTLEMENT]
        return TariffSet(
            rate_prices=tuple(int(p) for p in self.rate_prices[i, : int(self.rate_count[i])]),
            periods=_periods_of_slots(self.slot_rate[i]) if tou else (),
            tier_thresholds=tuple(int(t) for t in self.tier_thresholds[i, : max(tiers - 1, 0)]),
            tier_prices=tuple(int(p) for p in self.tier_prices[i, :tiers]),
            settlement_dates=tuple(_settlement_of_key(k) for k in keys),
        )

    def serial(self, i: int) -> bytes:
        """Meter ``i``'s card serial."""
        return bytes(self.card_serial[i].tobytes())

    def events(self, i: int) -> list[Event]:
        """Meter ``i``'s newest events (up to 8), oldest first, as the meter logs them."""
        count = int(self.event_count[i])
        out = []
        for k in range(max(0, count - MAX_EVENTS), count):
            slot = k % MAX_EVENTS
            out.append(
                Event(
                    code=EventCode(int(self.event_code[i, slot])),
                    detail=int(self.event_detail[i, slot]),
                    time=_EPOCH + timedelta(seconds=int(self.event_time[i, slot])),
                )
            )
        return out

    def last_settlement(self, i: int) -> datetime | None:
        """The settlement instant meter ``i``'s tier accumulator last reset at (or started from)."""
        return latest_settlement(self.tariff_set(i), "UTC", self.settled_through)

    def meter_state(self, i: int) -> MeterState:
        """Meter ``i`` as a scalar :class:`MeterState` (UTC), for :mod:`cardmeter.metering`.

        Every register the fleet keeps is carried over; the event log holds
        the fleet's newest 8 events only. The scalar model continues it
        exactly as the fleet would (``tests/cardmeter/test_fleet.py``).
        """
        from cardlayout.files import PARAMETERS, TARIFF_SET_1

        reason = int(self.trip_reason[i])
        return MeterState(
            meter_no=self.meter_no[i],
            timezone="UTC",
            clock=self.clock,
            customer_no=self.customer_no[i],
            card_serial=self.serial(i),
            remaining=int(self.remaining[i]),
            residue=int(self.residue[i]),
            overdraft_enabled=bool(self.overdraft_enabled[i]),
            cumulative_purchased=int(self.cumulative_purchased[i]),
            cumulative_used=int(self.cumulative_used[i]),
            last_purchase_count=int(self.purchase_count[i]),
            last_purchase_amount=int(self.last_purchase_amount[i]),
            cumulative_quantity=int(self.cumulative_quantity[i]),
            quantity_by_rate=[int(q) for q in self.quantity_by_rate[i]],
            settlement_quantity=int(self.settlement_quantity[i]),
            last_settlement=self.last_settlement(i),
            month_quantity=int(self.month_quantity[i]),
            current_month=self.current_month,
            frozen_month=self.frozen_month,
            frozen=[int(q) for q in self.frozen[i]],
            parameters_frame=PARAMETERS.encode(self.parameters(i)),
            current_tariff_frame=TARIFF_SET_1.encode(self.tariff_set(i)),
            relay_closed=bool(self.relay_closed[i]),
            trip_reason=TripReason(reason).register if reason else None,
            alarm2_tripped=bool(self.alarm2_tripped[i]),
            events=self.events(i),
        )

    # -- credit and supply (vectorised docs/meter.md 3; cardmeter.credit) --------------

    def _supply(self, idx: I64) -> tuple[Bools, Bools, Bools, Bools, Bools]:
        """(alarm1, alarm2, off, zero, overdraft) masks of meters ``idx``.

        The order of :func:`cardmeter.credit.supply_state`: normal above
        alarm 1, alarm 1 above alarm 2, alarm 2 above 0, then off at or below
        -overdraft limit, then overdraft if enabled, else zero.
        """
        r = self.remaining[idx]
        normal = r > self.alarm1[idx]
        above2 = r > self.alarm2[idx]
        alarm1 = ~normal & above2
        rest = ~normal & ~above2
        alarm2 = rest & (r > 0)
        low = rest & (r <= 0)
        off = low & (r <= -self.overdraft_limit[idx])
        enabled = self.overdraft_enabled[idx]
        overdraft = low & ~off & enabled
        zero = low & ~off & ~enabled
        return alarm1, alarm2, off, zero, overdraft

    def _record(self, idx: I64, code: EventCode, detail: npt.ArrayLike, when: datetime) -> None:
        """Append one event to each meter of ``idx`` (distinct meters)."""
        if idx.size == 0:
            return
        slot = self.event_count[idx] % MAX_EVENTS
        self.event_code[idx, slot] = int(code)
        self.event_detail[idx, slot] = detail
        self.event_time[idx, slot] = _seconds(when)
        self.event_count[idx] += 1

    def _evaluate(self, idx: I64, now: datetime) -> int:
        """Credit trips of closed meters ``idx`` at ``now`` (:func:`credit.evaluate`).

        ``idx`` may be any superset of the meters that could trip: closed
        meters at or below both alarm levels. Friendly hours and load limit
        do not apply (the fleet's EF01 has neither). Returns the trips.
        """
        _, alarm2, off, zero, _ = self._supply(idx)
        reason = np.zeros(idx.size, dtype=np.int8)
        reason[alarm2 & ~self.alarm2_tripped[idx]] = TripReason.ALARM2
        reason[zero] = TripReason.ZERO
        reason[off] = TripReason.OFF
        trip = reason != 0
        ids = idx[trip]
        if ids.size:
            why = reason[trip]
            self.relay_closed[ids] = False
            self.trip_reason[ids] = why
            self.alarm2_tripped[ids[why == TripReason.ALARM2]] = True
            self._record(ids, EventCode.RELAY_TRIP, why, now)
        return int(ids.size)

    def _escalate(self, idx: I64, off: Bools) -> None:
        """An open relay in "off" is an "off" trip, whatever opened it (docs/meter.md 3)."""
        self.trip_reason[idx[off & ~self.relay_closed[idx]]] = TripReason.OFF

    def _acknowledge(self, idx: I64) -> None:
        """The user card in the meter: alarm 2 is seen, overdraft enabled in zero."""
        _, alarm2, _, zero, _ = self._supply(idx)
        self.alarm2_tripped[idx[alarm2]] = True
        self.overdraft_enabled[idx[zero]] = True

    def _card_inserted(self, idx: I64, now: datetime) -> int:
        """The user card goes into meters ``idx`` at ``now`` (:func:`credit.card_inserted`).

        Escalation to "off", the acknowledgement, then an open relay closes if
        it was opened for alarm 2 or zero (the fleet has no load-limit trips)
        unless the meter is "off": after the acknowledgement only "off" can
        still be due. Returns the relays closed.
        """
        if idx.size == 0:
            return 0
        off = self._supply(idx)[2]
        self._escalate(idx, off)
        self._acknowledge(idx)
        by_card = ~self.relay_closed[idx] & np.isin(
            self.trip_reason[idx], (TripReason.ALARM2, TripReason.ZERO)
        )
        close = idx[by_card & ~off]
        self._close(close, CloseCause.CARD, now)
        return int(close.size)

    def _credit_loaded(self, idx: I64, amount: I64, now: datetime) -> int:
        """Commit purchases ``amount`` into meters ``idx`` (:func:`credit.credit_loaded`).

        Escalation to "off"; remaining above 0 leaves overdraft; above alarm 2
        re-arms the alarm-2 trip; the card's acknowledgement applies to the
        state the purchase lands in (alarm 2 seen, overdraft enabled in
        zero); an open relay (every fleet trip is for credit) closes if
        remaining is now above the close-allow threshold. Returns the relays
        closed.
        """
        if idx.size == 0:
            return 0
        self._escalate(idx, self._supply(idx)[2])
        self.remaining[idx] += amount
        self.cumulative_purchased[idx] += amount
        self.purchase_count[idx] += 1
        self.last_purchase_amount[idx] = amount
        r = self.remaining[idx]
        self.overdraft_enabled[idx[r > 0]] = False
        self.alarm2_tripped[idx[r > self.alarm2[idx]]] = False
        self._acknowledge(idx)
        close = idx[~self.relay_closed[idx] & (r > self.close_allow[idx])]
        self._close(close, CloseCause.CREDIT, now)
        return int(close.size)

    def _close(self, idx: I64, cause: CloseCause, now: datetime) -> None:
        if idx.size:
            self.relay_closed[idx] = True
            self.trip_reason[idx] = 0
            self._record(idx, EventCode.RELAY_CLOSE, int(cause), now)

    def insert_cards(
        self,
        now: datetime,
        meters: npt.ArrayLike | None = None,
        amounts: npt.ArrayLike | None = None,
    ) -> int:
        """User cards go into ``meters`` (all by default) at ``now``; returns the relays closed.

        The meter side of a user-card insertion, vectorised: first
        :func:`cardmeter.credit.card_inserted`, then, where ``amounts`` (minor
        units, one per meter) is above 0, the next purchase is committed as
        :func:`cardmeter.insertion.commit` does (count + 1,
        :func:`cardmeter.credit.credit_loaded`). No hoarding limit (the
        fleet's EF01 has none). ``meters`` must be distinct; ``now`` not
        before the fleet's clock.
        """
        if now < self.clock:
            raise ValueError(f"{now.isoformat()} is before the fleet's clock {self.clock}")
        idx = (
            np.arange(self.n, dtype=np.int64)
            if meters is None
            else np.asarray(meters, dtype=np.int64).reshape(-1)
        )
        if np.unique(idx).size != idx.size:
            raise ValueError("a meter takes one card at a time: meters must be distinct")
        closed = self._card_inserted(idx, now)
        if amounts is None:
            return closed
        amount = np.broadcast_to(np.asarray(amounts, dtype=np.int64), idx.shape)
        if (amount < 0).any():
            raise ValueError("a purchase must not be negative")
        buying = amount > 0
        return closed + self._credit_loaded(idx[buying], amount[buying], now)

    # -- running -------------------------------------------------------------------------

    def run(
        self,
        days: int,
        interval_minutes: int = SLOT_MINUTES,
        progress: Progress | None = None,
        *,
        visit_chance: float = VISIT_CHANCE,
        buy_chance: float = BUY_CHANCE,
        record: bool = False,
    ) -> FleetRun:
        """Advance every meter ``days`` days from :attr:`clock`, interval by interval.

        ``interval_minutes`` must be a multiple of 15 that divides a day.
        ``progress(done, total)`` is called about every 1 % of the intervals
        and at the end. A customer whose meter is at alarm 1 or below or has
        its relay open goes to it at the customer's slot of the day with
        ``visit_chance`` and then loads the usual purchase with
        ``buy_chance`` (else only inserts the card); ``visit_chance=0``: nobody
        touches the meters. ``record`` keeps every interval's measured load
        and every visit for :meth:`consumption` and :meth:`visits` (small
        fleets: 8 bytes per meter and interval).
        """
        if days < 0:
            raise ValueError(f"days must be >= 0, not {days}")
        self._check_interval(interval_minutes)
        for name, chance in (("visit_chance", visit_chance), ("buy_chance", buy_chance)):
            if not 0 <= chance <= 1:
                raise ValueError(f"{name} must be between 0 and 1, not {chance}")
        self._recording = record
        sim = _Simulation(self, interval_minutes, visit_chance, buy_chance)
        total = days * MINUTES_PER_DAY // interval_minutes
        step = max(1, total // 100)
        for done in range(1, total + 1):
            sim.interval()
            if progress is not None and (done % step == 0 or done == total):
                progress(done, total)
        sim.finish()
        return sim.summary(total)

    def advance(self, quantities: npt.ArrayLike, interval_minutes: int = SLOT_MINUTES) -> None:
        """Meter one interval from :attr:`clock` with the given measured quantities.

        The fleet's :func:`cardmeter.metering.advance`: ``quantities`` (one
        non-negative integer per meter, secondary 0.01 units) instead of the
        random load, no customer visits. For replaying recorded readings and
        for tests; :meth:`run` is the fast path for many intervals (this
        rebuilds the run's tables at every call).
        """
        given = np.asarray(quantities)
        if given.dtype.kind not in "iu":
            raise ValueError(f"quantities must be integers (0.01 units), not {given.dtype}")
        q = given.astype(np.int64)  # a copy: the metering overwrites it
        if q.shape != (self.n,):
            raise ValueError(f"give one quantity per meter: shape ({self.n},), not {q.shape}")
        if (q < 0).any():
            raise ValueError("quantities must not be negative")
        self._check_interval(interval_minutes)
        sim = _Simulation(self, interval_minutes, 0.0, 0.0)
        sim.meter(q)
        sim.finish()

    def _check_interval(self, interval_minutes: int) -> None:
        if interval_minutes % SLOT_MINUTES or MINUTES_PER_DAY % interval_minutes:
            raise ValueError(
                f"interval_minutes must be a multiple of {SLOT_MINUTES} dividing a day, "
                f"not {interval_minutes}"
            )
        if (self.clock.hour * 60 + self.clock.minute) % interval_minutes:
            raise ValueError(f"the clock {self.clock} is not on a {interval_minutes}-minute step")

    # -- recorded runs -------------------------------------------------------------------

    def consumption(self, i: int) -> list[tuple[datetime, int]]:
        """Meter ``i``'s recorded intervals: (start, measured quantity offered).

        The quantity is the secondary quantity the load drew before the relay
        was considered, as :func:`cardmeter.metering.advance` takes it (an
        open relay consumes none of it). Only intervals of runs with
        ``record=True``.
        """
        return [
            (start, int(load[i]))
            for start, load in zip(self._recorded_starts, self._recorded_load, strict=True)
        ]

    def visits(self, i: int) -> list[CardVisit]:
        """Meter ``i``'s recorded card insertions, oldest first (runs with ``record=True``).

        Each happened at the start of an interval, before it was metered:
        :func:`cardmeter.credit.card_inserted` then, with an amount,
        :func:`cardmeter.insertion.commit` of the next purchase count.
        """
        out = []
        for when, idx, amounts in self._recorded_visits:
            hit = np.flatnonzero(idx == i)
            if hit.size:
                out.append(CardVisit(when, int(amounts[hit[0]])))
        return out

    # -- write-backs ---------------------------------------------------------------------

    def status(self) -> npt.NDArray[np.uint8]:
        """Each meter's status bits as :func:`cardmeter.insertion.meter_status` sets them."""
        idx = np.arange(self.n, dtype=np.int64)
        alarm1, alarm2, _, _, _ = self._supply(idx)
        bits = np.zeros(self.n, dtype=np.uint8)
        bits[~self.relay_closed] |= np.uint8(MeterStatus.RELAY_OPEN)
        bits[alarm1] |= np.uint8(MeterStatus.ALARM1)
        bits[alarm2] |= np.uint8(MeterStatus.ALARM2)
        bits[self.remaining < 0] |= np.uint8(MeterStatus.OVERDRAFT)
        return bits

    def report(self, i: int, written_at: datetime, status: int) -> tuple[WriteBack, History]:
        """Meter ``i``'s write-back and history, unMAC'd (:func:`cardmeter.insertion.report`)."""
        now = written_at.astimezone(UTC).replace(microsecond=0)
        remaining = int(self.remaining[i])
        bits = MeterStatus(status)
        write_back = WriteBack(
            user_type=UserType(int(self.user_type[i])),
            ct_ratio=int(self.ct_ratio[i]),
            pt_ratio=int(self.pt_ratio[i]),
            meter_no=self.meter_no[i],
            customer_no=self.customer_no[i],
            remaining_amount=max(0, remaining),
            purchase_count=int(self.purchase_count[i]),
            overdraft_used=max(0, -remaining),
            illegal_card_count=0,
            meter_status=bits,
            insertion_result=InsertionResult.NOTHING_TO_LOAD,
            written_at=now,
        )
        history = History(
            cumulative_purchased=int(self.cumulative_purchased[i]),
            cumulative_used=int(self.cumulative_used[i]),
            cumulative_quantity=int(self.cumulative_quantity[i]),
            status=bits,
            latest_frozen_month=self.frozen_month,
            monthly_usages=tuple(int(q) for q in self.frozen[i]),
            events=tuple(reversed(self.events(i))),
        )
        return write_back, history

    def write_backs(self, keys: CardKeys, written_at: datetime) -> Iterator[WriteBackRecord]:
        """Each customer inserts the user card at ``written_at``; yield what the meter writes.

        This is a user-card insertion that loads nothing (the card's count is
        the meter's: :attr:`InsertionResult.NOTHING_TO_LOAD`), so it first acts
        on supply as the meter model does (:meth:`insert_cards`: an alarm-2
        trip is acknowledged, overdraft enabled at zero, the relay closed if
        it may be). That happens at once, for the whole fleet, when this
        method is called; the records (:meth:`records`) are then made lazily,
        meter by meter.
        """
        written_at = written_at.astimezone(UTC)
        self.insert_cards(written_at)
        return self.records(keys, written_at)

    def records(
        self, keys: CardKeys, written_at: datetime, meters: range | None = None
    ) -> Iterator[WriteBackRecord]:
        """The MAC'd write-back and history of each meter of ``meters`` (all by default).

        What :func:`cardlayout.card.operations.write_meter_write_back` puts on
        the card, from the registers as they stand: the history MAC, then the
        write-back MAC, both with ``keys.writeback_key(meter_no)`` (one CMAC
        in the key store per meter) over the meter number, customer number
        and card serial. :meth:`write_backs` is the insertion and then this;
        call this alone to make the records of a slice of the fleet (one
        worker process per slice) after the insertion.
        """
        when = written_at.astimezone(UTC)
        span = range(self.n) if meters is None else meters
        status = self.status()
        for i in span:
            write_back, history = self.report(i, when, int(status[i]))
            serial = self.serial(i)
            key = keys.writeback_key(write_back.meter_no)
            sealed, sealed_history = seal_meter_report(key, serial, write_back, history)
            assert sealed_history is not None
            yield WriteBackRecord(
                meter_no=write_back.meter_no,
                customer_no=write_back.customer_no,
                card_serial=serial,
                write_back=WRITE_BACK.encode(sealed),
                history=HISTORY.encode(sealed_history),
            )


class _Simulation:
    """The state of one :meth:`Fleet.run`: scratch arrays and tables made once.

    Everything per interval is an array operation over the fleet or over a
    small index set (meters at risk of tripping, meters on tiers, the
    customers whose visiting slot it is).
    """

    def __init__(self, fleet: Fleet, minutes: int, visit_chance: float, buy_chance: float) -> None:
        f = self.fleet = fleet
        n = f.n
        self.minutes = minutes
        self.step = timedelta(minutes=minutes)
        self.visit_chance = np.float32(visit_chance)
        self.buy_chance = np.float32(buy_chance)
        self.rng = f._rng
        # rate price of each slot for each meter (0 for stepped-only, rate 1 for single rate)
        rows = np.arange(n)[:, None]
        slot_price = f.rate_prices[rows, f.slot_rate.astype(np.int64)]
        slot_price[f.user_type == UserType.SINGLE_RATE] = f.rate_prices[
            f.user_type == UserType.SINGLE_RATE, :1
        ]
        slot_price[f.user_type == UserType.STEPPED] = 0
        self.slot_price: I64 = np.ascontiguousarray(slot_price.T)  # (96, n)
        # the rate register each slot counts in, for TOU meters; rate 1 for the others
        kind = f.user_type
        self.tou: I64 = np.flatnonzero((kind == UserType.TOU) | (kind == UserType.TOU_STEPPED))
        self.slot_quantity: I64 = np.zeros((SLOTS, self.tou.size), dtype=np.int64)
        self.quantity_before: I64 = f.cumulative_quantity.copy()
        self.used_before = int(f.cumulative_used.sum())
        # tiers: the split at thresholds, for stepped meters only
        self.tiered: I64 = np.flatnonzero(
            (kind == UserType.STEPPED) | (kind == UserType.TOU_STEPPED)
        )
        self.p0, self.th, self.dp = _tier_table(
            f.tier_thresholds[self.tiered], f.tier_prices[self.tiered], f.tier_count[self.tiered]
        )
        # settlement instants -> meters
        self.settle_yearly: dict[int, I64] = {}
        self.settle_monthly: dict[int, I64] = {}
        for key in np.unique(f.settlement[f.settlement != _NO_SETTLEMENT]):
            meters = np.flatnonzero((f.settlement == key).any(axis=1))
            table = self.settle_yearly if key >= 10_000 else self.settle_monthly
            table[int(key)] = meters
        self.ctpt: I64 = f.ct_ratio * f.pt_ratio
        self.transformed: I64 = np.flatnonzero(self.ctpt != 1)
        self.trip_level: I64 = np.minimum(f.alarm1, f.alarm2)
        # visits: meters grouped by their slot of the day
        order = np.argsort(f.visit_slot, kind="stable")
        bounds = np.searchsorted(f.visit_slot[order], np.arange(SLOTS + 1))
        self.visitors = [order[bounds[s] : bounds[s + 1]] for s in range(SLOTS)]
        self.visit_draw: F32 = np.zeros(n, dtype=np.float32)
        self.buy_draw: F32 = np.zeros(n, dtype=np.float32)
        # load: per-day scale of each class (secondary 0.01 units per interval at shape 1)
        per_interval = minutes / 60 * QUANTITY_PER_KWH
        self.base = (f.mean_kw.astype(np.float64) * per_interval / self.ctpt).astype(np.float32)
        self.commercial = f.load_class.astype(bool)
        self.day_res: F32 = np.zeros(n, dtype=np.float32)
        self.day_com: F32 = np.zeros(n, dtype=np.float32)
        self.day: date | None = None
        # scratch
        self.load: F32 = np.empty(n, dtype=np.float32)
        self.tmp: F32 = np.empty(n, dtype=np.float32)
        self.q: I64 = np.empty(n, dtype=np.int64)
        self.amount: I64 = np.empty(n, dtype=np.int64)
        self.charge: I64 = np.empty(n, dtype=np.int64)
        self.low: Bools = np.empty(n, dtype=np.bool_)
        # totals
        self.quantity = self.charged = self.purchases_made = self.purchased = 0
        self.trips = self.closes = 0

    def _new_day(self, today: date) -> None:
        f = self.fleet
        self.day = today
        factor = np.exp(
            _DAY_SIGMA * self.rng.standard_normal(f.n, dtype=np.float32) - _DAY_SIGMA**2 / 2
        )
        scale = self.base * factor
        self.day_res[:] = np.where(self.commercial, 0, scale)
        self.day_com[:] = np.where(self.commercial, scale, 0)
        self.rng.random(dtype=np.float32, out=self.visit_draw)
        self.rng.random(dtype=np.float32, out=self.buy_draw)

    def _visit(self, t: datetime, slot: int) -> None:
        """Customers whose slot starts this interval go to their meter (step 1)."""
        f = self.fleet
        span = self.minutes // SLOT_MINUTES
        groups = [self.visitors[s] for s in range(slot, slot + span)]
        idx = groups[0] if span == 1 else np.concatenate(groups)
        if idx.size == 0:
            return
        need = (f.remaining[idx] <= f.alarm1[idx]) | ~f.relay_closed[idx]
        idx = idx[need & (self.visit_draw[idx] < self.visit_chance)]
        if idx.size == 0:
            return
        amounts = np.where(self.buy_draw[idx] < self.buy_chance, f.top_up[idx], 0)
        self.closes += f.insert_cards(t, idx, amounts)
        self.purchases_made += int(np.count_nonzero(amounts))
        self.purchased += int(amounts.sum())
        if f._recording:
            f._recorded_visits.append((t, idx.copy(), amounts))

    def _settle_and_freeze(self, t: datetime) -> None:
        """Settlement resets in (settled_through, t], then the month freeze (step 2)."""
        f = self.fleet
        for hour in _hours_in(f.settled_through, t):
            for table, key in (
                (self.settle_yearly, hour.month * 10_000 + hour.day * 100 + hour.hour),
                (self.settle_monthly, hour.day * 100 + hour.hour),
            ):
                meters = table.get(key)
                if meters is not None:
                    f.settlement_quantity[meters] = 0
        f.settled_through = t
        month = month_of(t)
        if month != f.current_month:
            gap = (month.year - f.current_month.year) * 12 + month.month - f.current_month.month
            if gap > 0:
                pushed = min(gap, MONTHS)
                f.frozen[:, pushed:] = f.frozen[:, : MONTHS - pushed].copy()
                f.frozen[:, :pushed] = 0
                f.frozen[:, gap - 1] = f.month_quantity if gap <= MONTHS else 0
                f.month_quantity[:] = 0
                f.frozen_month = add_months(month, -1)
                f.current_month = month

    def interval(self) -> None:
        """One interval for the whole fleet, steps 1 to 4 of the module docstring."""
        f = self.fleet
        t = f.clock
        if t.date() != self.day:
            self._new_day(t.date())
        slot = (t.hour * 60 + t.minute) // SLOT_MINUTES
        if self.visit_chance > 0:
            self._visit(t, slot)
        q = self._load(t, slot)
        if f._recording:
            f._recorded_starts.append(t)
            f._recorded_load.append(q.copy())
        self.meter(q)

    def _load(self, t: datetime, slot: int) -> I64:
        """Measured quantity of each meter for the interval at ``t``: integer 0.01 units.

        The customer's class shape for the slot x the customer's scale for
        the day x a random noise level; drawn in ``float32``, made integer by
        ``np.rint`` before anything is counted.
        """
        weekend = int(t.weekday() >= 5)
        res_shape, com_shape = _SHAPES[weekend, slot]
        load, q = self.load, self.q
        np.multiply(self.day_res, res_shape, out=load)
        np.multiply(self.day_com, com_shape, out=self.tmp)
        load += self.tmp
        load *= _NOISE[self.rng.integers(0, _NOISE_LEVELS, self.fleet.n, dtype=np.uint8)]
        np.rint(load, out=load)
        np.copyto(q, load, casting="unsafe")
        return q

    def meter(self, q: I64) -> None:
        """Steps 2 to 4 for the interval at the fleet's clock, measured quantities ``q``.

        ``q`` is overwritten (it becomes the primary quantity consumed).
        """
        f = self.fleet
        t = f.clock
        slot = (t.hour * 60 + t.minute) // SLOT_MINUTES
        self._settle_and_freeze(t)

        # metering (step 3): an open relay consumes nothing; primary = measured x CT x PT
        np.multiply(q, f.relay_closed, out=q)
        if self.transformed.size:
            q[self.transformed] *= self.ctpt[self.transformed]
        amount = self.amount
        np.multiply(q, self.slot_price[slot], out=amount)
        if self.tiered.size:
            before = f.settlement_quantity[self.tiered]
            amount[self.tiered] += _tier_cost(before, q[self.tiered], self.p0, self.th, self.dp)
        if self.tou.size:
            self.slot_quantity[slot] += q[self.tou]
        residue, charge = f.residue, self.charge
        residue += amount
        np.floor_divide(residue, RESIDUE_SCALE, out=charge)
        np.multiply(charge, RESIDUE_SCALE, out=amount)
        residue -= amount
        f.remaining -= charge
        f.cumulative_used += charge
        f.cumulative_quantity += q
        f.settlement_quantity += q
        f.month_quantity += q

        # supply (step 4), at the end of the interval
        end = t + self.step
        np.less_equal(f.remaining, self.trip_level, out=self.low)
        self.low &= f.relay_closed
        at_risk = np.flatnonzero(self.low)
        if at_risk.size:
            self.trips += f._evaluate(at_risk, end)
        f.clock = end

    def finish(self) -> None:
        """Fold the run's quantities per rate into ``quantity_by_rate`` (rate 1 for non-TOU)."""
        f = self.fleet
        by_rate = f.cumulative_quantity - self.quantity_before
        self.quantity = int(by_rate.sum())
        self.charged = int(f.cumulative_used.sum()) - self.used_before
        if self.tou.size:
            by_rate[self.tou] = 0
            rates = f.slot_rate[self.tou].astype(np.int64)  # (m, 96)
            for slot in range(SLOTS):
                np.add.at(f.quantity_by_rate, (self.tou, rates[:, slot]), self.slot_quantity[slot])
        f.quantity_by_rate[:, 0] += by_rate

    def summary(self, intervals: int) -> FleetRun:
        return FleetRun(
            intervals=intervals,
            meters=self.fleet.n,
            quantity=self.quantity,
            charged=self.charged,
            purchases=self.purchases_made,
            purchased=self.purchased,
            trips=self.trips,
            closes=self.closes,
        )
