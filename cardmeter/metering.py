"""The metering engine: one interval at a time (docs/meter.md 2 to 4).

:func:`advance` is the only place where quantity is counted and credit is
consumed, so that the registers stay consistent with each other
(``cumulative_purchased - cumulative_used`` is always ``remaining`` less
what was there before, energy registers only grow). The order of the steps
within an interval is part of the contract (docs/meter.md 2.1) because the
numpy fleet (:mod:`cardmeter.fleet`) must reproduce it bill for bill.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cardlayout.files import Event
from cardmeter import credit
from cardmeter.clock import (
    add_months,
    latest_settlement,
    month_of,
    months_between,
    require_aware,
    to_local,
)
from cardmeter.pricing import charge, price_parts, tariff_of
from cardmeter.registers import MONTHS, MeterState

__all__ = [
    "INTERVAL_MINUTES",
    "MeteringError",
    "RunSummary",
    "advance",
    "run",
]

INTERVAL_MINUTES = 15


class MeteringError(ValueError):
    """The meter cannot meter: it has no parameters or no tariff (not opened)."""


@dataclass(frozen=True)
class RunSummary:
    """What :func:`run` did.

    ``quantity`` is the primary quantity consumed (0.01 units), ``unserved``
    the measured quantity offered while the relay was open (not consumed,
    not charged), ``charged`` the minor units deducted; ``remaining`` and
    ``relay_closed`` are the registers at the end; ``events`` the events
    recorded during the run, oldest first.
    """

    intervals: int
    quantity: int
    unserved: int
    charged: int
    remaining: int
    relay_closed: bool
    events: tuple[Event, ...] = field(default_factory=tuple)


def _switch_tariff(state: MeterState, start: datetime) -> None:
    """Make the backup set current once its switch time has come.

    The backup's own switch time wins; without one, EF01's tariff switch time
    applies; with neither the backup waits. After the switch the meter has
    no backup any more.
    """
    if not state.backup_tariff_frame:
        return
    when = tariff_of(state.backup_tariff_frame).switch_time
    params = credit.parameters_of(state)
    if when is None and params is not None:
        when = params.tariff_switch_time
    if when is not None and when <= start:
        state.current_tariff_frame = state.backup_tariff_frame
        state.backup_tariff_frame = None


def _settle(state: MeterState, start: datetime) -> None:
    """Reset the tier accumulator if a settlement instant has come (docs/meter.md 2).

    The latest settlement instant S <= start of the current set resets it if S
    is later than ``last_settlement``. A meter that has never settled
    (``last_settlement`` None) only remembers S: it has nothing to reset that
    it did not count since S.
    """
    if not state.current_tariff_frame:
        return
    latest = latest_settlement(tariff_of(state.current_tariff_frame), state.timezone, start)
    if latest is None:
        return
    if state.last_settlement is None:
        state.last_settlement = latest
    elif latest > state.last_settlement:
        state.settlement_quantity = 0
        state.last_settlement = latest


def _freeze(state: MeterState, local_start: datetime) -> None:
    """Freeze the month(s) that ended before this interval (docs/meter.md 4).

    The month's quantity goes first in ``frozen`` (newest first, 12 kept);
    months the meter skipped (no interval in them) are frozen as 0 so that
    ``frozen[i]`` is always the month ``frozen_month - i``. A clock that goes
    back to an earlier month freezes nothing.
    """
    month = month_of(local_start)
    if state.current_month is None:
        state.current_month = month
        return
    gap = months_between(state.current_month, month)
    if gap <= 0:
        return
    pushed = [state.month_quantity] + [0] * (gap - 1)
    state.frozen = (list(reversed(pushed)) + state.frozen)[:MONTHS]
    state.frozen_month = add_months(month, -1)
    state.current_month = month
    state.month_quantity = 0


def advance(
    state: MeterState, start: datetime, quantity: int, minutes: int = INTERVAL_MINUTES
) -> None:
    """Meter one interval of ``minutes`` from ``start``: ``quantity`` measured (0.01 units).

    Steps, in this order (docs/meter.md 2.1): tariff switch, settlement reset,
    month freeze (all at ``start``); then, if the relay is closed, the primary
    quantity ``quantity * CT * PT`` is counted (cumulative, by rate, since
    settlement, this month) and charged; then the supply is evaluated at
    ``start + minutes`` with the interval's average power; finally the clock
    is set to ``start + minutes``. With the relay open nothing is counted or
    charged and the load limit is not examined.
    """
    require_aware(start, "interval start")
    if isinstance(quantity, bool) or not isinstance(quantity, numbers.Integral) or quantity < 0:
        raise ValueError(f"quantity must be a non-negative integer, not {quantity!r}")
    quantity = int(quantity)  # a numpy integer too, never a float
    if minutes <= 0:
        raise ValueError(f"minutes must be positive, not {minutes}")
    params = credit.parameters_of(state)
    if params is None:
        raise MeteringError("the meter has no parameters: insert the opening card first")
    start = start.astimezone(UTC)
    _switch_tariff(state, start)
    if not state.current_tariff_frame:
        raise MeteringError("the meter has no current tariff set: insert the opening card first")
    tariff = tariff_of(state.current_tariff_frame)
    _settle(state, start)
    local_start = to_local(state.timezone, start)
    _freeze(state, local_start)

    end = start + timedelta(minutes=minutes)
    power: int | None = None
    if state.relay_closed:
        primary = quantity * params.ct_ratio * params.pt_ratio
        parts = price_parts(
            params.user_type, tariff, local_start, state.settlement_quantity, primary
        )
        for part in parts:
            state.quantity_by_rate[part.rate - 1] += part.quantity
        state.cumulative_quantity += primary
        state.settlement_quantity += primary
        state.month_quantity += primary
        charge(state, parts)
        power = credit.average_power_w(primary, minutes)
    credit.evaluate(state, end, power)
    state.clock = end


def _events_since(events: list[Event], marker: Event | None, count_before: int) -> list[Event]:
    """The events appended after ``marker`` (the last event before), despite log trimming."""
    if marker is None:
        return list(events[count_before:])
    for index in range(len(events) - 1, -1, -1):
        if events[index] is marker:
            return list(events[index + 1 :])
    return list(events)  # more than the log holds were added: all of it is new


def run(
    state: MeterState,
    intervals: Iterable[tuple[datetime, int]],
    minutes: int = INTERVAL_MINUTES,
) -> RunSummary:
    """Meter ``intervals`` (start, measured quantity) in order with :func:`advance`."""
    count = consumed = unserved = charged = 0
    added: list[Event] = []
    for start, quantity in intervals:
        marker = state.events[-1] if state.events else None
        count_before = len(state.events)
        quantity_before, used_before = state.cumulative_quantity, state.cumulative_used
        closed = state.relay_closed
        advance(state, start, quantity, minutes)
        count += 1
        consumed += state.cumulative_quantity - quantity_before
        charged += state.cumulative_used - used_before
        if not closed:
            unserved += quantity
        added += _events_since(state.events, marker, count_before)
    return RunSummary(
        intervals=count,
        quantity=consumed,
        unserved=unserved,
        charged=charged,
        remaining=state.remaining,
        relay_closed=state.relay_closed,
        events=tuple(added),
    )
