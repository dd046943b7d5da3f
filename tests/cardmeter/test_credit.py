"""The credit state machine (docs/meter.md 3): every transition of the table, in order.

The meters here bill a single rate of 1.0000 per kWh, so 0.01 kWh costs
exactly one minor unit and every ``remaining`` below is the previous one less
the quantity metered: the arithmetic is in the test names' numbers.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from cardlayout.files import (
    PARAMETERS,
    TARIFF_SET_1,
    CardType,
    EventCode,
    FriendlyDays,
    Parameters,
    TariffSet,
    UserType,
)
from cardmeter import credit
from cardmeter.credit import CloseCause, TripReason, average_power_w, supply_state
from cardmeter.metering import advance
from cardmeter.registers import MeterState

ONE_PER_UNIT = TariffSet(rate_prices=(10_000,))  # 1.0000 per kWh: 0.01 kWh = 1 minor unit
MONDAY = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
INTERVAL = timedelta(minutes=15)


def make_meter(remaining: int, timezone: str = "UTC", **limits: object) -> MeterState:
    """A meter at ``remaining`` with the credit parameters ``limits`` (EF01 fields)."""
    params = Parameters(
        user_type=UserType.SINGLE_RATE,
        card_type=CardType.PURCHASE,
        meter_no="000012345678",
        customer_no="310101000042",
        **limits,  # type: ignore[arg-type]
    )
    return MeterState(
        meter_no="000012345678",
        timezone=timezone,
        clock=MONDAY,
        parameters_frame=PARAMETERS.encode(params),
        current_tariff_frame=TARIFF_SET_1.encode(ONE_PER_UNIT),
        remaining=remaining,
    )


def journey_meter(remaining: int) -> MeterState:
    """Alarm 1 at 20.00, alarm 2 at 5.00, overdraft to 10.00, close-allow 3.00."""
    return make_meter(
        remaining, alarm1=2_000, alarm2=500, overdraft_limit=1_000, close_allow_threshold=300
    )


def step(state: MeterState, quantity: int) -> None:
    """Meter the next 15-minute interval."""
    advance(state, state.clock, quantity)


def codes(state: MeterState) -> list[tuple[EventCode, int]]:
    return [(e.code, e.detail) for e in state.events]


TRIP = EventCode.RELAY_TRIP
CLOSE = EventCode.RELAY_CLOSE
HOLD = EventCode.FRIENDLY_HOURS_HOLD


def test_every_credit_state_in_order() -> None:
    m = journey_meter(2_100)
    step(m, 50)  # 2_100 - 50 = 2_050 > alarm 1
    assert (m.remaining, supply_state(m), m.relay_closed) == (2_050, "normal", True)
    step(m, 100)  # 1_950: alarm 1, relay stays closed, nothing recorded
    assert (m.remaining, supply_state(m), m.relay_closed) == (1_950, "alarm1", True)
    assert m.events == []

    step(m, 1_500)  # 450: alarm 2 entered -> trips once
    assert (m.remaining, supply_state(m), m.relay_closed) == (450, "alarm2", False)
    assert m.trip_reason == "alarm2" and m.alarm2_tripped
    assert codes(m) == [(TRIP, TripReason.ALARM2)]
    assert m.events[-1].time == MONDAY + 3 * INTERVAL  # at the end of the interval

    quantity = m.cumulative_quantity
    step(m, 100)  # relay open: nothing consumed, nothing charged
    assert m.remaining == 450 and m.cumulative_quantity == quantity

    credit.card_inserted(m, m.clock)  # the user card closes an alarm-2 trip
    assert m.relay_closed and m.trip_reason is None
    assert codes(m)[-1] == (CLOSE, CloseCause.CARD)
    step(m, 100)  # 350: still alarm 2, but it trips only once
    assert (m.remaining, m.relay_closed) == (350, True)

    step(m, 400)  # -50: zero (overdraft not enabled) -> trips
    assert (m.remaining, supply_state(m), m.relay_closed) == (-50, "zero", False)
    assert codes(m)[-1] == (TRIP, TripReason.ZERO)

    credit.card_inserted(m, m.clock)  # the card enables overdraft and closes
    assert m.overdraft_enabled and m.relay_closed
    assert supply_state(m) == "overdraft"
    assert codes(m)[-1] == (CLOSE, CloseCause.CARD)
    step(m, 900)  # -950 > -1_000: overdraft, supplied
    assert (m.remaining, supply_state(m), m.relay_closed) == (-950, "overdraft", True)
    assert m.overdraft_used == 950

    step(m, 100)  # -1_050 <= -1_000: off
    assert (m.remaining, supply_state(m), m.relay_closed) == (-1_050, "off", False)
    assert codes(m)[-1] == (TRIP, TripReason.OFF)
    events = len(m.events)
    credit.card_inserted(m, m.clock)  # off stays off
    assert not m.relay_closed and len(m.events) == events

    credit.credit_loaded(m, 1_200, m.clock)  # 150 <= close-allow 300: stays open
    assert (m.remaining, m.relay_closed, m.trip_reason) == (150, False, "off")
    assert not m.overdraft_enabled  # remaining > 0 leaves overdraft mode
    credit.card_inserted(m, m.clock)  # still "off": only a purchase closes it
    assert not m.relay_closed

    credit.credit_loaded(m, 200, m.clock)  # 350 > 300: closes
    assert (m.remaining, m.relay_closed, supply_state(m)) == (350, True, "alarm2")
    assert codes(m)[-1] == (CLOSE, CloseCause.CREDIT)
    step(m, 10)  # 340: a purchase into alarm 2 does not trip again
    assert m.relay_closed

    credit.credit_loaded(m, 5_000, m.clock)  # 5_340: normal, the alarm-2 trip re-armed
    assert (supply_state(m), m.alarm2_tripped) == ("normal", False)
    assert m.cumulative_purchased == 6_400
    assert m.cumulative_used == 2_100 + 6_400 - m.remaining  # money is conserved
    assert codes(m) == [
        (TRIP, TripReason.ALARM2),
        (CLOSE, CloseCause.CARD),
        (TRIP, TripReason.ZERO),
        (CLOSE, CloseCause.CARD),
        (TRIP, TripReason.OFF),
        (CLOSE, CloseCause.CREDIT),
    ]


def test_purchase_from_off_above_close_allow_closes_at_once() -> None:
    m = journey_meter(-1_050)
    m.relay_closed, m.trip_reason = False, "off"
    credit.credit_loaded(m, 2_000, m.clock)  # 950 > 300
    assert m.relay_closed and supply_state(m) == "alarm1"
    assert codes(m) == [(CLOSE, CloseCause.CREDIT)]


def test_purchase_that_leaves_off_below_close_allow_keeps_it_open() -> None:
    m = journey_meter(-1_050)
    m.relay_closed, m.trip_reason = False, "off"
    credit.credit_loaded(m, 1_350, m.clock)  # 300, not above 300
    assert not m.relay_closed and m.events == []


def test_zero_with_a_small_purchase_closes_by_the_card() -> None:
    # close-allow gates the purchase; the card closes a zero trip whatever the credit
    m = journey_meter(-50)
    m.relay_closed, m.trip_reason = False, "zero"
    credit.credit_loaded(m, 100, m.clock)  # 50 <= 300: the purchase does not close
    assert not m.relay_closed
    credit.card_inserted(m, m.clock)
    assert m.relay_closed and not m.overdraft_enabled  # remaining > 0: no overdraft needed


def test_consumption_that_skips_alarm_2_trips_for_zero() -> None:
    m = journey_meter(1_000)
    step(m, 1_100)  # 1_000 -> -100 in one interval
    assert codes(m) == [(TRIP, TripReason.ZERO)]


def test_no_overdraft_limit_means_off_at_zero() -> None:
    m = make_meter(10)
    step(m, 10)  # 0 <= -0: off; the card cannot enable an overdraft of 0
    assert supply_state(m) == "off" and not m.relay_closed
    credit.card_inserted(m, m.clock)
    assert not m.relay_closed and not m.overdraft_enabled


def test_relay_open_means_no_consumption() -> None:
    m = make_meter(1_000, load_limit=1_000)
    m.relay_closed, m.trip_reason = False, "alarm2"
    m.current_month = date(2026, 3, 1)
    before = m.to_json()
    step(m, 10_000)  # 400 kW if it were consumed: still no load-limit event
    after = m.to_json()
    assert after.pop("clock") != before.pop("clock")
    assert after == before


# -- load limit ------------------------------------------------------------------------------


def test_average_power_is_exact() -> None:
    # 0.01 kWh = 10 Wh; over 15 min that is 40 W per unit
    assert average_power_w(150, 15) == 6_000
    # 0.70 kWh in 7 min = 6_000 W exactly; 0.71 kWh = 6_085.7 W, rounded up to 6_086
    assert average_power_w(70, 7) == 6_000
    assert average_power_w(71, 7) == 6_086
    assert average_power_w(0, 15) == 0


def test_load_limit_trip_and_card_close() -> None:
    m = make_meter(100_000, load_limit=6_000)
    step(m, 150)  # 6_000 W: not above the limit
    assert m.relay_closed
    step(m, 151)  # 6_040 W: trips
    assert not m.relay_closed and m.trip_reason == "load_limit"
    assert codes(m) == [(EventCode.LOAD_LIMIT, 0), (TRIP, TripReason.LOAD_LIMIT)]
    assert supply_state(m) == "normal"  # the credit is fine; the relay is not
    credit.credit_loaded(m, 1_000, m.clock)  # a purchase does not clear a load-limit trip
    assert not m.relay_closed
    credit.card_inserted(m, m.clock)
    assert m.relay_closed and codes(m)[-1] == (CLOSE, CloseCause.CARD)


def test_load_limit_with_other_interval_lengths() -> None:
    m = make_meter(100_000, load_limit=6_000)
    advance(m, m.clock, 70, minutes=7)  # 6_000 W
    assert m.relay_closed
    advance(m, m.clock, 71, minutes=7)  # 6_085.7 W
    assert not m.relay_closed


def test_load_limit_trips_are_never_held() -> None:
    saturday = datetime(2026, 3, 7, 10, 0, tzinfo=UTC)
    m = make_meter(
        100_000,
        load_limit=6_000,
        friendly_start_hour=0,
        friendly_end_hour=23,
        friendly_days=FriendlyDays.SATURDAY,
    )
    advance(m, saturday, 200)
    assert not m.relay_closed and m.trip_reason == "load_limit"


def test_card_after_a_load_limit_trip_in_off_does_not_close() -> None:
    # load limit tripped while a friendly hold kept an "off" meter supplied
    m = make_meter(-2_000, overdraft_limit=1_000)
    m.relay_closed, m.trip_reason = False, "load_limit"
    credit.card_inserted(m, m.clock)
    assert not m.relay_closed and m.trip_reason == "off"  # now only a purchase closes it


# -- friendly hours ----------------------------------------------------------------------


def run_until_trip(m: MeterState, quantity: int, limit: int = 1_000) -> datetime:
    """Meter ``quantity`` per interval until the relay opens; return the trip time."""
    for _ in range(limit):
        step(m, quantity)
        if not m.relay_closed:
            return m.events[-1].time
    raise AssertionError("the relay never tripped")


def test_friendly_hold_at_night_then_trip_at_the_window_end() -> None:
    # friendly hours 22..06 Shanghai time (UTC+8); overdraft to 1.00
    m = make_meter(
        10,
        timezone="Asia/Shanghai",
        overdraft_limit=100,
        friendly_start_hour=22,
        friendly_end_hour=6,
    )
    m.clock = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # 23:00 Monday local
    step(m, 20)  # -10: zero, at 23:15 local -> held
    assert m.relay_closed and m.friendly_hold
    assert codes(m) == [(HOLD, TripReason.ZERO)]
    trip = run_until_trip(m, 10)
    # 23:15 .. 06:00 local: 27 more intervals of 0.10 -> -10 - 270 = -280 (off by then)
    assert trip == datetime(2026, 3, 2, 22, 0, tzinfo=UTC)  # 06:00 local, window end
    assert m.remaining == -280
    assert codes(m) == [(HOLD, TripReason.ZERO), (TRIP, TripReason.OFF)]  # one hold event
    assert not m.friendly_hold


def test_friendly_hold_at_the_weekend() -> None:
    m = make_meter(
        600, alarm1=2_000, alarm2=500, friendly_days=FriendlyDays.SATURDAY | FriendlyDays.SUNDAY
    )
    m.clock = datetime(2026, 3, 7, 12, 0, tzinfo=UTC)  # Saturday noon
    step(m, 200)  # 400: alarm 2 entered on a Saturday -> held
    assert m.relay_closed and codes(m) == [(HOLD, TripReason.ALARM2)]
    trip = run_until_trip(m, 0)
    assert trip == datetime(2026, 3, 9, 0, 0, tzinfo=UTC)  # Monday 00:00
    assert codes(m)[-1] == (TRIP, TripReason.ALARM2)


def test_card_in_a_held_alarm_2_acknowledges_it() -> None:
    m = make_meter(600, alarm1=2_000, alarm2=500, friendly_days=FriendlyDays.SATURDAY)
    m.clock = datetime(2026, 3, 7, 12, 0, tzinfo=UTC)  # Saturday noon
    step(m, 200)  # 400: alarm 2, held
    assert m.friendly_hold
    credit.card_inserted(m, m.clock)  # the customer has seen the alarm: no trip follows
    assert not m.friendly_hold and m.alarm2_tripped
    for _ in range(2 * 96):  # into Monday
        step(m, 0)
    assert m.relay_closed and codes(m) == [(HOLD, TripReason.ALARM2)]


def test_friendly_hold_on_a_holiday() -> None:
    m = make_meter(10, overdraft_limit=1_000, friendly_days=FriendlyDays.HOLIDAYS)
    m.holidays = [date(2026, 5, 1)]  # a Friday
    m.clock = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
    step(m, 20)
    assert m.relay_closed and m.friendly_hold
    assert run_until_trip(m, 0) == datetime(2026, 5, 2, 0, 0, tzinfo=UTC)  # Saturday: not flagged
    # the same day without the holiday trips at once
    m = make_meter(10, overdraft_limit=1_000, friendly_days=FriendlyDays.HOLIDAYS)
    m.clock = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
    step(m, 20)
    assert not m.relay_closed


def test_card_in_a_friendly_hold_at_zero_enables_overdraft() -> None:
    m = make_meter(10, overdraft_limit=1_000, friendly_days=FriendlyDays.SATURDAY)
    m.clock = datetime(2026, 3, 7, 12, 0, tzinfo=UTC)
    step(m, 20)
    assert m.friendly_hold
    credit.card_inserted(m, m.clock)
    assert m.overdraft_enabled and not m.friendly_hold and m.relay_closed
    # in overdraft now; "off" (at -10.00) is reached on Saturday, held until Sunday
    assert run_until_trip(m, 100) == datetime(2026, 3, 8, 0, 0, tzinfo=UTC)
    assert codes(m) == [(HOLD, TripReason.ZERO), (HOLD, TripReason.OFF), (TRIP, TripReason.OFF)]


def test_supply_state_boundaries() -> None:
    m = journey_meter(0)
    table = {
        2_001: "normal",
        2_000: "alarm1",
        501: "alarm1",
        500: "alarm2",
        1: "alarm2",
        0: "zero",
        -999: "zero",
        -1_000: "off",
    }
    for remaining, expected in table.items():
        m.remaining = remaining
        assert supply_state(m) == expected, remaining
    m.overdraft_enabled = True
    m.remaining = -999
    assert supply_state(m) == "overdraft"
    m.remaining = -1_000
    assert supply_state(m) == "off"


@settings(max_examples=300, deadline=None)
@given(
    st.integers(-1_500, 2_500),
    st.sampled_from([None, "alarm2", "zero", "off", "load_limit"]),
    st.booleans(),
    st.booleans(),
    st.integers(0, 3_000),
)
def test_card_and_purchase_commute(
    remaining: int, reason: str | None, enabled: bool, tripped: bool, amount: int
) -> None:
    """Insertion code may call card_inserted before or after credit_loaded: the
    registers end the same (only a RELAY_CLOSE detail, card or purchase, may differ)."""
    ends = []
    for card_first in (True, False):
        m = journey_meter(remaining)
        m.relay_closed, m.trip_reason = reason is None, reason
        m.overdraft_enabled, m.alarm2_tripped = enabled, tripped
        if card_first:
            credit.card_inserted(m, m.clock)
        credit.credit_loaded(m, amount, m.clock)
        if not card_first:
            credit.card_inserted(m, m.clock)
        ends.append(
            (m.relay_closed, m.trip_reason, m.overdraft_enabled, m.alarm2_tripped, m.remaining)
        )
    assert ends[0] == ends[1]
