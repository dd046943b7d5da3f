"""Pricing (docs/meter.md 1 and 2): every tariff kind against a bill worked out by hand.

Units: quantity 0.01 kWh, price 0.0001 per kWh, money 0.01 (minor units); the
residue is in 1/10 000 minor units. Each bill below is written out in a
comment before it is asserted, so a reviewer can check the arithmetic
without running anything.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cardlayout.files import (
    PARAMETERS,
    TARIFF_SET_1,
    CardType,
    DayPeriod,
    Parameters,
    SettlementDate,
    TariffSet,
    UserType,
)
from cardmeter.metering import advance
from cardmeter.pricing import Part, TariffError, charge, price_parts, tier_index, tou_rate
from cardmeter.registers import MeterState

SHANGHAI = ZoneInfo("Asia/Shanghai")

# The card's example tariff set 1 (docs/card.md 3.3): TOU + stepped.
CARD_EXAMPLE = TariffSet(
    rate_prices=(5283, 8000, 3000, 12345),
    periods=(DayPeriod(0, 0, 3), DayPeriod(8, 0, 2), DayPeriod(17, 30, 1), DayPeriod(22, 0, 3)),
    tier_thresholds=(240_000, 480_000),
    tier_prices=(4883, 5383, 7883),
    settlement_dates=(SettlementDate.yearly(1, 1, 0), SettlementDate.monthly(1, 0)),
)
FLAT = TariffSet(rate_prices=(5283,))
STEPPED = TariffSet(
    tier_thresholds=(1_000, 2_000),  # 10.00 kWh, 20.00 kWh
    tier_prices=(4883, 5383, 7883),
    settlement_dates=(SettlementDate.monthly(1, 0),),
)


def make_meter(
    tariff: TariffSet,
    user_type: UserType,
    *,
    ct: int = 1,
    pt: int = 1,
    timezone: str = "Asia/Shanghai",
    **fields: object,
) -> MeterState:
    """A meter billing ``user_type`` on ``tariff``, plenty of credit, no alarms."""
    params = Parameters(
        user_type=user_type,
        card_type=CardType.PURCHASE,
        meter_no="000012345678",
        customer_no="310101000042",
        ct_ratio=ct,
        pt_ratio=pt,
    )
    values: dict[str, object] = {"remaining": 1_000_000, "timezone": timezone}
    values.update(fields)
    return MeterState(
        meter_no="000012345678",
        parameters_frame=PARAMETERS.encode(params),
        current_tariff_frame=TARIFF_SET_1.encode(tariff),
        **values,  # type: ignore[arg-type]
    )


def local(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    """A Shanghai wall-clock time (UTC+8, no daylight saving)."""
    return datetime(year, month, day, hour, minute, tzinfo=SHANGHAI)


def metered(state: MeterState, start: datetime, quantity: int) -> int:
    """Advance one interval; return the minor units it cost."""
    before = state.remaining
    advance(state, start, quantity)
    return before - state.remaining


# -- single rate -------------------------------------------------------------------------


def test_flat_rate_bill_by_hand() -> None:
    st_ = make_meter(FLAT, UserType.SINGLE_RATE, remaining=10_000)
    # 3.00 kWh at 0.5283 = 1.5849 -> 158 minor units, residue 4900
    #   300 * 5283 = 1_584_900; 1_584_900 // 10_000 = 158, % 10_000 = 4_900
    assert metered(st_, local(2026, 3, 2, 10, 0), 300) == 158
    assert st_.residue == 4_900
    # 1.00 kWh at 0.5283 = 0.5283, plus the 0.0049 carried = 0.5332 -> 53 minor units
    #   100 * 5283 = 528_300; + 4_900 = 533_200 -> 53, residue 3_200
    assert metered(st_, local(2026, 3, 2, 10, 15), 100) == 53
    assert st_.residue == 3_200
    # together: 4.00 kWh at 0.5283 = 2.1132 -> 211 minor units, residue 3_200: nothing lost
    assert st_.remaining == 10_000 - 211
    assert st_.cumulative_used == 211
    assert st_.cumulative_quantity == 400
    assert st_.quantity_by_rate[0] == 400
    assert st_.settlement_quantity == 400


# -- TOU -----------------------------------------------------------------------------------


def test_tou_bill_by_hand() -> None:
    # periods: 00:00 rate 3 (0.3000), 08:00 rate 2 (0.8000), 17:30 rate 1 (0.5283),
    # 22:00 rate 3; 0.50 kWh (50) in each interval, rate of the interval's local start
    st_ = make_meter(CARD_EXAMPLE, UserType.TOU, remaining=10_000)
    # 07:45 rate 3: 50 * 3000 = 150_000 -> 15, residue 0
    assert metered(st_, local(2026, 3, 2, 7, 45), 50) == 15
    # 08:00 rate 2: 50 * 8000 = 400_000 -> 40, residue 0
    assert metered(st_, local(2026, 3, 2, 8, 0), 50) == 40
    # 17:15 rate 2: 400_000 -> 40, residue 0
    assert metered(st_, local(2026, 3, 2, 17, 15), 50) == 40
    # 17:30 rate 1: 50 * 5283 = 264_150 -> 26, residue 4_150
    assert metered(st_, local(2026, 3, 2, 17, 30), 50) == 26
    assert st_.residue == 4_150
    # 22:00 rate 3: 150_000 + 4_150 = 154_150 -> 15, residue 4_150
    assert metered(st_, local(2026, 3, 2, 22, 0), 50) == 15
    assert st_.residue == 4_150
    # total 15 + 40 + 40 + 26 + 15 = 136
    assert st_.remaining == 10_000 - 136
    assert st_.quantity_by_rate[:4] == [50, 100, 100, 0]


def test_tou_period_lookup() -> None:
    # card order is not time order; the rate before the first period of the day
    # is that of the last period of the day (it began the evening before)
    tariff = TariffSet(
        rate_prices=(1, 2, 3),
        periods=(DayPeriod(22, 0, 2), DayPeriod(6, 0, 1), DayPeriod(12, 30, 3)),
    )
    assert tou_rate(tariff, local(2026, 3, 2, 0, 0)) == 2  # before 06:00: the 22:00 period
    assert tou_rate(tariff, local(2026, 3, 2, 5, 59)) == 2
    assert tou_rate(tariff, local(2026, 3, 2, 6, 0)) == 1  # at hh:mm exactly: that period
    assert tou_rate(tariff, local(2026, 3, 2, 12, 29)) == 1
    assert tou_rate(tariff, local(2026, 3, 2, 12, 30)) == 3
    assert tou_rate(tariff, local(2026, 3, 2, 21, 59)) == 3
    assert tou_rate(tariff, local(2026, 3, 2, 23, 45)) == 2
    # no periods: rate 1; two periods at the same time: the later on the card wins
    assert tou_rate(TariffSet(rate_prices=(1,)), local(2026, 3, 2, 9, 0)) == 1
    same = TariffSet(rate_prices=(1, 2), periods=(DayPeriod(8, 0, 1), DayPeriod(8, 0, 2)))
    assert tou_rate(same, local(2026, 3, 2, 9, 0)) == 2


def test_tou_uses_the_meter_local_time() -> None:
    # 2026-03-02 00:00 UTC is 08:00 in Shanghai: rate 2 there, rate 3 on a UTC meter
    start = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
    shanghai = make_meter(CARD_EXAMPLE, UserType.TOU)
    utc = make_meter(CARD_EXAMPLE, UserType.TOU, timezone="UTC")
    advance(shanghai, start, 10)
    advance(utc, start, 10)
    assert shanghai.quantity_by_rate[1] == 10
    assert utc.quantity_by_rate[2] == 10


# -- stepped -----------------------------------------------------------------------------


def test_stepped_bill_by_hand_with_threshold_crossing_and_settlement_reset() -> None:
    # tiers: up to 10.00 kWh at 0.4883, up to 20.00 kWh at 0.5383, above at 0.7883;
    # settles monthly on the 1st at 00h local; last settled 2026-03-01 00:00 local
    st_ = make_meter(
        STEPPED,
        UserType.STEPPED,
        remaining=10_000,
        settlement_quantity=990,
        last_settlement=local(2026, 3, 1, 0, 0).astimezone(UTC),
    )
    # 0.30 kWh from 9.90 kWh: 0.10 kWh in tier 1, 0.20 kWh in tier 2
    #   10 * 4883 = 48_830; 20 * 5383 = 107_660; 156_490 -> 15, residue 6_490
    assert metered(st_, local(2026, 3, 10, 12, 0), 30) == 15
    assert st_.residue == 6_490
    assert st_.settlement_quantity == 1_020
    # 10.00 kWh from 10.20 kWh crosses the second threshold too:
    #   980 * 5383 = 5_275_340; 20 * 7883 = 157_660; 5_433_000 + 6_490 = 5_439_490
    #   -> 543, residue 9_490
    assert metered(st_, local(2026, 3, 10, 12, 15), 1_000) == 543
    assert st_.residue == 9_490
    assert st_.settlement_quantity == 2_020
    # 23:45 on 31 March, still before the settlement: tier 3
    #   10 * 7883 = 78_830 + 9_490 = 88_320 -> 8, residue 8_320
    assert metered(st_, local(2026, 3, 31, 23, 45), 10) == 8
    assert st_.settlement_quantity == 2_030
    # 00:00 on 1 April: settlement, back to tier 1
    #   100 * 4883 = 488_300 + 8_320 = 496_620 -> 49, residue 6_620
    assert metered(st_, local(2026, 4, 1, 0, 0), 100) == 49
    assert st_.settlement_quantity == 100
    assert st_.last_settlement == local(2026, 4, 1, 0, 0)
    assert st_.residue == 6_620
    # total 15 + 543 + 8 + 49 = 615; all counted in rate register 1
    assert st_.remaining == 10_000 - 615
    assert st_.quantity_by_rate[0] == st_.cumulative_quantity == 1_140


def test_tier_split_at_thresholds() -> None:
    at = local(2026, 3, 2, 12, 0)
    # the unit that reaches a threshold exactly is still in the lower tier
    assert tier_index(STEPPED, 999) == 0
    assert tier_index(STEPPED, 1_000) == 1
    assert price_parts(UserType.STEPPED, STEPPED, at, 990, 10) == [Part(10, 4883, 1)]
    assert price_parts(UserType.STEPPED, STEPPED, at, 1_000, 1) == [Part(1, 5383, 1)]
    assert price_parts(UserType.STEPPED, STEPPED, at, 0, 2_500) == [
        Part(1_000, 4883, 1),
        Part(1_000, 5383, 1),
        Part(500, 7883, 1),
    ]
    assert price_parts(UserType.STEPPED, STEPPED, at, 5_000, 7) == [Part(7, 7883, 1)]
    assert price_parts(UserType.STEPPED, STEPPED, at, 5_000, 0) == []


# -- TOU + stepped, with CT and PT ---------------------------------------------------------


def test_tou_stepped_bill_by_hand_with_ct_50_pt_100() -> None:
    # CT 50 x PT 100: every measured 0.01 kWh is 50.00 kWh primary (5_000)
    st_ = make_meter(
        CARD_EXAMPLE,
        UserType.TOU_STEPPED,
        ct=50,
        pt=100,
        remaining=100_000,
        settlement_quantity=238_000,
        last_settlement=local(2026, 3, 1, 0, 0).astimezone(UTC),
    )
    # 08:00, rate 2 (0.8000); measured 1 -> 5_000 primary from 2380.00 kWh:
    #   tier 1 to 2400.00 kWh: 2_000 at 0.8000 + 0.4883 = 1.2883 -> 2_000 * 12_883 = 25_766_000
    #   tier 2:                3_000 at 0.8000 + 0.5383 = 1.3383 -> 3_000 * 13_383 = 40_149_000
    #   65_915_000 -> 6_591 minor units (65.91), residue 5_000
    assert metered(st_, local(2026, 3, 10, 8, 0), 1) == 6_591
    assert st_.residue == 5_000
    # 17:30, rate 1 (0.5283); measured 2 -> 10_000 primary, all in tier 2:
    #   10_000 * (5283 + 5383 = 10_666) = 106_660_000 + 5_000 = 106_665_000 -> 10_666, residue 5_000
    assert metered(st_, local(2026, 3, 10, 17, 30), 2) == 10_666
    assert st_.residue == 5_000
    assert st_.remaining == 100_000 - 6_591 - 10_666
    assert st_.cumulative_quantity == st_.month_quantity == 15_000
    assert st_.settlement_quantity == 253_000
    assert st_.quantity_by_rate[:2] == [10_000, 5_000]


# -- errors --------------------------------------------------------------------------------


def test_missing_prices_are_refused() -> None:
    at = local(2026, 3, 2, 12, 0)
    with pytest.raises(TariffError, match="rate 1 has no price"):
        price_parts(UserType.SINGLE_RATE, TariffSet(), at, 0, 10)
    with pytest.raises(TariffError, match="tier prices"):
        price_parts(UserType.STEPPED, FLAT, at, 0, 10)
    with pytest.raises(TariffError, match="tier prices"):
        price_parts(UserType.TOU_STEPPED, FLAT, at, 0, 10)
    with pytest.raises(ValueError, match="negative"):
        price_parts(UserType.SINGLE_RATE, FLAT, at, 0, -1)


# -- the residue rule ----------------------------------------------------------------------

PRICES = st.integers(min_value=0, max_value=99_999_999)  # 4 B BCD
QUANTITIES = st.integers(min_value=0, max_value=10**7)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(QUANTITIES, PRICES), max_size=40), st.integers(0, 9_999))
def test_charges_sum_to_the_floor_of_the_total(parts: list[tuple[int, int]], carried: int) -> None:
    """Charged one part at a time or all at once, the total is floor(sum q*p / 10 000)."""
    state = make_meter(FLAT, UserType.SINGLE_RATE, remaining=0, residue=carried)
    charged = sum(charge(state, [Part(q, p, 1)]) for q, p in parts)
    total = carried + sum(q * p for q, p in parts)
    assert charged == total // 10_000
    assert state.residue == total % 10_000
    assert state.remaining == -charged and state.cumulative_used == charged


def _split(total: int, cuts: list[int]) -> list[int]:
    points = sorted({c % (total + 1) for c in cuts} | {0, total})
    return [b - a for a, b in itertools.pairwise(points)]


@settings(max_examples=100, deadline=None)
@given(
    st.integers(0, 50_000),
    st.lists(st.integers(0, 10**6), max_size=30),
    st.sampled_from([FLAT, STEPPED]),
    st.integers(0, 1_500),
)
def test_any_split_into_intervals_charges_the_same(
    total: int, cuts: list[int], tariff: TariffSet, settled: int
) -> None:
    """Metering a quantity in one interval or in any split charges the same minor units
    and leaves the same residue: tier splits are exact and the residue is carried."""
    kind = UserType.SINGLE_RATE if tariff is FLAT else UserType.STEPPED
    first = local(2026, 3, 2, 0, 0)
    last = local(2026, 3, 1, 0, 0).astimezone(UTC)
    whole = make_meter(tariff, kind, settlement_quantity=settled, last_settlement=last)
    split = make_meter(tariff, kind, settlement_quantity=settled, last_settlement=last)
    advance(whole, first, total)
    for index, quantity in enumerate(_split(total, cuts)):
        advance(split, first + timedelta(minutes=15 * index), quantity)
    assert split.cumulative_used == whole.cumulative_used
    assert split.residue == whole.residue
    assert split.remaining == whole.remaining
    # and both equal the floor of the exact bill
    exact = sum(p.quantity * p.price for p in price_parts(kind, tariff, first, settled, total))
    assert whole.cumulative_used == exact // 10_000 and whole.residue == exact % 10_000
