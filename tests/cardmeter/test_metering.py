"""The interval engine (docs/meter.md 2.1, 2 and 4): tariff switch, settlement, months, runs."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from cardlayout.files import (
    PARAMETERS,
    TARIFF_SET_1,
    CardType,
    EventCode,
    FriendlyDays,
    Parameters,
    SettlementDate,
    TariffSet,
    UserType,
)
from cardmeter.clock import in_friendly_window, latest_settlement
from cardmeter.metering import MeteringError, advance, run
from cardmeter.profiles import residential
from cardmeter.registers import MeterState

SHANGHAI = ZoneInfo("Asia/Shanghai")
OLD = TariffSet(rate_prices=(5_000,))  # 0.5000 per kWh
NEW = TariffSet(rate_prices=(8_000,))  # 0.8000 per kWh
SWITCH = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)


def make_params(**fields: object) -> Parameters:
    return Parameters(
        user_type=UserType.SINGLE_RATE,
        card_type=CardType.PURCHASE,
        meter_no="000012345678",
        customer_no="310101000042",
        **fields,  # type: ignore[arg-type]
    )


def make_meter(
    tariff: TariffSet = OLD,
    backup: TariffSet | None = None,
    params: Parameters | None = None,
    **fields: object,
) -> MeterState:
    values: dict[str, object] = {"remaining": 1_000_000}
    values.update(fields)
    return MeterState(
        meter_no="000012345678",
        parameters_frame=PARAMETERS.encode(params or make_params()),
        current_tariff_frame=TARIFF_SET_1.encode(tariff),
        backup_tariff_frame=TARIFF_SET_1.encode(backup) if backup is not None else None,
        **values,  # type: ignore[arg-type]
    )


def cost(state: MeterState, start: datetime, quantity: int) -> int:
    before = state.remaining
    advance(state, start, quantity)
    return before - state.remaining


# -- backup tariff switch -------------------------------------------------------------------


def test_backup_becomes_current_at_its_switch_time() -> None:
    m = make_meter(backup=TariffSet(rate_prices=(8_000,), switch_time=SWITCH))
    # 23:45, before the switch: 1.00 kWh at 0.5000 = 0.50 -> 100 * 5000 = 500_000 -> 50
    assert cost(m, SWITCH - timedelta(minutes=15), 100) == 50
    assert m.backup_tariff_frame is not None
    # 00:00, the switch time: 1.00 kWh at 0.8000 -> 800_000 -> 80
    assert cost(m, SWITCH, 100) == 80
    assert m.backup_tariff_frame is None
    assert m.current_tariff is not None and m.current_tariff.rate_prices == (8_000,)


def test_backup_without_own_time_switches_at_ef01_time() -> None:
    m = make_meter(backup=NEW, params=make_params(tariff_switch_time=SWITCH))
    assert cost(m, SWITCH - timedelta(minutes=15), 100) == 50
    assert cost(m, SWITCH, 100) == 80


def test_backup_own_time_wins_over_ef01_time() -> None:
    later = SWITCH + timedelta(days=1)
    m = make_meter(
        backup=TariffSet(rate_prices=(8_000,), switch_time=later),
        params=make_params(tariff_switch_time=SWITCH),
    )
    assert cost(m, SWITCH, 100) == 50
    assert cost(m, later, 100) == 80


def test_backup_without_any_switch_time_waits() -> None:
    m = make_meter(backup=NEW)
    assert cost(m, SWITCH + timedelta(days=400), 100) == 50
    assert m.backup_tariff_frame is not None


# -- settlement ------------------------------------------------------------------------------


def test_latest_settlement_yearly_monthly_and_local() -> None:
    tariff = TariffSet(
        rate_prices=(1,),
        settlement_dates=(SettlementDate.yearly(7, 1, 0), SettlementDate.monthly(15, 6)),
    )
    # 2026-03-10 local: the latest is 15 Feb 06:00 (monthly), not 1 July 2025 (yearly)
    at = datetime(2026, 3, 10, 12, 0, tzinfo=SHANGHAI)
    assert latest_settlement(tariff, "Asia/Shanghai", at) == datetime(
        2026, 2, 14, 22, 0, tzinfo=UTC
    )
    # at the settlement instant itself
    at = datetime(2026, 3, 15, 6, 0, tzinfo=SHANGHAI)
    assert latest_settlement(tariff, "Asia/Shanghai", at) == at
    yearly = TariffSet(rate_prices=(1,), settlement_dates=(SettlementDate.yearly(7, 1, 0),))
    at = datetime(2026, 3, 10, tzinfo=UTC)
    assert latest_settlement(yearly, "UTC", at) == datetime(2025, 7, 1, tzinfo=UTC)
    assert latest_settlement(TariffSet(), "UTC", at) is None
    # local midnight in Berlin is 23:00 UTC in winter, 22:00 UTC in summer
    monthly = TariffSet(rate_prices=(1,), settlement_dates=(SettlementDate.monthly(1, 0),))
    berlin = "Europe/Berlin"
    assert latest_settlement(monthly, berlin, datetime(2026, 2, 2, tzinfo=UTC)) == datetime(
        2026, 1, 31, 23, 0, tzinfo=UTC
    )
    assert latest_settlement(monthly, berlin, datetime(2026, 7, 2, tzinfo=UTC)) == datetime(
        2026, 6, 30, 22, 0, tzinfo=UTC
    )


def test_a_meter_that_never_settled_only_remembers_the_settlement() -> None:
    tariff = TariffSet(rate_prices=(1,), settlement_dates=(SettlementDate.monthly(1, 0),))
    m = make_meter(tariff, settlement_quantity=500)
    advance(m, datetime(2026, 3, 10, tzinfo=UTC), 10)
    assert m.settlement_quantity == 510
    assert m.last_settlement == datetime(2026, 3, 1, tzinfo=UTC)
    advance(m, datetime(2026, 4, 1, tzinfo=UTC), 10)
    assert m.settlement_quantity == 10


def test_settlement_after_a_gap_resets_once() -> None:
    tariff = TariffSet(rate_prices=(1,), settlement_dates=(SettlementDate.monthly(1, 0),))
    m = make_meter(
        tariff, settlement_quantity=500, last_settlement=datetime(2026, 1, 1, tzinfo=UTC)
    )
    advance(m, datetime(2026, 4, 20, tzinfo=UTC), 10)  # three settlements passed: one reset
    assert m.settlement_quantity == 10
    assert m.last_settlement == datetime(2026, 4, 1, tzinfo=UTC)


# -- monthly freeze --------------------------------------------------------------------------


def test_monthly_freeze_keeps_12_newest_first() -> None:
    m = make_meter(timezone="Asia/Shanghai")
    # one interval on the 10th of each month, 14 months, quantity 100 x month number
    for index in range(14):
        month = date(2026 + index // 12, index % 12 + 1, 10)
        advance(m, datetime(month.year, month.month, 10, tzinfo=SHANGHAI), 100 * (index + 1))
    # the 14th month (2027-02) is running; 2027-01 (1300) is the newest frozen,
    # 2026-02 (200) the oldest kept; 2026-01 (100) has dropped off
    assert m.frozen == [1_300, 1_200, 1_100, 1_000, 900, 800, 700, 600, 500, 400, 300, 200]
    assert m.frozen_month == date(2027, 1, 1)
    assert m.current_month == date(2027, 2, 1)
    assert m.month_quantity == 1_400


def test_month_boundary_is_local_and_skipped_months_freeze_as_zero() -> None:
    m = make_meter(timezone="Asia/Shanghai")
    advance(m, datetime(2026, 1, 31, 15, 45, tzinfo=UTC), 40)  # 23:45 on 31 Jan local
    assert m.current_month == date(2026, 1, 1) and m.frozen_month is None
    advance(m, datetime(2026, 1, 31, 16, 0, tzinfo=UTC), 7)  # 00:00 on 1 Feb local
    assert m.frozen[:2] == [40, 0] and m.frozen_month == date(2026, 1, 1)
    assert m.month_quantity == 7
    advance(m, datetime(2026, 5, 3, tzinfo=UTC), 1)  # nothing in March and April
    assert m.frozen[:4] == [0, 0, 7, 40]  # April, March, February, January
    assert m.frozen_month == date(2026, 4, 1)
    advance(m, datetime(2026, 4, 3, tzinfo=UTC), 1)  # clock went back: no freeze
    assert m.frozen_month == date(2026, 4, 1) and m.month_quantity == 2


# -- friendly window -------------------------------------------------------------------------


def test_friendly_window_hours_wrap_midnight() -> None:
    p = make_params(friendly_start_hour=22, friendly_end_hour=6)
    monday = date(2026, 3, 2)
    inside = {h for h in range(24) if in_friendly_window(p, _at(monday, h), [])}
    assert inside == {22, 23, 0, 1, 2, 3, 4, 5}
    p = make_params(friendly_start_hour=12, friendly_end_hour=14)
    assert {h for h in range(24) if in_friendly_window(p, _at(monday, h), [])} == {12, 13}
    p = make_params(friendly_start_hour=5, friendly_end_hour=5)  # equal: no window
    assert not any(in_friendly_window(p, _at(monday, h), []) for h in range(24))
    p = make_params(friendly_days=FriendlyDays.SUNDAY | FriendlyDays.HOLIDAYS)
    assert in_friendly_window(p, _at(date(2026, 3, 8), 12), [])  # Sunday
    assert not in_friendly_window(p, _at(date(2026, 3, 7), 12), [])  # Saturday: not flagged
    assert in_friendly_window(p, _at(monday, 12), [monday])


def _at(day: date, hour: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=SHANGHAI)


# -- runs and errors -------------------------------------------------------------------------


def test_run_summary_and_state_round_trip() -> None:
    params = make_params(alarm1=5_000, alarm2=2_000)
    m = make_meter(params=params, remaining=2_500, timezone="Asia/Shanghai")
    start = datetime(2026, 3, 2, tzinfo=SHANGHAI)
    summary = run(m, residential(start, 3, seed=7))
    assert summary.intervals == 3 * 96
    assert summary.quantity == m.cumulative_quantity
    assert summary.charged == m.cumulative_used == 2_500 - m.remaining
    assert summary.remaining == m.remaining
    assert summary.relay_closed == m.relay_closed
    # 0.5000 per kWh: alarm 2 (20.00) is reached within three days of a household
    assert [e.code for e in summary.events] == [EventCode.RELAY_TRIP]
    assert not summary.relay_closed and summary.unserved > 0
    assert m.clock == datetime(2026, 3, 5, tzinfo=SHANGHAI)
    assert MeterState.from_json(m.to_json()) == m


def test_advance_refuses_what_it_cannot_meter() -> None:
    m = make_meter()
    with pytest.raises(ValueError, match="no time zone"):
        advance(m, datetime(2026, 3, 1), 1)
    with pytest.raises(ValueError, match="non-negative integer"):
        advance(m, SWITCH, -1)
    with pytest.raises(ValueError, match="non-negative integer"):
        advance(m, SWITCH, 1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="minutes"):
        advance(m, SWITCH, 1, minutes=0)
    with pytest.raises(MeteringError, match="opening card"):
        advance(MeterState(meter_no="000012345678"), SWITCH, 1)
