"""Credit and supply: the relay state machine of docs/meter.md 3.

The supply state is a pure function of the registers (:func:`supply_state`);
what the relay does about it is decided at three moments only:

- :func:`evaluate`, at the end of every metered interval (called by
  :func:`cardmeter.metering.advance`): load-limit and credit trips, friendly
  holds;
- :func:`card_inserted`, when the customer's user card is
  inserted: the card acknowledges an alarm-2 trip, enables overdraft at zero
  and clears a load-limit trip;
- :func:`credit_loaded`, when a purchase is committed: the only way out of
  "off", and only above the close-allow threshold.

``state.trip_reason`` says why the relay is open (one of :data:`TRIP_REASONS`)
and so which of these can close it again. Event details are the
:class:`TripReason` / :class:`CloseCause` numbers (one byte on the card).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Final, Literal

from cardlayout.files import NO_FRIENDLY_DAYS, PARAMETERS, EventCode, Parameters
from cardmeter.clock import in_friendly_window, to_local
from cardmeter.registers import MeterState

__all__ = [
    "ALARM1",
    "ALARM2",
    "NORMAL",
    "OFF",
    "OVERDRAFT",
    "TRIP_REASONS",
    "ZERO",
    "CloseCause",
    "Limits",
    "SupplyState",
    "TripReason",
    "average_power_w",
    "card_inserted",
    "credit_loaded",
    "evaluate",
    "limits",
    "parameters_of",
    "supply_state",
]

SupplyState = Literal["normal", "alarm1", "alarm2", "zero", "overdraft", "off"]
NORMAL: Final = "normal"
ALARM1: Final = "alarm1"
ALARM2: Final = "alarm2"
ZERO: Final = "zero"
OVERDRAFT: Final = "overdraft"
OFF: Final = "off"

WH_PER_QUANTITY = 10
"""One quantity step, 0.01 kWh, is 10 Wh."""
MINUTES_PER_HOUR = 60


class TripReason(enum.IntEnum):
    """Why the relay opened: the detail of RELAY_TRIP and FRIENDLY_HOURS_HOLD events.

    The lower-case name is what ``MeterState.trip_reason`` holds.
    """

    ALARM2 = 1
    ZERO = 2
    OFF = 3
    LOAD_LIMIT = 4

    @property
    def register(self) -> str:
        """The value kept in ``MeterState.trip_reason``."""
        return self.name.lower()


class CloseCause(enum.IntEnum):
    """What closed the relay: the detail of RELAY_CLOSE events."""

    CARD = 1
    """The user card was inserted (alarm-2 trip acknowledged, overdraft enabled, load limit)."""
    CREDIT = 2
    """A purchase brought remaining above the close-allow threshold."""


TRIP_REASONS: Final = frozenset(r.register for r in TripReason)
_CREDIT_REASONS: Final = frozenset({"alarm2", "zero", "off"})
_CARD_CLOSES: Final = frozenset({"alarm2", "zero", "load_limit"})


@dataclass(frozen=True)
class Limits:
    """The credit parameters of EF01 the state machine needs.

    A meter without parameters (never opened) uses all zeros and no limits,
    so that :func:`supply_state` still answers (normal above 0, off at or
    below 0).
    """

    alarm1: int = 0
    alarm2: int = 0
    overdraft_limit: int = 0
    close_allow_threshold: int = 0
    load_limit: int | None = None
    params: Parameters | None = None


@lru_cache(maxsize=256)
def _decode_parameters(frame: bytes) -> Parameters:
    return PARAMETERS.decode(frame)


def parameters_of(state: MeterState) -> Parameters | None:
    """:attr:`MeterState.parameters`, decoded once per frame (cached).

    The engine reads EF01 at every interval; frames are immutable bytes and
    :class:`Parameters` is frozen, so sharing the decoded value is safe.
    """
    frame = state.parameters_frame
    return _decode_parameters(frame) if frame else None


def limits(state: MeterState) -> Limits:
    """The credit limits in force (from the meter's EF01 parameters)."""
    p = parameters_of(state)
    if p is None:
        return Limits()
    return Limits(
        alarm1=p.alarm1,
        alarm2=p.alarm2,
        overdraft_limit=p.overdraft_limit,
        close_allow_threshold=p.close_allow_threshold,
        load_limit=p.load_limit,
        params=p,
    )


def _state_for(state: MeterState, lim: Limits) -> SupplyState:
    r = state.remaining
    if r > lim.alarm1:
        return NORMAL
    if r > lim.alarm2:
        return ALARM1
    if r > 0:
        return ALARM2
    if r <= -lim.overdraft_limit:
        return OFF
    return OVERDRAFT if state.overdraft_enabled else ZERO


def supply_state(state: MeterState) -> SupplyState:
    """The credit state of docs/meter.md 3, from ``remaining`` alone (and overdraft mode).

    Tested in this order, the first that holds wins: normal (remaining >
    alarm1), alarm1 (> alarm2), alarm2 (> 0), off (<= -overdraft_limit),
    then overdraft if enabled, else zero. So with an overdraft limit of 0 a
    remaining of 0 is "off", not "zero": there is no overdraft to enable.
    The relay is a separate register: e.g. "normal" with the relay open after
    a load-limit trip.
    """
    return _state_for(state, limits(state))


def average_power_w(quantity: int, minutes: int) -> int:
    """Average power in whole watts of ``quantity`` (0.01 kWh) over ``minutes``, rounded UP.

    ``quantity * 10 Wh / (minutes / 60 h) = quantity * 600 / minutes`` W. It is
    rounded up so that comparing it with the integer load limit is exact:
    ``ceil(x) > L`` if and only if ``x > L`` for an integer ``L``. For a 15-minute
    interval that is ``40 * quantity`` W exactly.
    """
    if minutes <= 0:
        raise ValueError(f"minutes must be positive, not {minutes}")
    return -(-quantity * WH_PER_QUANTITY * MINUTES_PER_HOUR // minutes)


def _credit_trip_due(state: MeterState, lim: Limits) -> TripReason | None:
    """The credit trip the current state calls for, if the relay is closed."""
    supply = _state_for(state, lim)
    if supply == OFF:
        return TripReason.OFF
    if supply == ZERO:
        return TripReason.ZERO
    if supply == ALARM2 and not state.alarm2_tripped:
        return TripReason.ALARM2
    return None


def _trip(state: MeterState, reason: TripReason, now: datetime) -> None:
    state.relay_closed = False
    state.trip_reason = reason.register
    state.friendly_hold = False
    if reason is TripReason.ALARM2:
        state.alarm2_tripped = True
    state.record(EventCode.RELAY_TRIP, now, int(reason))


def _close(state: MeterState, cause: CloseCause, now: datetime) -> None:
    state.relay_closed = True
    state.trip_reason = None
    state.friendly_hold = False
    state.record(EventCode.RELAY_CLOSE, now, int(cause))


def _rearm(state: MeterState, lim: Limits) -> None:
    """Forget an alarm-2 trip once remaining is back above alarm 2."""
    if state.remaining > lim.alarm2:
        state.alarm2_tripped = False


def evaluate(state: MeterState, now: datetime, average_power_w: int | None = None) -> None:
    """Decide the relay at instant ``now`` (the end of an interval; docs/meter.md 3).

    In order, and only while the relay is closed:

    1. load limit: ``average_power_w`` (of the interval just metered; None if
       nothing was metered) above EF01's load limit trips at once (events
       LOAD_LIMIT then RELAY_TRIP detail 4); never held;
    2. credit: "off" and "zero" trip whenever found, "alarm2" trips once
       (until remaining rises above alarm 2 again);
    3. friendly hours: a credit trip due while ``now`` (local) is in the
       friendly window is held instead: the relay stays closed and one
       FRIENDLY_HOURS_HOLD event (detail = the reason then due) is recorded
       when the hold begins. The hold is re-examined at every evaluation, so
       the trip (with the reason due by then) happens at the first
       evaluation outside the window, before the next interval is metered.
    """
    lim = limits(state)
    _rearm(state, lim)
    if not state.relay_closed:
        return
    limit = lim.load_limit
    if limit is not None and average_power_w is not None and average_power_w > limit:
        state.record(EventCode.LOAD_LIMIT, now, 0)
        _trip(state, TripReason.LOAD_LIMIT, now)
        return
    reason = _credit_trip_due(state, lim)
    if reason is None:
        state.friendly_hold = False
        return
    if _friendly(state, lim, now):
        if not state.friendly_hold:
            state.friendly_hold = True
            state.record(EventCode.FRIENDLY_HOURS_HOLD, now, int(reason))
        return
    _trip(state, reason, now)


def _friendly(state: MeterState, lim: Limits, now: datetime) -> bool:
    p = lim.params
    if p is None or (not p.has_friendly_hours and p.friendly_days == NO_FRIENDLY_DAYS):
        return False
    return in_friendly_window(p, to_local(state.timezone, now), state.holidays)


def _escalate(state: MeterState, lim: Limits) -> None:
    """An open relay in "off" is an "off" trip, whatever opened it.

    E.g. a load-limit trip during a friendly hold in "off": the card must not
    close it, only a purchase above close-allow (docs/meter.md 3).
    """
    if not state.relay_closed and _state_for(state, lim) == OFF:
        state.trip_reason = TripReason.OFF.register


def _acknowledge(state: MeterState, lim: Limits) -> None:
    """What the user card in the meter does to the credit state it finds.

    In alarm 2 the customer has seen the alarm (no alarm-2 trip follows); in
    zero the card enables overdraft.
    """
    supply = _state_for(state, lim)
    if supply == ALARM2:
        state.alarm2_tripped = True
    elif supply == ZERO:
        state.overdraft_enabled = True


def card_inserted(state: MeterState, now: datetime) -> None:
    """What inserting the user card does to supply (docs/meter.md 3).

    - in "alarm2" the card acknowledges the alarm: no alarm-2 trip follows;
    - in "zero" it enables overdraft (the state becomes "overdraft");
    - an open relay then closes (RELAY_CLOSE detail 1) if it was opened for
      alarm 2, zero or the load limit, unless the credit state still calls for
      a trip: "off" stays open (a load-limit trip found in "off" becomes an
      "off" trip), and only :func:`credit_loaded` can close an "off" trip.

    A friendly hold that is no longer needed ends.
    """
    lim = limits(state)
    _escalate(state, lim)
    _acknowledge(state, lim)
    due = _credit_trip_due(state, lim)
    if state.relay_closed:
        if due is None:
            state.friendly_hold = False
        return
    if state.trip_reason is not None and state.trip_reason not in _CARD_CLOSES:
        return
    if due is not None:  # only "off" can still be due here, and it is an "off" trip now
        return
    _close(state, CloseCause.CARD, now)


def credit_loaded(state: MeterState, amount: int, now: datetime) -> None:
    """Commit a purchase of ``amount`` minor units (docs/meter.md 3).

    ``remaining`` and ``cumulative_purchased`` grow by ``amount``. Remaining
    above 0 leaves overdraft mode. A purchase is only ever loaded from the
    user card, so the card's acknowledgements apply to the state it lands in
    (alarm 2 seen, overdraft enabled in zero): card insertion and purchase
    then give the same registers in either order. An open relay
    closes (RELAY_CLOSE detail 2) only if it was opened for credit (alarm 2,
    zero, off) and remaining is now above the close-allow threshold; a
    load-limit trip waits for the card.
    """
    if amount < 0:
        raise ValueError(f"a purchase must not be negative, not {amount}")
    lim = limits(state)
    _escalate(state, lim)
    state.remaining += amount
    state.cumulative_purchased += amount
    if state.remaining > 0:
        state.overdraft_enabled = False
    _rearm(state, lim)
    _acknowledge(state, lim)
    if state.relay_closed:
        if _credit_trip_due(state, lim) is None:
            state.friendly_hold = False
        return
    reason = state.trip_reason
    if (reason is None or reason in _CREDIT_REASONS) and (
        state.remaining > lim.close_allow_threshold
    ):
        _close(state, CloseCause.CREDIT, now)
