"""Keypad (STS token) vending: money in the books against what the meter credits.

The centre's real services make the tokens; ``cardmeter``'s :class:`KeypadMeter`,
made with the key from the same key store, says what the meter credits.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from centre_support import Database
from sqlalchemy import func, select

from cardcenter.core.db import transaction
from cardcenter.core.errors import InvalidInputError
from cardcenter.customers.models import Customer, Meter
from cardcenter.customers.services import open_keypad_account
from cardcenter.operators.models import Role
from cardcenter.operators.services import ensure_operator
from cardcenter.sales import ledger
from cardcenter.sales.desk import Desk
from cardcenter.sales.models import Sale
from cardcenter.tariffs.models import TariffKind
from cardcenter.tariffs.services import add_tariff, get_or_create_category
from cardcenter.tokens import services
from cardcenter.tokens.models import TokenRecord
from cardlayout.security.diversify import CardKeys
from cardlayout.sts.identity import BaseDate, EncryptionAlgorithm, KeyGeneration, MeterIdentity
from cardlayout.sts.tid import TID_LIMIT, last_minute_of, tid_of
from cardlayout.sts.vending import store_decoder_key
from cardmeter.keypad import KeypadMeter, KeypadOutcome

PAN = "600727000000000009"
SGC = "123456"
NOW = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)
OPENED = datetime(2026, 1, 29, 12, 0, tzinfo=UTC)
FLAT = (TariffKind.FLAT, {"rate_prices": [10000]})  # 1.0000 a kWh: 0.10 buys one token step


class Hall:
    """One keypad customer, the desk that sells to it, and the meter model."""

    def __init__(
        self,
        db: Database,
        keys: CardKeys,
        *,
        tariff: tuple[TariffKind, dict[str, Any]] = FLAT,
        base_date: int = 2014,
        opened: datetime = OPENED,
        now: datetime = NOW,
        fixed_monthly: int = 0,
        tax_rate: int = 0,
        own_tariff: tuple[TariffKind, dict[str, Any]] | None = None,
    ) -> None:
        self.db, self.keys, self.now = db, keys, now
        self.desk = Desk(db.sessions, keys, operator="alice", site="HQ", clock=lambda: self.now)
        with transaction(db.sessions) as session:
            category = get_or_create_category(session, "residential", "Residential")
            kind, structure = tariff
            add_tariff(session, "home", kind, structure, category="residential",
                       active_from=opened - timedelta(days=1), tax_rate=tax_rate,
                       fixed_monthly=fixed_monthly, now=opened)  # fmt: skip
            own = None
            if own_tariff is not None:
                start = opened - timedelta(days=1)
                version = add_tariff(session, "special", *own_tariff, active_from=start, now=opened)
                own = version.tariff
            customer = open_keypad_account(session, name="Thandi", category_id=category.id,
                                           pan=PAN, sgc=SGC, ti=1, krn=1, kt=2,
                                           base_date=base_date, ea="07", dkga="04",
                                           tariff=own, now=opened)  # fmt: skip
            self.customer_id = customer.id
        identity = MeterIdentity(PAN, SGC, 1, 1, 2, BaseDate(base_date), EncryptionAlgorithm.EA07,
                                 KeyGeneration.DKGA04)  # fmt: skip
        self.meter = KeypadMeter.new(identity, store_decoder_key(keys.store, identity))

    def vend(self, amount: int, request_id: str | None = None) -> dict[str, Any]:
        return services.vend(self.desk, PAN, amount, request_id)

    def enter(self, result: dict[str, Any]) -> list[KeypadOutcome]:
        return [self.meter.enter(token["digits"]) for token in result["tokens"]]

    def enter_all(self, result: dict[str, Any]) -> None:
        outcomes = self.enter(result)
        assert all(o.accepted for o in outcomes), [o.reason for o in outcomes]

    def set_identity(self, **change: Any) -> dict[str, Any]:
        with transaction(self.db.sessions) as session:
            operator = ensure_operator(session, "sue", site="HQ", role=Role.SUPERVISOR)
            return services.record_identity_change(session, operator, PAN, **change)

    def meter_account(self) -> int:
        with self.db.sessions() as session:
            return ledger.balance(session, ledger.meter(self.customer_id))

    def count(self, model: type[Any]) -> int:
        with self.db.sessions() as session:
            return int(session.scalar(select(func.count()).select_from(model)) or 0)


def digits(result: dict[str, Any]) -> list[str]:
    return [token["digits"] for token in result["tokens"]]


# ---------------------------------------------------------------- 1. energy against the books


def test_money_below_a_token_step_reaches_the_meter_with_a_later_vend(
    db: Database, keys: CardKeys
) -> None:
    """At 1.0000 a kWh, 0.15 buys 0.1 kWh and leaves 0.05 no token can carry. It is kept
    apart (``unvended:N``) and the next vend adds it to its credit: three vends of 0.15 give
    the meter 0.1, 0.2 and 0.1 kWh, 0.40 worth, and 0.05 waits for the fourth. meter:N holds
    exactly what the meter was given; paid = meter + unvended."""
    hall = Hall(db, keys)
    carried = []
    for n in range(3):
        result = hall.vend(15, f"small-{n}")
        carried.append(result["energy"]["unvended"])
        hall.enter_all(result)
    assert carried == ["0.05", "0.00", "0.05"]
    on_meter_money = hall.meter.credit * 10  # tenths of a kWh at 0.10 a tenth, minor units
    assert on_meter_money == 40
    assert hall.meter_account() == on_meter_money
    with hall.db.sessions() as session:
        assert ledger.balance(session, ledger.unvended(hall.customer_id)) == 5


@pytest.mark.parametrize(
    "tariff",
    [
        (TariffKind.FLAT, {"rate_prices": [5283]}),
        (TariffKind.STEPPED, {"tier_thresholds": [5005], "tier_prices": [10000, 20000]}),
        (
            TariffKind.TOU,
            {
                "rate_prices": [3000, 6000, 9000],
                "periods": [[0, 0, 1], [8, 0, 2], [18, 0, 3], [22, 0, 1]],
            },
        ),
    ],
    ids=["flat", "stepped", "tou"],
)
def test_each_token_is_what_its_credit_buys_less_a_remainder_under_one_step(
    db: Database, keys: CardKeys, tariff: tuple[TariffKind, dict[str, Any]]
) -> None:
    """Per vend: tendered = fixed + tax + credit; the token's energy is what the credit buys,
    rounded down, and the remainder is worth less than 0.1 kWh at the dearest block."""
    hall = Hall(db, keys, tariff=tariff, tax_rate=1500, fixed_monthly=300)
    dearest = max(tariff[1].get("tier_prices") or tariff[1]["rate_prices"])
    for n, amount in enumerate((5000, 1234, 777, 9999)):
        result = hall.vend(amount, f"v-{n}")
        hall.enter_all(result)
        with db.sessions() as session:
            sale = session.get_one(Sale, result["sale"]["id"])
            assert sale.fixed_charge + sale.tax + sale.credit == amount
            energy = sale.breakdown["energy"]
            assert result["tokens"][-1]["kind"] == "credit"
            token = session.scalars(
                select(TokenRecord).where(
                    TokenRecord.sale_id == sale.id, TokenRecord.kind == "credit"
                )
            ).one()
            assert token.tenths == energy["vended_tenths"] == energy["bought_tenths"]
            # the remainder: under one tenth at the dearest price (0.0001 a kWh, so a tenth
            # costs price / 1000 minor units)
            assert 0 <= energy["unvended"] * 1000 < dearest
    assert hall.meter.credit == sum(r.tenths or 0 for r in _rows(db) if r.kind.value == "credit")


def _rows(db: Database) -> list[TokenRecord]:
    with db.sessions() as session:
        return list(session.scalars(select(TokenRecord).order_by(TokenRecord.id)))


def test_a_tariff_version_change_prices_the_next_vend_at_the_new_price(
    db: Database, keys: CardKeys
) -> None:
    hall = Hall(db, keys)
    assert hall.vend(1000)["energy"]["kwh"] == "10.0"
    with transaction(db.sessions) as session:
        add_tariff(session, "home", TariffKind.FLAT, {"rate_prices": [20000]},
                   active_from=NOW + timedelta(hours=1), now=NOW)  # fmt: skip
    trial_before = services.trial_vend(db.sessions, keys.store, PAN, 1000, NOW)
    assert trial_before["energy"]["kwh"] == "10.0"
    hall.now = NOW + timedelta(hours=1)
    after = hall.vend(1000)
    assert after["energy"]["kwh"] == "5.0" and after["sale"]["tariff"] == "home v2"
    hall.enter_all(after)


# ---------------------------------------------------------------- 2. key changes and retries


def test_a_key_change_goes_out_once_before_the_credit_and_a_retry_replays_it(
    db: Database, keys: CardKeys
) -> None:
    hall = Hall(db, keys)
    hall.enter_all(hall.vend(1000, "before"))
    hall.set_identity(krn=2, ti=7)
    first = hall.vend(1000, "after-change")
    assert [t["kind"] for t in first["tokens"]] == ["key_change", "key_change", "credit"]
    tokens, sales = hall.count(TokenRecord), hall.count(Sale)
    hall.set_identity(krn=3)  # another change recorded before the retry
    hall.now += timedelta(minutes=3)
    again = hall.vend(1000, "after-change")
    assert again["replayed"] and digits(again) == digits(first)
    assert (hall.count(TokenRecord), hall.count(Sale)) == (tokens, sales)
    hall.enter_all(first)
    assert (hall.meter.identity.krn, hall.meter.identity.ti) == (2, 7)
    assert not any(o.accepted for o in hall.enter(again))
    # The change to KRN 3 goes out with the next new request, once.
    nxt = hall.vend(1000, "next")
    assert [t["kind"] for t in nxt["tokens"]] == ["key_change", "key_change", "credit"]
    hall.enter_all(nxt)
    assert hall.meter.identity.krn == 3
    last = hall.vend(1000, "last")
    assert [t["kind"] for t in last["tokens"]] == ["credit"]
    hall.enter_all(last)
    assert hall.meter.credit == 4 * 100
    assert hall.meter_account() == 4 * 1000


# ---------------------------------------------------------------- 3. TIDs


def test_clock_backwards_and_a_reprint_between_vends_keep_tids_rising(
    db: Database, keys: CardKeys
) -> None:
    hall = Hall(db, keys)
    first = hall.vend(1000)
    services.reprint(db.sessions, sale_id=first["sale"]["id"])
    hall.now = NOW - timedelta(minutes=30)  # the desk's clock was put back
    second = hall.vend(1000)
    hall.now = NOW  # same minute as the first again
    third = hall.vend(1000)
    tids = [r["tokens"][-1]["tid"] for r in (first, second, third)]
    assert tids == sorted(set(tids)) and len(tids) == 3
    for result in (first, second, third):
        hall.enter_all(result)
    assert hall.meter.credit == 300


def test_two_vends_in_the_rollover_minute_are_both_accepted(db: Database, keys: CardKeys) -> None:
    """A 1993-based meter gets a token in the 1993 base's last minute (TID FFFFFF). A second
    vend in that same minute cannot take TID FFFFFF + 1, so it rolls over to 2014, and takes
    the TID of the current minute on 2014. The meter re-expresses the first token's TID on
    the new base: the same minute, the same number, so it refuses the paid credit as used."""
    last = last_minute_of(BaseDate.Y1993)
    opened = datetime(2024, 10, 1, tzinfo=UTC)
    hall = Hall(db, keys, base_date=1993, opened=opened, now=last + timedelta(seconds=10))
    first = hall.vend(1000, "a")
    assert first["tokens"][-1]["tid"] == TID_LIMIT - 1 and not first["key_change"]
    hall.now = last + timedelta(seconds=40)
    second = hall.vend(1000, "b")
    assert second["key_change"]
    hall.enter_all(first)
    outcomes = hall.enter(second)
    assert all(o.accepted for o in outcomes), [o.reason for o in outcomes]
    assert hall.meter.credit == 200 and hall.meter_account() == 2000


def test_tokens_pushed_ahead_of_the_clock_before_the_rollover_are_not_refused_after_it(
    db: Database, keys: CardKeys
) -> None:
    """Three vends in 20:14, the minute before the 1993 base runs out: TIDs 20:14, 20:15,
    and the third rolls over: on the 2014 base it takes the minute after 20:15, not the
    clock's 20:14, a minute the meter holds (converted to the new base)."""
    minute = last_minute_of(BaseDate.Y1993) - timedelta(minutes=1)
    hall = Hall(db, keys, base_date=1993, opened=datetime(2024, 10, 1, tzinfo=UTC),
                now=minute + timedelta(seconds=5))  # fmt: skip
    results = [hall.vend(1000, f"r{n}") for n in range(3)]
    assert results[2]["key_change"]
    assert results[2]["tokens"][-1]["tid"] == tid_of(minute, BaseDate.Y2014) + 2
    for result in results[:2]:
        hall.enter_all(result)
    outcomes = hall.enter(results[2])
    assert all(o.accepted for o in outcomes), [o.reason for o in outcomes]
    assert hall.meter.credit == 300


# ---------------------------------------------------------------- 4. fixed charges, own tariffs


def test_an_amount_below_the_fixed_charges_owed_is_refused_and_changes_nothing(
    db: Database, keys: CardKeys
) -> None:
    hall = Hall(db, keys, fixed_monthly=500)  # Jan, Feb, Mar due: 15.00
    with pytest.raises(InvalidInputError, match=r"^amount: .*at least 15\.01"):
        hall.vend(1500)
    # enough for the months, but the credit left buys less than 0.1 kWh: refused too
    with pytest.raises(InvalidInputError, match=r"^amount: .*less than 0.1 kWh"):
        hall.vend(1505)
    assert hall.count(Sale) == hall.count(TokenRecord) == 0
    with db.sessions() as session:
        assert session.get_one(Customer, hall.customer_id).fixed_paid_through is None
        assert ledger.balance(session, ledger.FIXED) == 0
        meter = session.scalars(select(Meter).where(Meter.sts_pan == PAN)).one()
        assert meter.sts_last_tid is None
    result = hall.vend(1510)
    assert result["sale"]["fixed_charge"] == "15.00" and result["energy"]["kwh"] == "0.1"
    hall.enter_all(result)
    with db.sessions() as session:
        assert session.get_one(Customer, hall.customer_id).fixed_paid_through == "2026-03"
        assert ledger.balance(session, ledger.FIXED) == 1500


def test_a_customer_with_a_tariff_of_their_own_is_vended_by_it(
    db: Database, keys: CardKeys
) -> None:
    own = (TariffKind.FLAT, {"rate_prices": [25000]})  # 2.5000 a kWh
    hall = Hall(db, keys, own_tariff=own)
    result = hall.vend(1000)
    assert result["sale"]["tariff"] == "special v1"
    assert result["energy"]["kwh"] == "4.0"
    trial = services.trial_vend(db.sessions, keys.store, PAN, 1000, hall.now)
    assert trial["energy"]["kwh"] == "4.0"
    hall.enter_all(result)
    assert hall.meter.credit == 40


def test_a_1993_meter_first_vended_after_2035_rolls_over_as_the_meter_does(
    db: Database, keys: CardKeys
) -> None:
    """The meter's rollover key change moves it one base date on (1993 to 2014); the centre
    moves its row to the newest base date that has started (2035 here) and counts TIDs from
    it. The meter then reads small 2035-based TIDs against its 2014-based history: with 50
    tokens held, the paid credit is "older than the oldest" and refused."""
    start = datetime(2024, 10, 1, tzinfo=UTC)
    hall = Hall(db, keys, base_date=1993, opened=start, now=start + timedelta(days=1))
    for n in range(50):
        hall.enter_all(hall.vend(100, f"old-{n}"))
    hall.now = datetime(2035, 2, 1, tzinfo=UTC)
    result = hall.vend(1000, "late")
    outcomes = hall.enter(result)
    assert all(o.accepted for o in outcomes), [o.reason for o in outcomes]
    assert hall.meter.credit == 50 * 10 + 100
