"""Tariffs: structures, card tariff sets, quotes, charge bounds, versions and defaults.

The first half is pure arithmetic (no database); the second runs the
services on both databases through the ``db`` fixture.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from fractions import Fraction
from typing import Any

import pytest
from centre_support import Database
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from cardcenter.core.errors import ConflictError, InvalidInputError, NotFoundError
from cardcenter.customers.models import AccountStatus, Category, Customer
from cardcenter.tariffs.models import Tariff, TariffKind, TariffVersion
from cardcenter.tariffs.pricing import (
    Quote,
    format_money,
    format_price,
    implied_charge_bounds,
    months_due,
    parse_price,
    quote,
    to_tariff_set,
    user_type,
    validate_structure,
)
from cardcenter.tariffs.services import (
    add_tariff,
    customers_reached,
    describe,
    find_tariff,
    get_or_create_category,
    next_version,
    reach_counts,
    set_category_default,
    tariff_of,
    version_at,
)
from cardlayout.files import TARIFF_SET_1, TARIFF_SET_2, UserType
from cardmeter.pricing import price_parts

# One structure per kind. The TOU ones have a rate 4 that no period uses, so
# the bounds must ignore it; the TOU + stepped one is cardlayout's example 1.
FLAT: dict[str, Any] = {"rate_prices": [5283]}
TOU: dict[str, Any] = {
    "rate_prices": [5283, 8000, 3000, 12345],
    "periods": [[22, 0, 3], [0, 0, 3], [17, 30, 1], [8, 0, 2]],
}
STEPPED: dict[str, Any] = {
    "tier_thresholds": [240_000, 480_000],
    "tier_prices": [4883, 5383, 7883],
}
TOU_STEPPED: dict[str, Any] = {
    **TOU,
    **STEPPED,
    "settlement_dates": [[1, 1, 0], [None, 1, 0]],
}
STRUCTURES = {
    TariffKind.FLAT: FLAT,
    TariffKind.TOU: TOU,
    TariffKind.STEPPED: STEPPED,
    TariffKind.TOU_STEPPED: TOU_STEPPED,
}
SORTED_PERIODS = [[0, 0, 3], [8, 0, 2], [17, 30, 1], [22, 0, 3]]

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def version_of(
    kind: TariffKind, structure: dict[str, Any], *, tax_rate: int = 0, fixed_monthly: int = 0
) -> TariffVersion:
    """A transient version (never added to a session), for the pure functions."""
    return TariffVersion(
        version=1,
        kind=kind,
        active_from=T0,
        structure=structure,
        tax_rate=tax_rate,
        fixed_monthly=fixed_monthly,
    )


# ---------------------------------------------------------------- text


def test_prices_and_money_as_text() -> None:
    assert parse_price("0.5283") == 5283
    assert parse_price(" 1 ") == 10_000
    assert parse_price("12.3", field="rate 2") == 123_000
    assert format_price(5283) == "0.5283"
    assert format_price(123_000) == "12.3000"
    assert format_money(1234) == "12.34"
    assert format_money(5) == "0.05"
    assert format_money(0) == "0.00"
    assert format_money(-5) == "-0.05"
    assert format_money(-123_456) == "-1234.56"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("0.12345", "more than 4 decimal places"), ("cheap", "not a number"), ("-1", "0 or more")],
)
def test_a_bad_price_names_its_field(text: str, fragment: str) -> None:
    with pytest.raises(InvalidInputError, match=fragment) as caught:
        parse_price(text, field="tier 2")
    assert caught.value.field == "tier 2"
    assert str(caught.value).startswith("tier 2: ")


# ---------------------------------------------------------------- structures


def test_each_kind_is_normalised_with_all_keys() -> None:
    assert validate_structure(TariffKind.FLAT, FLAT) == {
        "rate_prices": [5283],
        "periods": [],
        "tier_thresholds": [],
        "tier_prices": [],
        "settlement_dates": [],
    }
    tou = validate_structure(TariffKind.TOU, TOU)
    assert tou["periods"] == SORTED_PERIODS  # in hh:mm order, as the meter reads them
    assert tou["rate_prices"] == [5283, 8000, 3000, 12345]
    stepped = validate_structure("stepped", STEPPED)  # the database gives plain strings
    assert stepped["settlement_dates"] == [[1, 1, 0]]  # default: yearly on 1 January
    assert stepped["rate_prices"] == []
    both = validate_structure(TariffKind.TOU_STEPPED, TOU_STEPPED)
    assert both["settlement_dates"] == [[1, 1, 0], [None, 1, 0]]
    assert both["tier_prices"] == [4883, 5383, 7883]


def test_tuples_are_accepted_and_lists_come_back() -> None:
    structure = {"rate_prices": (100, 200), "periods": ((6, 0, 1), (18, 0, 2))}
    assert validate_structure(TariffKind.TOU, structure)["periods"] == [[6, 0, 1], [18, 0, 2]]


def test_a_tou_stepped_surcharge_may_be_zero_but_a_stepped_price_not() -> None:
    surcharge = {**TOU_STEPPED, "tier_prices": [0, 500, 3000]}
    assert validate_structure(TariffKind.TOU_STEPPED, surcharge)["tier_prices"] == [0, 500, 3000]
    with pytest.raises(InvalidInputError, match=r"tier_prices\[0\] is 0.0000") as caught:
        validate_structure(TariffKind.STEPPED, {**STEPPED, "tier_prices": [0, 500, 3000]})
    assert caught.value.field == "tier_prices"


BAD_STRUCTURES = [
    (TariffKind.FLAT, {}, "rate_prices", "exactly 1 rate price, not 0"),
    (TariffKind.FLAT, {"rate_prices": [1, 2]}, "rate_prices", "exactly 1 rate price, not 2"),
    (TariffKind.FLAT, {"rate_prices": [0]}, "rate_prices", "from 0.0001 to 9999.9999"),
    (TariffKind.FLAT, {"rate_prices": [10**8]}, "rate_prices", "8 digits"),
    (TariffKind.FLAT, {"rate_prices": [1.5]}, "rate_prices", "whole numbers"),
    (TariffKind.FLAT, {"rate_prices": [True]}, "rate_prices", "whole numbers"),
    (TariffKind.FLAT, {"rate_prices": 5283}, "rate_prices", "must be a list"),
    (TariffKind.FLAT, {**FLAT, "periods": [[0, 0, 1]]}, "periods", "use kind tou"),
    (TariffKind.FLAT, {**FLAT, "tier_prices": [1]}, "tier_prices", "has no tiers"),
    (TariffKind.FLAT, {**FLAT, "rates": [1]}, "structure", "unknown key(s) 'rates'"),
    (TariffKind.TOU, {"rate_prices": [1]}, "periods", "1 to 14 day periods, not 0"),
    (TariffKind.TOU, {"periods": [[0, 0, 1]]}, "rate_prices", "1 to 32 rate prices, not 0"),
    (TariffKind.TOU, {**TOU, "rate_prices": [1] * 33}, "rate_prices", "not 33"),
    (TariffKind.TOU, {**TOU, "periods": [[h, 0, 1] for h in range(15)]}, "periods", "not 15"),
    (TariffKind.TOU, {**TOU, "periods": [[0, 0, 5]]}, "periods", "rate 5, which has no price"),
    (TariffKind.TOU, {**TOU, "periods": [[0, 0, 0]]}, "periods", "rate 0, which has no price"),
    (TariffKind.TOU, {**TOU, "periods": [[24, 0, 1]]}, "periods", "hour must be 0 to 23"),
    (TariffKind.TOU, {**TOU, "periods": [[8, 60, 1]]}, "periods", "minute must be 0 to 59"),
    (TariffKind.TOU, {**TOU, "periods": [[8, 0]]}, "periods", "give [hour, minute, rate]"),
    (
        TariffKind.TOU,
        {**TOU, "periods": [[8, 0, 1], [8, 0, 2]]},
        "periods",
        "both start at 08:00",
    ),
    (TariffKind.STEPPED, {"tier_prices": [1]}, "tier_thresholds", "1 to 6 tier thresholds"),
    (
        TariffKind.STEPPED,
        {"tier_thresholds": list(range(1, 8)), "tier_prices": [1] * 8},
        "tier_thresholds",
        "not 7",
    ),
    (
        TariffKind.STEPPED,
        {"tier_thresholds": [100], "tier_prices": [1]},
        "tier_prices",
        "1 tier thresholds need 2 tier prices",
    ),
    (
        TariffKind.STEPPED,
        {"tier_thresholds": [200, 200], "tier_prices": [1, 2, 3]},
        "tier_thresholds",
        "tier_thresholds[1] is 2.00 after 2.00: thresholds must rise strictly",
    ),
    (
        TariffKind.STEPPED,
        {"tier_thresholds": [0], "tier_prices": [1, 2]},
        "tier_thresholds",
        "from above 0",
    ),
    (TariffKind.STEPPED, {**STEPPED, "rate_prices": [1]}, "rate_prices", "use kind tou_stepped"),
    (
        TariffKind.STEPPED,
        {**STEPPED, "settlement_dates": [[2, 29, 0]]},
        "settlement_dates",
        "must be day 1 to 28",
    ),
    (
        TariffKind.STEPPED,
        {**STEPPED, "settlement_dates": [[None, 31, 0]]},
        "settlement_dates",
        "every month must be day 1 to 28",
    ),
    (
        TariffKind.STEPPED,
        {**STEPPED, "settlement_dates": [[13, 1, 0]]},
        "settlement_dates",
        "month must be 1 to 12",
    ),
    (
        TariffKind.STEPPED,
        {**STEPPED, "settlement_dates": [[1, 1, 24]]},
        "settlement_dates",
        "hour must be 0 to 23",
    ),
    (
        TariffKind.STEPPED,
        {**STEPPED, "settlement_dates": [[None, d, 0] for d in range(1, 6)]},
        "settlement_dates",
        "at most 4",
    ),
    (
        TariffKind.STEPPED,
        {**STEPPED, "settlement_dates": [[1, 1, 0], [1, 1, 0]]},
        "settlement_dates",
        "given twice",
    ),
    (TariffKind.TOU_STEPPED, TOU, "tier_thresholds", "1 to 6 tier thresholds, not 0"),
    (TariffKind.TOU_STEPPED, STEPPED, "rate_prices", "1 to 32 rate prices, not 0"),
    ("ladder", FLAT, "kind", "'ladder' is not a tariff kind"),
]


@pytest.mark.parametrize(("kind", "structure", "field", "fragment"), BAD_STRUCTURES)
def test_a_bad_structure_names_the_field(
    kind: TariffKind, structure: dict[str, Any], field: str, fragment: str
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        validate_structure(kind, structure)
    assert fragment in str(caught.value)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")


# ---------------------------------------------------------------- card tariff sets


def test_user_types() -> None:
    assert user_type(TariffKind.FLAT) is UserType.SINGLE_RATE
    assert user_type("tou") is UserType.TOU
    assert user_type(TariffKind.STEPPED) is UserType.STEPPED
    assert user_type(TariffKind.TOU_STEPPED) is UserType.TOU_STEPPED


@pytest.mark.parametrize("kind", list(TariffKind))
def test_every_kind_survives_the_card(kind: TariffKind) -> None:
    version = version_of(kind, STRUCTURES[kind])
    current = to_tariff_set(version)
    assert TARIFF_SET_1.decode(TARIFF_SET_1.encode(current)) == current
    switch = datetime(2026, 7, 1, 8, 0, tzinfo=timezone(timedelta(hours=8)))
    backup = to_tariff_set(version, switch_time=switch)
    assert backup.switch_time == datetime(2026, 7, 1, 0, 0, tzinfo=UTC)
    assert TARIFF_SET_2.decode(TARIFF_SET_2.encode(backup)) == backup


def test_tou_stepped_is_cardlayouts_example_byte_for_byte() -> None:
    example = TARIFF_SET_1.examples[0]
    tariff_set = to_tariff_set(version_of(TariffKind.TOU_STEPPED, TOU_STEPPED))
    assert tariff_set == example.value
    assert TARIFF_SET_1.encode(tariff_set) == example.data


def test_a_switch_time_between_minutes_is_rounded_up() -> None:
    version = version_of(TariffKind.FLAT, FLAT)
    late = to_tariff_set(version, datetime(2026, 7, 1, 0, 0, 0, 1, tzinfo=UTC))
    assert late.switch_time == datetime(2026, 7, 1, 0, 1, tzinfo=UTC)
    exact = to_tariff_set(version, datetime(2026, 7, 1, 0, 0, tzinfo=UTC))
    assert exact.switch_time == datetime(2026, 7, 1, 0, 0, tzinfo=UTC)


def test_a_stored_structure_that_is_bad_fails_before_the_card() -> None:
    with pytest.raises(InvalidInputError, match="rate 5, which has no price"):
        to_tariff_set(version_of(TariffKind.TOU, {**TOU, "periods": [[0, 0, 5]]}))


# ---------------------------------------------------------------- months and quotes


def test_months_due_across_a_year_boundary() -> None:
    opened = datetime(2024, 3, 5, tzinfo=UTC)
    at = datetime(2026, 2, 15, 12, tzinfo=UTC)
    assert months_due("2025-11", opened, at) == ("2025-12", "2026-01", "2026-02")
    assert months_due("2026-02", opened, at) == ()
    assert months_due("2026-05", opened, at) == ()  # paid ahead
    assert months_due(None, datetime(2025, 12, 31, 23, 59, tzinfo=UTC), at) == (
        "2025-12",
        "2026-01",
        "2026-02",
    )


def test_months_due_are_utc_months_and_never_before_opening() -> None:
    shanghai = timezone(timedelta(hours=8))
    # 1 January 07:00 in Shanghai is still 31 December in UTC
    new_year = datetime(2026, 1, 1, 7, tzinfo=shanghai)
    assert months_due("2025-11", datetime(2025, 1, 1, tzinfo=UTC), new_year) == ("2025-12",)
    # an account taken over with an old paid-through month pays from its opening
    opened = datetime(2025, 12, 10, tzinfo=UTC)
    assert months_due("2020-01", opened, datetime(2026, 1, 2, tzinfo=UTC)) == (
        "2025-12",
        "2026-01",
    )
    assert (
        months_due(None, datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)) == ()
    )


def test_months_due_refuses_bad_input() -> None:
    with pytest.raises(InvalidInputError, match="'2025-13' is not a month") as caught:
        months_due("2025-13", T0, T0)
    assert caught.value.field == "fixed_paid_through"
    with pytest.raises(ValueError, match="naive"):
        months_due(None, datetime(2026, 1, 1), T0)


def test_quote_known_answers() -> None:
    version = version_of(TariffKind.FLAT, FLAT, tax_rate=1300, fixed_monthly=500)
    # 100.00 with 13 % tax included: tax 10000*1300/11300 = 1150.44 -> 11.50
    assert quote(version, 10_000, ()) == Quote(
        tendered=10_000, fixed_charge=0, months=(), tax=1150, credit=8850, tax_rate=1300
    )
    # two months of 5.00 first; 90.00 left: tax 1035.40 -> 10.35
    two = quote(version, 10_000, ("2025-12", "2026-01"))
    assert (two.fixed_charge, two.tax, two.credit) == (1000, 1035, 7965)
    assert two.as_dict() == {
        "tendered": 10_000,
        "fixed_charge": 1000,
        "months": ["2025-12", "2026-01"],
        "tax": 1035,
        "credit": 7965,
        "tax_rate": 1300,
    }
    untaxed = quote(version_of(TariffKind.FLAT, FLAT), 1, ())
    assert (untaxed.tax, untaxed.credit) == (0, 1)


def test_quote_rounds_tax_half_up() -> None:
    # at 100 % the tax is half the amount: 3 * 1/2 = 1.5 -> 2, leaving 1
    version = version_of(TariffKind.FLAT, FLAT, tax_rate=10_000)
    assert (quote(version, 3, ()).tax, quote(version, 3, ()).credit) == (2, 1)
    assert (quote(version, 2, ()).tax, quote(version, 2, ()).credit) == (1, 1)
    # 1 would be all tax (0.5 -> 1) and no credit
    with pytest.raises(InvalidInputError, match=r"0\.01 buys no credit: give at least 0\.02"):
        quote(version, 1, ())


def test_quote_refuses_what_does_not_cover_the_fixed_charges() -> None:
    version = version_of(TariffKind.FLAT, FLAT, tax_rate=1300, fixed_monthly=700)
    months = ("2025-12", "2026-01")
    for tendered in (1000, 1400):  # short of the charges, and exactly the charges
        with pytest.raises(InvalidInputError) as caught:
            quote(version, tendered, months)
        assert caught.value.field == "amount"
        assert "at least 14.01 is needed to cover 2 months of fixed charges" in str(caught.value)
        assert "7.00 a month, 2025-12 to 2026-01: 14.00" in str(caught.value)
    assert quote(version, 1401, months).credit == 1
    with pytest.raises(InvalidInputError, match="cover 1 month of fixed charges"):
        quote(version, 10, ("2026-01",))
    with pytest.raises(InvalidInputError, match=r"0\.00 buys no credit"):
        quote(version, 0, ())
    with pytest.raises(InvalidInputError, match="not an amount"):
        quote(version, -100, ())
    with pytest.raises(InvalidInputError, match="names a month twice"):
        quote(version, 10_000, ("2026-01", "2026-01"))


@settings(max_examples=300, deadline=None)
@given(
    tendered=st.integers(0, 10**10),
    tax_rate=st.integers(0, 10_000),
    fixed_monthly=st.integers(0, 100_000),
    month_count=st.integers(0, 30),
)
def test_quote_conserves_money_and_rounds_tax_to_the_nearest(
    tendered: int, tax_rate: int, fixed_monthly: int, month_count: int
) -> None:
    version = version_of(TariffKind.FLAT, FLAT, tax_rate=tax_rate, fixed_monthly=fixed_monthly)
    months = tuple(f"{2000 + i // 12}-{i % 12 + 1:02d}" for i in range(month_count))
    fixed = fixed_monthly * month_count
    try:
        result = quote(version, tendered, months)
    except InvalidInputError as exc:
        assert exc.field == "amount"
        rest = tendered - fixed
        # refused only when nothing would be left for the meter
        half_up = math.floor(Fraction(rest * tax_rate, 10_000 + tax_rate) + Fraction(1, 2))
        assert rest <= 0 or rest - half_up <= 0
        return
    assert result.fixed_charge == fixed
    assert result.fixed_charge + result.tax + result.credit == tendered
    assert result.credit > 0
    assert result.tax >= 0
    exact = Fraction((tendered - fixed) * tax_rate, 10_000 + tax_rate)
    assert -Fraction(1, 2) < result.tax - exact <= Fraction(1, 2)  # half up, within 1 unit


# ---------------------------------------------------------------- what the meter charged


@pytest.mark.parametrize(
    ("kind", "quantity", "ct_pt", "bounds"),
    [
        # 10.00 units at 0.5283: 528.3 -> 528 or 529 (the residue carry)
        (TariffKind.FLAT, 1000, 1, (528, 529)),
        # CT x PT 10: 100.00 primary units at 0.5283 = 5283 exactly
        (TariffKind.FLAT, 1000, 10, (5283, 5283)),
        # rates 0.3000 .. 0.8000 in use; rate 4 (1.2345) is in no period
        (TariffKind.TOU, 1000, 1, (300, 800)),
        # tiers 0.4883 .. 0.7883: 488.3 .. 788.3
        (TariffKind.STEPPED, 1000, 1, (488, 789)),
        # 0.3000 + 0.4883 .. 0.8000 + 0.7883: 788.3 .. 1588.3
        (TariffKind.TOU_STEPPED, 1000, 1, (788, 1589)),
        (TariffKind.TOU_STEPPED, 0, 1, (0, 0)),
    ],
)
def test_implied_charge_bounds_known_answers(
    kind: TariffKind, quantity: int, ct_pt: int, bounds: tuple[int, int]
) -> None:
    assert implied_charge_bounds(version_of(kind, STRUCTURES[kind]), quantity, ct_pt) == bounds


def test_implied_charge_bounds_refuse_nonsense() -> None:
    version = version_of(TariffKind.FLAT, FLAT)
    with pytest.raises(ValueError, match="quantity"):
        implied_charge_bounds(version, -1)
    with pytest.raises(ValueError, match="ct_pt"):
        implied_charge_bounds(version, 1, 0)


@settings(max_examples=200, deadline=None)
@given(
    kind=st.sampled_from(list(TariffKind)),
    residue=st.integers(0, 9_999),
    settled=st.integers(0, 600_000),
    ct_pt=st.integers(1, 20),
    intervals=st.lists(
        st.tuples(st.integers(0, 24 * 60 - 1), st.integers(0, 50_000)), min_size=1, max_size=12
    ),
)
def test_the_meters_own_pricing_falls_within_the_bounds(
    kind: TariffKind,
    residue: int,
    settled: int,
    ct_pt: int,
    intervals: list[tuple[int, int]],
) -> None:
    """Whatever the periods, tiers and carried residue, cardmeter charges within the bounds."""
    version = version_of(kind, STRUCTURES[kind])
    tariff_set = to_tariff_set(version)
    day = datetime(2026, 3, 1)
    scaled = 0  # sum of q * p, 1/10 000 minor units
    for minute, quantity in intervals:
        primary = quantity * ct_pt
        start = day + timedelta(minutes=minute)
        for part in price_parts(user_type(kind), tariff_set, start, settled, primary):
            scaled += part.quantity * part.price
        settled += primary
    deducted = (residue + scaled) // 10_000
    low, high = implied_charge_bounds(version, sum(q for _, q in intervals), ct_pt)
    assert low <= deducted <= high


# ---------------------------------------------------------------- services (both databases)


def make_customer(
    session: Any, number: str, category: Category, tariff: Tariff | None = None
) -> Customer:
    customer = Customer(
        customer_no=number,
        name=f"customer {number}",
        category_id=category.id,
        tariff_id=None if tariff is None else tariff.id,
    )
    session.add(customer)
    session.flush()
    return customer


def test_versions_are_numbered_and_stored_normalised(db: Database) -> None:
    with db.sessions.begin() as session:
        first = add_tariff(session, " Home ", TariffKind.STEPPED, STEPPED, now=T0, tax_rate=1300)
        later = T0 + timedelta(days=30)
        second = add_tariff(
            session, "Home", TariffKind.TOU, TOU, active_from=later, now=T0, fixed_monthly=500
        )
        assert (first.version, second.version) == (1, 2)
        assert first.tariff_id == second.tariff_id
        assert first.active_from == T0  # defaults to now
    with db.sessions() as session:
        tariff = find_tariff(session, "Home")
        assert tariff.utility == "electricity"
        versions = tariff.versions
        assert [v.version for v in versions] == [1, 2]
        assert versions[0].kind == TariffKind.STEPPED
        assert versions[0].structure == validate_structure(TariffKind.STEPPED, STEPPED)
        assert versions[0].structure["settlement_dates"] == [[1, 1, 0]]
        assert versions[1].structure["periods"] == SORTED_PERIODS
        assert (versions[0].tax_rate, versions[1].fixed_monthly) == (1300, 500)
        assert versions[1].active_from == T0 + timedelta(days=30)


def test_scheduling_rules(db: Database) -> None:
    with db.sessions.begin() as session:
        add_tariff(session, "home", TariffKind.FLAT, FLAT, active_from=T0, now=T0)
        # the first version of a new tariff may start in the past
        add_tariff(
            session, "old", TariffKind.FLAT, FLAT, active_from=T0 - timedelta(days=400), now=T0
        )
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"active_from": T0}, "active_from", "version 1 starts at 2026-01-01T00:00:00\\+00:00"),
        ({"active_from": T0 - timedelta(days=1)}, "active_from", "must start after it"),
        (
            {"active_from": T0 + timedelta(days=1), "now": T0 + timedelta(days=2)},
            "active_from",
            "cannot be backdated",
        ),
        ({"active_from": datetime(2026, 5, 1)}, "active_from", "has no time zone"),
        ({"tax_rate": 10_001}, "tax_rate", "give 0 to 10000"),
        ({"fixed_monthly": -1}, "fixed_monthly", "0 or more"),
        ({"category": "Residential"}, "category", "e.g. 'residential'"),
    ]
    for kwargs, field, fragment in cases:
        kwargs.setdefault("now", T0 + timedelta(hours=1))
        with pytest.raises(InvalidInputError, match=fragment) as caught, db.sessions() as session:
            add_tariff(session, "home", TariffKind.FLAT, FLAT, **kwargs)
        assert caught.value.field == field
    with (
        pytest.raises(InvalidInputError, match="rate 9, which has no price"),
        db.sessions() as session,
    ):
        add_tariff(session, "new", TariffKind.TOU, {**TOU, "periods": [[1, 0, 9]]}, now=T0)
    with pytest.raises(InvalidInputError, match="name of 1 to 64"), db.sessions() as session:
        add_tariff(session, "  ", TariffKind.FLAT, FLAT, now=T0)
    with db.sessions() as session:
        assert session.scalar(select(func.count()).select_from(TariffVersion)) == 2
        assert session.scalar(select(func.count()).select_from(Category)) == 0


def test_version_at_and_next_version_around_the_boundary(db: Database) -> None:
    change = T0 + timedelta(days=31)
    tick = timedelta(microseconds=1)
    with db.sessions.begin() as session:
        one = add_tariff(session, "home", TariffKind.FLAT, FLAT, active_from=T0, now=T0)
        two = add_tariff(
            session, "home", TariffKind.FLAT, {"rate_prices": [6000]}, active_from=change, now=T0
        )
        ids = (one.id, two.id)
    with db.sessions() as session:
        tariff = find_tariff(session, "home")
        assert version_at(session, tariff, T0).id == ids[0]
        assert version_at(session, tariff, change - tick).id == ids[0]
        assert version_at(session, tariff, change).id == ids[1]
        assert version_at(session, tariff, change + timedelta(days=999)).id == ids[1]
        shanghai = timezone(timedelta(hours=8))
        assert version_at(session, tariff, change.astimezone(shanghai)).id == ids[1]
        scheduled = next_version(session, tariff, change - tick)
        assert scheduled is not None and scheduled.id == ids[1]
        assert next_version(session, tariff, change) is None
        first = next_version(session, tariff, T0 - tick)
        assert first is not None and first.id == ids[0]
        with pytest.raises(NotFoundError, match="first version starts at 2026-01-01T00:00:00"):
            version_at(session, tariff, T0 - tick)
        # the scheduled version goes to the card as the backup set with its switch time
        backup = to_tariff_set(scheduled, switch_time=scheduled.active_from)
        assert backup.rate_prices == (6000,)
        assert backup.switch_time == change
        assert TARIFF_SET_2.decode(TARIFF_SET_2.encode(backup)) == backup


def test_find_tariff_lists_the_names(db: Database) -> None:
    with db.sessions() as session:
        with pytest.raises(NotFoundError, match="no tariffs yet"):
            find_tariff(session, "home")
        add_tariff(session, "home", TariffKind.FLAT, FLAT, now=T0)
        add_tariff(session, "business", TariffKind.FLAT, FLAT, now=T0)
        with pytest.raises(NotFoundError, match="the tariffs are 'business', 'home'"):
            find_tariff(session, "farm")


def test_categories(db: Database) -> None:
    with db.sessions.begin() as session:
        made = get_or_create_category(session, "residential", "Residential")
        again = get_or_create_category(session, " residential ", "Ignored")
        assert again.id == made.id and again.name == "Residential"
        assert get_or_create_category(session, "small-business_2").name == "small-business_2"
    for code in ("", "Residential", "a b", "x" * 33, "café"):
        with pytest.raises(InvalidInputError) as caught, db.sessions() as session:
            get_or_create_category(session, code)
        assert caught.value.field == "category"


def test_category_defaults_and_who_pays_what(db: Database) -> None:
    with db.sessions.begin() as session:
        home = add_tariff(session, "home", TariffKind.FLAT, FLAT, category="residential", now=T0)
        residential = get_or_create_category(session, "residential")
        assert home.tariff.category_id == residential.id
        # a new version of the default stays the default
        add_tariff(
            session,
            "home",
            TariffKind.FLAT,
            FLAT,
            category="residential",
            active_from=T0 + timedelta(days=1),
            now=T0,
        )
        special = add_tariff(session, "special", TariffKind.TOU, TOU, now=T0).tariff
        plain = make_customer(session, "000000000001", residential)
        own = make_customer(session, "000000000002", residential, special)
        business = get_or_create_category(session, "business")
        orphan = make_customer(session, "000000000003", business)
        assert tariff_of(session, plain).name == "home"
        assert tariff_of(session, own).name == "special"
        with pytest.raises(NotFoundError) as caught:
            tariff_of(session, orphan)
        assert str(caught.value) == (
            "customer 000000000003 has no tariff: give one with --tariff "
            "or make a default for category business"
        )
        assert [c.customer_no for c in customers_reached(session, home.tariff)] == ["000000000001"]
        assert [c.customer_no for c in customers_reached(session, special)] == ["000000000002"]

    # a second default for the same category is refused, and adds nothing
    with (
        pytest.raises(ConflictError, match="already has tariff 'home' as its electricity"),
        db.sessions() as session,
    ):
        add_tariff(session, "other", TariffKind.FLAT, FLAT, category="residential", now=T0)
    # a default is the default of one category at most
    with (
        pytest.raises(ConflictError, match="is the default of category 'residential'"),
        db.sessions() as session,
    ):
        add_tariff(
            session,
            "home",
            TariffKind.FLAT,
            FLAT,
            category="business",
            active_from=T0 + timedelta(days=2),
            now=T0,
        )
    with db.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Tariff)) == 2
        assert session.scalar(select(func.count()).select_from(TariffVersion)) == 3

    # moving the default is explicit
    with db.sessions.begin() as session:
        special = find_tariff(session, "special")
        replaced = set_category_default(session, special, "residential")
        assert replaced is not None and replaced.name == "home"
        assert replaced.category_id is None
        assert set_category_default(session, special, "residential") is None
        reached = [c.customer_no for c in customers_reached(session, special)]
        assert reached == ["000000000001", "000000000002"]
        first = customers_reached(session, special, limit=1)
        assert [c.customer_no for c in first] == ["000000000001"]
        assert reach_counts(session, special) == (2, 2)
        plain_row = session.scalar(select(Customer).where(Customer.customer_no == "000000000001"))
        assert plain_row is not None
        plain_row.status = AccountStatus.CLOSED
        session.flush()
        assert reach_counts(session, special) == (2, 1)  # counted, and told apart
        plain_row.status = AccountStatus.ACTIVE
        session.flush()
        assert customers_reached(session, find_tariff(session, "home")) == []
        assert reach_counts(session, find_tariff(session, "home")) == (0, 0)
        # a water default does not serve an electricity customer
        add_tariff(session, "water", TariffKind.FLAT, FLAT, category="business", utility="water")
        again = session.scalar(select(Customer).where(Customer.customer_no == "000000000003"))
        assert again is not None
        assert tariff_of(session, again, utility="water").name == "water"
        with pytest.raises(NotFoundError):
            tariff_of(session, again)


def test_describe(db: Database) -> None:
    with db.sessions.begin() as session:
        version = add_tariff(
            session,
            "home",
            TariffKind.TOU_STEPPED,
            TOU_STEPPED,
            active_from=datetime(2026, 1, 1, 8, tzinfo=timezone(timedelta(hours=8))),
            tax_rate=1300,
            fixed_monthly=500,
            now=T0,
        )
        assert describe(version) == {
            "name": "home",
            "utility": "electricity",
            "version": 1,
            "kind": "tou_stepped",
            "user_type": 4,
            "active_from": "2026-01-01T00:00:00+00:00",
            "rate_prices": ["0.5283", "0.8000", "0.3000", "1.2345"],
            "periods": [
                {"from": "00:00", "rate": 3, "price": "0.3000"},
                {"from": "08:00", "rate": 2, "price": "0.8000"},
                {"from": "17:30", "rate": 1, "price": "0.5283"},
                {"from": "22:00", "rate": 3, "price": "0.3000"},
            ],
            "tier_thresholds": ["2400.00", "4800.00"],
            "tier_prices": ["0.4883", "0.5383", "0.7883"],
            "settlement_dates": ["yearly on 01-01 at 00:00", "monthly on day 1 at 00:00"],
            "tax_rate": 1300,
            "tax_percent": "13.00",
            "fixed_monthly": "5.00",
        }
