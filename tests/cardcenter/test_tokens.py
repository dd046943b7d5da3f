"""Vending STS tokens at the centre, taken by the keypad meter model (both databases).

The centre's real services make the tokens with the decoder key from the key
store; ``cardmeter``'s :class:`KeypadMeter`, made with the key from the same
store, is the judge: it accepts each token once, across key changes and the
base-date rollover. The books are checked against what was paid.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

import pytest
from centre_support import Database
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from cardcenter.core.db import transaction
from cardcenter.core.errors import ConflictError, InvalidInputError, NotFoundError
from cardcenter.customers.models import Meter
from cardcenter.customers.services import open_account, open_keypad_account
from cardcenter.operators.models import Role
from cardcenter.operators.services import NotAllowedError, ensure_operator
from cardcenter.sales import ledger
from cardcenter.sales.desk import Desk
from cardcenter.sales.models import Sale, SaleKind, SaleStatus
from cardcenter.tariffs import pricing
from cardcenter.tariffs.models import TariffKind, TariffVersion
from cardcenter.tariffs.services import add_tariff, get_or_create_category
from cardcenter.tokens import energy, services
from cardcenter.tokens.models import TokenRecord
from cardlayout.security.diversify import CardKeys
from cardlayout.sts.amount import MAX_AMOUNT, encode_amount
from cardlayout.sts.codec import decode_token
from cardlayout.sts.identity import BaseDate, EncryptionAlgorithm, KeyGeneration, MeterIdentity
from cardlayout.sts.tid import tid_of
from cardlayout.sts.tokens import KeyChangeToken, TransferToken
from cardlayout.sts.vending import store_decoder_key
from cardmeter.keypad import KeypadMeter, KeypadOutcome

PAN = "600727000000000009"
OTHER_PAN = "600727000000000108"
SGC = "123456"
NOW = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)
OPENED = datetime(2026, 1, 29, 12, 0, tzinfo=UTC)
PRICE = 5283  # 0.5283 a kWh
FLAT = (TariffKind.FLAT, {"rate_prices": [PRICE]})

Tariff = tuple[TariffKind, dict[str, Any]]


class Keypad:
    """One customer with a keypad meter at one service hall, and the meter model."""

    def __init__(
        self,
        db: Database,
        keys: CardKeys,
        *,
        tariff: Tariff = FLAT,
        base_date: int = 1993,
        ea: str = "07",
        dkga: str = "04",
        tax_rate: int = 0,
        fixed_monthly: int = 0,
        pan: str = PAN,
        first: bool = True,
    ) -> None:
        self.db, self.keys, self.pan = db, keys, pan
        self.now = NOW
        self.desk = self.desk_for("alice")
        with transaction(db.sessions) as session:
            category = get_or_create_category(session, "residential", "Residential")
            if first:
                kind, structure = tariff
                add_tariff(session, "home", kind, structure, category="residential",
                           active_from=OPENED - timedelta(days=1), tax_rate=tax_rate,
                           fixed_monthly=fixed_monthly, now=OPENED)  # fmt: skip
            customer = open_keypad_account(session, name="Thandi", category_id=category.id,
                                           pan=pan, sgc=SGC, ti=1, krn=1, kt=2,
                                           base_date=base_date, ea=ea, dkga=dkga,
                                           now=OPENED)  # fmt: skip
            self.customer_id = customer.id
        self.identity = MeterIdentity(
            pan, SGC, 1, 1, 2, BaseDate(base_date), EncryptionAlgorithm(ea), KeyGeneration(dkga)
        )
        self.meter = KeypadMeter.new(self.identity, store_decoder_key(keys.store, self.identity))

    def clock(self) -> datetime:
        return self.now

    def desk_for(self, username: str, role: Role | None = None) -> Desk:
        if role is not None:
            with transaction(self.db.sessions) as session:
                ensure_operator(session, username, site="HQ", role=role)
        return Desk(self.db.sessions, self.keys, operator=username, site="HQ", clock=self.clock)

    def vend(self, amount: int, request_id: str | None = None) -> dict[str, Any]:
        return services.vend(self.desk, self.pan, amount, request_id)

    def enter(self, result: dict[str, Any]) -> list[KeypadOutcome]:
        return [self.meter.enter(token["digits"]) for token in result["tokens"]]

    def enter_all(self, result: dict[str, Any]) -> None:
        outcomes = self.enter(result)
        assert all(o.accepted for o in outcomes), [o.reason for o in outcomes]

    def set_identity(self, role: Role = Role.SUPERVISOR, **change: Any) -> dict[str, Any]:
        with transaction(self.db.sessions) as session:
            operator = ensure_operator(session, f"sup-{role}", site="HQ", role=role)
            return services.record_identity_change(session, operator, self.pan, **change)

    def rows(self) -> list[TokenRecord]:
        with self.db.sessions() as session:
            return list(session.scalars(select(TokenRecord).order_by(TokenRecord.id)))

    def count(self, model: type[Any]) -> int:
        with self.db.sessions() as session:
            return int(session.scalar(select(func.count()).select_from(model)) or 0)

    def check_conservation(self) -> None:
        """Per customer: credit paid = meter + consumed + in transit + not yet on a token
        (less than one token step), from the journal."""
        with self.db.sessions() as session:
            paid = sum(
                s.credit
                for s in session.scalars(select(Sale).where(Sale.customer_id == self.customer_id))
            )
            books = sum(
                ledger.balance(session, account(self.customer_id))
                for account in (ledger.meter, ledger.consumed, ledger.transit, ledger.unvended)
            )
            assert ledger.balance(session, ledger.transit(self.customer_id)) == 0
        assert books == paid, f"the journal holds {books}, paid {paid}"


@pytest.fixture
def keypad(db: Database, keys: CardKeys) -> Keypad:
    return Keypad(db, keys)


def digits(result: dict[str, Any]) -> list[str]:
    return [token["digits"] for token in result["tokens"]]


# ---------------------------------------------------------------- the "done when"


def test_a_vend_across_the_rollover_and_a_key_change_is_accepted_once(keypad: Keypad) -> None:
    # The meter counts from 1993, which ran out on 2024-11-24: a rollover key change first.
    first = keypad.vend(10000, "pos-1")
    assert [t["kind"] for t in first["tokens"]] == ["key_change", "key_change", "credit"]
    assert [t["subclass"] for t in first["tokens"][:2]] == [3, 4]
    assert [t["base_date"] for t in first["tokens"]] == [1993, 1993, 2014]
    credit = first["tokens"][2]
    assert credit["tid"] == tid_of(NOW, BaseDate.Y2014)
    assert first["energy"]["kwh"] == "189.2"  # 100.00 / 0.5283 = 189.28..., rounded down
    assert first["sale"]["status"] == "delivered" and first["tables"] == "sample tables"
    keypad.enter_all(first)
    assert keypad.meter.identity.base_date is BaseDate.Y2014
    assert keypad.meter.credit == 1892
    # Once: every token of the batch is refused the second time.
    again = keypad.enter(first)
    assert not any(o.accepted for o in again)
    assert "used already" in again[2].reason
    assert keypad.meter.credit == 1892

    # A recorded change of key revision and tariff index: key change first, under the old key.
    old_key = keypad.meter.decoder_key
    shown = keypad.set_identity(krn=2, ti=7)
    assert shown["change_to_send"] == {"TI": 7, "KRN": 2} and shown["krn"] == 1
    keypad.now += timedelta(days=1)
    second = keypad.vend(5283)
    assert [t["kind"] for t in second["tokens"]] == ["key_change", "key_change", "credit"]
    for token in second["tokens"][:2]:
        section = decode_token(token["digits"], old_key, EncryptionAlgorithm.EA07)
        assert isinstance(section, KeyChangeToken) and not section.ro
    new_identity = MeterIdentity(PAN, SGC, 7, 2, 2, BaseDate.Y2014, EncryptionAlgorithm.EA07,
                                 KeyGeneration.DKGA04)  # fmt: skip
    new_key = store_decoder_key(keypad.keys.store, new_identity)
    assert new_key != old_key
    token = decode_token(second["tokens"][2]["digits"], new_key, EncryptionAlgorithm.EA07)
    assert isinstance(token, TransferToken) and token.credited == 1000
    keypad.enter_all(second)
    assert (keypad.meter.identity.krn, keypad.meter.identity.ti) == (2, 7)
    assert keypad.meter.decoder_key == new_key and keypad.meter.credit == 2892
    assert not any(o.accepted for o in keypad.enter(second))

    # Nothing more to send: the next vend is one token.
    third = keypad.vend(1000)
    assert [t["kind"] for t in third["tokens"]] == ["credit"]
    keypad.enter_all(third)
    keypad.check_conservation()


def test_a_token_works_at_its_own_meter_only(db: Database, keys: CardKeys) -> None:
    mine = Keypad(db, keys, base_date=2014)
    other = Keypad(db, keys, base_date=2014, pan=OTHER_PAN, first=False)
    result = mine.vend(10000)
    refused = other.enter(result)
    assert not refused[0].accepted and "CRC" in refused[0].reason
    mine.enter_all(result)


def test_same_minute_tokens_get_distinct_tids(db: Database, keys: CardKeys) -> None:
    keypad = Keypad(db, keys, base_date=2014)
    minute = tid_of(NOW, BaseDate.Y2014)
    results = [keypad.vend(1000) for _ in range(3)]
    tids = [r["tokens"][-1]["tid"] for r in results]
    assert tids == [minute, minute + 1, minute + 2]
    keypad.now += timedelta(minutes=1)  # the clock has not caught up with the last TID
    assert keypad.vend(1000)["tokens"][0]["tid"] == minute + 3
    keypad.now += timedelta(minutes=10)
    late = keypad.vend(1000)
    assert late["tokens"][0]["tid"] == minute + 11
    for result in [*results, late]:
        keypad.enter_all(result)
    with db.sessions() as session:
        meter_tid = session.scalar(select(func.max(TokenRecord.tid)))
    assert meter_tid == minute + 11


def test_two_desks_racing_on_one_meter_never_share_a_tid(db: Database, keys: CardKeys) -> None:
    keypad = Keypad(db, keys, base_date=2014)
    desks = [keypad.desk, keypad.desk_for("bob")]
    barrier = threading.Barrier(len(desks))
    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def sell(desk: Desk, n: int) -> None:
        barrier.wait()
        for i in range(4):
            try:
                results.append(services.vend(desk, PAN, 1000, f"race-{n}-{i}"))
            except BaseException as exc:  # pragma: no cover - the assertion shows it
                errors.append(exc)

    threads = [threading.Thread(target=sell, args=(d, n)) for n, d in enumerate(desks)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    tids = sorted(r["tokens"][0]["tid"] for r in results)
    assert len(tids) == 8 and len(set(tids)) == 8
    for result in sorted(results, key=lambda r: r["tokens"][0]["tid"]):
        keypad.enter_all(result)
    keypad.check_conservation()


def test_reprint_and_a_repeated_request_give_the_first_tokens(keypad: Keypad) -> None:
    first = keypad.vend(10000, "pos-7")
    sales, tokens = keypad.count(Sale), keypad.count(TokenRecord)
    keypad.now += timedelta(minutes=5)
    again = keypad.vend(10000, "pos-7")
    assert again["replayed"] and not first["replayed"]
    assert {**again, "replayed": False} == first
    assert (keypad.count(Sale), keypad.count(TokenRecord)) == (sales, tokens)
    by_sale = services.reprint(keypad.db.sessions, sale_id=first["sale"]["id"])
    by_request = services.reprint(keypad.db.sessions, request_id="pos-7")
    assert digits(by_sale) == digits(by_request) == digits(first)
    assert by_sale["tokens"] == first["tokens"]

    with pytest.raises(ConflictError, match="use a new request id"):
        keypad.vend(20000, "pos-7")
    with pytest.raises(NotFoundError, match="sale 999"):
        services.reprint(keypad.db.sessions, sale_id=999)
    with pytest.raises(NotFoundError, match="nope"):
        services.reprint(keypad.db.sessions, request_id="nope")
    keypad.enter_all(by_request)
    assert not any(o.accepted for o in keypad.enter(again))
    keypad.check_conservation()


# ---------------------------------------------------------------- identity and key changes


@pytest.mark.parametrize(
    ("ea", "dkga", "sections"),
    [("07", "02", 2), ("07", "04", 2), ("09", "02", 2), ("09", "04", 2), ("11", "04", 4)],
)
def test_every_algorithm_vends_and_changes_keys(
    db: Database, keys: CardKeys, ea: str, dkga: str, sections: int
) -> None:
    keypad = Keypad(db, keys, base_date=2014, ea=ea, dkga=dkga)
    plain = keypad.vend(10000)
    assert len(plain["tokens"]) == 1
    assert plain["tables"] == ("sample tables" if ea == "07" else None)
    keypad.enter_all(plain)
    keypad.set_identity(sgc="654321")
    changed = keypad.vend(10000)
    kinds = [t["kind"] for t in changed["tokens"]]
    assert kinds == ["key_change"] * sections + ["credit"]
    assert [t["what"] for t in changed["tokens"]][:sections] == [
        f"key change, section {n} of {sections}" for n in range(1, sections + 1)
    ]
    keypad.enter_all(changed)
    moved = MeterIdentity(PAN, "654321", 1, 1, 2, BaseDate.Y2014, EncryptionAlgorithm(ea),
                          KeyGeneration(dkga))  # fmt: skip
    assert keypad.meter.decoder_key == store_decoder_key(keys.store, moved)
    assert keypad.meter.credit == 1892 + 1893  # the second token carries what the first could not


def test_a_rollover_and_a_recorded_change_make_one_key_change(keypad: Keypad) -> None:
    keypad.set_identity(krn=3)
    result = keypad.vend(10000)
    assert [t["kind"] for t in result["tokens"]] == ["key_change", "key_change", "credit"]
    section = decode_token(result["tokens"][0]["digits"], keypad.meter.decoder_key,
                           EncryptionAlgorithm.EA07)  # fmt: skip
    assert isinstance(section, KeyChangeToken) and section.ro and section.krn == 3
    keypad.enter_all(result)
    assert keypad.meter.identity.krn == 3
    assert keypad.meter.identity.base_date is BaseDate.Y2014


def test_a_dkga02_meter_needs_a_new_key_revision_to_roll_over(db: Database, keys: CardKeys) -> None:
    # DKGA02 keys do not depend on the base date: a rollover alone would bring the same key.
    keypad = Keypad(db, keys, base_date=1993, dkga="02")
    with pytest.raises(ConflictError, match="record a new key revision"):
        keypad.vend(10000)
    assert keypad.count(Sale) == keypad.count(TokenRecord) == 0
    keypad.set_identity(krn=2)
    result = keypad.vend(10000)
    keypad.enter_all(result)
    assert keypad.meter.identity.base_date is BaseDate.Y2014 and keypad.meter.credit == 1892


def test_identity_changes_need_a_supervisor_and_valid_fields(keypad: Keypad) -> None:
    with pytest.raises(NotAllowedError, match="cashier; this needs a supervisor"):
        keypad.set_identity(role=Role.CASHIER, krn=2)
    with pytest.raises(InvalidInputError, match=r"^KRN: "):
        keypad.set_identity(krn=10)
    with pytest.raises(InvalidInputError, match=r"^SGC: "):
        keypad.set_identity(sgc="12345")
    with pytest.raises(InvalidInputError, match="at least one"):
        keypad.set_identity()
    shown = keypad.set_identity(krn=2)
    assert shown["change_to_send"] == {"KRN": 2}
    assert keypad.set_identity(krn=1)["change_to_send"] is None  # back to what the meter has


# ---------------------------------------------------------------- engineering tokens


def test_engineering_tokens_for_supervisors_only(db: Database, keys: CardKeys) -> None:
    keypad = Keypad(db, keys, base_date=2014)
    keypad.enter_all(keypad.vend(10000))
    cashier = keypad.desk_for("carl", Role.CASHIER)
    with pytest.raises(NotAllowedError, match="carl is a cashier; this needs a supervisor"):
        services.engineering_token(cashier, PAN, "clear-credit")
    assert keypad.count(TokenRecord) == 1
    supervisor = keypad.desk_for("sue", Role.SUPERVISOR)

    limit = services.engineering_token(supervisor, PAN, "set-power-limit", 5000, "eng-1")
    assert limit["tokens"][0]["what"] == "set maximum power limit 5000 W"
    again = services.engineering_token(supervisor, PAN, "set-power-limit", 5000, "eng-1")
    assert digits(again) == digits(limit) and again["replayed"]
    with pytest.raises(ConflictError, match="use a new request id"):
        services.engineering_token(supervisor, PAN, "set-power-limit", 6000, "eng-1")
    keypad.enter_all(limit)
    assert keypad.meter.max_power == 5000

    keypad.meter.set_tamper()
    keypad.enter_all(services.engineering_token(supervisor, PAN, "clear-tamper"))
    assert keypad.meter.tamper is False
    clear = services.engineering_token(supervisor, PAN, "clear-credit")
    assert clear["tokens"][0]["what"] == "clear credit (all registers)"
    keypad.enter_all(clear)
    assert keypad.meter.credit == 0
    tids = [row.tid for row in keypad.rows()]
    assert len(set(tids)) == len(tids) == 4  # one TID sequence for every kind

    with pytest.raises(InvalidInputError, match=r"^value: .*needs a value"):
        services.engineering_token(supervisor, PAN, "set-power-limit")
    with pytest.raises(InvalidInputError, match=r"^value: .*takes no value"):
        services.engineering_token(supervisor, PAN, "clear-tamper", 3)
    with pytest.raises(InvalidInputError, match=r"^value: "):
        services.engineering_token(supervisor, PAN, "set-power-limit", 70000)
    with pytest.raises(InvalidInputError, match=r"^kind: "):
        services.engineering_token(supervisor, PAN, "self-destruct")
    keypad.check_conservation()


def test_an_engineering_token_sends_a_recorded_key_change_first(
    db: Database, keys: CardKeys
) -> None:
    keypad = Keypad(db, keys, base_date=2014)
    keypad.set_identity(kt=1)
    supervisor = keypad.desk_for("sue", Role.SUPERVISOR)
    result = services.engineering_token(supervisor, PAN, "set-power-limit", 3000)
    assert [t["kind"] for t in result["tokens"]] == ["key_change", "key_change", "engineering"]
    keypad.enter_all(result)
    assert keypad.meter.identity.kt == 1 and keypad.meter.max_power == 3000


# ---------------------------------------------------------------- pricing into energy


LADDER = (TariffKind.STEPPED, {"tier_thresholds": [5005], "tier_prices": [10000, 20000]})
"""1.0000 a kWh up to 50.05 kWh a month, 2.0000 above."""


def test_a_stepped_tariff_crosses_its_block_within_one_vend(db: Database, keys: CardKeys) -> None:
    keypad = Keypad(db, keys, base_date=2014, tariff=LADDER)
    first = keypad.vend(5000)  # 50.00 at 1.0000
    assert first["energy"]["kwh"] == "50.0"
    # 0.05 kWh left in the first block (0.05), then 0.95 / 2.0000 = 0.475 kWh: 0.525, down to 0.5
    second = keypad.vend(100)
    assert second["energy"] == {
        "kwh": "0.5",
        "bought_kwh": "0.5",
        "month_before_kwh": "50.0",
        "unvended": "0.05",
        "basis": "monthly blocks 1.0000 to 50.05 kWh, 2.0000",
    }
    third = keypad.vend(1000)  # all in the dear block
    assert third["energy"]["kwh"] == "5.0" and third["energy"]["month_before_kwh"] == "50.5"
    keypad.now = datetime(2026, 4, 1, 0, 0, tzinfo=UTC)  # a new month: the cheap block again
    fourth = keypad.vend(1000)
    assert fourth["energy"]["kwh"] == "10.0" and fourth["energy"]["month_before_kwh"] == "0.0"
    for result in (first, second, third, fourth):
        keypad.enter_all(result)
    assert keypad.meter.credit == 500 + 5 + 50 + 100
    keypad.check_conservation()


TOU = (
    TariffKind.TOU,
    {"rate_prices": [3000, 6000, 9000], "periods": [[0, 0, 1], [8, 0, 2], [18, 0, 3], [22, 0, 1]]},
)
"""Day average (8 h x 0.30 + 10 h x 0.60 + 4 h x 0.90 + 2 h x 0.30) / 24 = 0.5250."""


def test_a_tou_tariff_vends_at_the_day_average_at_any_hour(db: Database, keys: CardKeys) -> None:
    keypad = Keypad(db, keys, base_date=2014, tariff=TOU)
    for hour in (3, 12, 19):
        keypad.now = NOW.replace(hour=hour)
        result = keypad.vend(1050)
        assert result["energy"]["kwh"] == "20.0"
        assert result["energy"]["basis"] == "TOU day average 0.5250 a kWh"
        keypad.enter_all(result)


def test_tou_plus_stepped_adds_the_block_surcharge(db: Database, keys: CardKeys) -> None:
    both = (
        TariffKind.TOU_STEPPED,
        {"rate_prices": [3000, 6000], "periods": [[0, 0, 1], [12, 0, 2]],
         "tier_thresholds": [1000], "tier_prices": [0, 500]},
    )  # fmt: skip
    keypad = Keypad(db, keys, base_date=2014, tariff=both)
    # average 0.45; 10 kWh at 0.45 = 4.50, then 0.50 buys 1 kWh at 0.50
    assert keypad.vend(500)["energy"]["kwh"] == "11.0"


def test_a_vend_that_waited_for_another_on_its_meter_does_not_charge_its_months_again(
    db: Database, keys: CardKeys
) -> None:
    """The second of two vends racing on one meter waits for the first to commit; it must
    then price with the customer as the first left it (the months paid), not as it read it
    before waiting. On PostgreSQL it read the customer's old row and charged them twice."""
    keypad = Keypad(db, keys, base_date=2014, fixed_monthly=500)
    other = keypad.desk_for("bob")
    first_inside, second_waits = threading.Event(), threading.Event()
    holder: list[int] = []
    results: dict[str, dict[str, Any]] = {}

    def hold(session: Session, _result: dict[str, Any]) -> None:
        if db.backend == "postgresql":
            holder.append(
                session.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
            )
        first_inside.set()
        assert second_waits.wait(10), "the second vend never came to wait"

    def sell(name: str, desk: Desk, record: Any = None) -> None:
        results[name] = services.vend(desk, PAN, 5000, name, record=record)

    first = threading.Thread(target=sell, args=("first", keypad.desk, hold))
    first.start()
    assert first_inside.wait(10)
    second = threading.Thread(target=sell, args=("second", other))
    second.start()
    if db.backend == "postgresql":  # the second vend waits for the first one's locks
        deadline = time.monotonic() + 10
        with db.engine.connect() as conn:
            waiting = text(
                "SELECT count(*) FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))"
            )
            while not conn.execute(waiting, {"pid": holder[0]}).scalar_one():
                assert time.monotonic() < deadline, "the second vend did not wait for the first"
                conn.rollback()
                time.sleep(0.02)
    else:  # SQLite: its transaction waits for the write lock at its BEGIN
        time.sleep(0.3)
    second_waits.set()
    first.join()
    second.join()
    assert set(results) == {"first", "second"}
    assert results["first"]["sale"]["fixed_charge"] == "15.00"
    assert results["second"]["sale"]["fixed_charge"] == "0.00"
    assert results["second"]["sale"]["months"] == []
    with db.sessions() as session:
        assert ledger.balance(session, ledger.FIXED) == 1500
    for name in ("first", "second"):
        keypad.enter_all(results[name])
    keypad.check_conservation()


def test_a_meter_that_cannot_be_sold_to_is_refused_by_the_vend_in_a_sentence(
    db: Database, keys: CardKeys
) -> None:
    """The vend's locked look-up joins the customer; without one the sentence is still the
    unlocked look-up's."""
    keypad = Keypad(db, keys, base_date=2014)
    with transaction(db.sessions) as session:
        session.scalars(select(Meter).where(Meter.sts_pan == PAN)).one().customer_id = None
    with pytest.raises(ConflictError, match="no longer in service"):
        keypad.vend(1000)
    with pytest.raises(NotFoundError, match="no keypad meter has PAN"):
        services.vend(keypad.desk, OTHER_PAN, 1000)


def test_fixed_charges_and_tax_as_for_cards_and_the_journal_balances(
    db: Database, keys: CardKeys
) -> None:
    keypad = Keypad(db, keys, base_date=2014, tax_rate=1300, fixed_monthly=500)
    result = keypad.vend(11500)
    with db.sessions() as session:
        version = session.scalars(select(TariffVersion)).one()
        months = pricing.months_due(None, OPENED, NOW)
        quote = pricing.quote(version, 11500, months)
    assert months == ("2026-01", "2026-02", "2026-03")
    assert result["sale"] == {
        "id": result["sale"]["id"],
        "status": "delivered",
        "tariff": "home v1",
        "tendered": "115.00",
        "fixed_charge": pricing.format_money(quote.fixed_charge),
        "months": list(months),
        "tax": pricing.format_money(quote.tax),
        "credit": pricing.format_money(quote.credit),
    }
    assert quote.fixed_charge == 1500 and quote.credit == 8850
    assert result["energy"]["kwh"] == "167.5"  # 88.50 / 0.5283
    second = keypad.vend(1000)  # the months are paid: no fixed charge
    assert second["sale"]["fixed_charge"] == "0.00"
    with db.sessions() as session:
        sales = list(session.scalars(select(Sale).order_by(Sale.id)))
        assert [s.kind for s in sales] == [SaleKind.TOKEN, SaleKind.TOKEN]
        assert all(s.status is SaleStatus.DELIVERED and s.card_id is None for s in sales)
        # what a token could not carry (under a step) waits on unvended:N for the next one
        assert ledger.balance(session, ledger.meter(keypad.customer_id)) + ledger.balance(
            session, ledger.unvended(keypad.customer_id)
        ) == sum(s.credit for s in sales)
        assert ledger.balance(session, ledger.TAX) == sum(s.tax for s in sales)
        assert ledger.balance(session, ledger.FIXED) == 1500
        assert ledger.balance(session, ledger.till("HQ")) == -(11500 + 1000)
    keypad.check_conservation()


def test_a_large_vend_carries_the_largest_amount_not_above_what_was_paid(
    db: Database, keys: CardKeys
) -> None:
    cheap = (TariffKind.FLAT, {"rate_prices": [1000]})  # 0.1000 a kWh: 1 minor unit a tenth
    keypad = Keypad(db, keys, base_date=2014, tariff=cheap)
    result = keypad.vend(170007)  # pays for 17000.7 kWh; tokens step by 1 kWh there
    assert result["energy"]["bought_kwh"] == "17000.7"
    assert result["energy"]["kwh"] == "17000.4" and result["energy"]["unvended"] == "0.03"
    keypad.enter_all(result)
    assert keypad.meter.credit == 170004  # the encoder had nothing left to round up
    with pytest.raises(InvalidInputError, match=r"^amount: .*more than one token carries"):
        keypad.vend(MAX_AMOUNT + 1000)


def test_representable_floor_known_answers() -> None:
    assert energy.representable_floor(16383) == (16383, 16383)
    assert energy.representable_floor(16385) == (16384, 1 << 14)
    assert energy.representable_floor(170007)[0] == 170004
    assert energy.representable_floor(180219)[0] == 180214  # top of the 10-tenth steps
    assert energy.representable_floor(180224)[0] == 180224
    assert energy.representable_floor(0) == (0, 0)


@given(st.integers(min_value=0, max_value=MAX_AMOUNT))
def test_representable_floor_is_the_largest_amount_not_above(tenths: int) -> None:
    value, field = energy.representable_floor(tenths)
    assert value <= tenths
    assert encode_amount(value) == (field, value)  # representable: no rounding up
    if tenths < MAX_AMOUNT:
        assert encode_amount(value + 1)[1] > tenths  # the next one up is above


@given(
    st.integers(min_value=1, max_value=10**8 - 1),
    st.integers(min_value=1, max_value=10**7),
    st.integers(min_value=0, max_value=10**6),
)
def test_energy_is_rounded_down_and_never_given_away(price: int, credit: int, before: int) -> None:
    blocks = [energy.Block(5000, Fraction(price)), energy.Block(None, Fraction(price * 2))]
    budget = Fraction(credit * pricing.PRICE_SCALE)
    got = energy.affordable(blocks, budget, before)
    assert energy.cost(blocks, before, got) <= budget
    assert energy.cost(blocks, before, got + 1) > budget


# ---------------------------------------------------------------- bad input


def test_malformed_pan_and_amount_are_refused_with_the_field(keypad: Keypad) -> None:
    for pan in ("12345", "6007270000000000x9", "6007270000000000091"):
        with pytest.raises(InvalidInputError, match=r"^PAN: .*18 digits"):
            services.vend(keypad.desk, pan, 1000)
    with pytest.raises(NotFoundError, match="no keypad meter has PAN 600727000000000999"):
        services.vend(keypad.desk, "600727000000000999", 1000)
    for amount in (0, -5):
        with pytest.raises(InvalidInputError, match=r"^amount: "):
            keypad.vend(amount)
    with pytest.raises(InvalidInputError, match=r"^amount: .*less than 0.1 kWh"):
        keypad.vend(5)
    with pytest.raises(InvalidInputError, match=r"^request id: "):
        keypad.vend(1000, "x" * 65)
    assert keypad.count(Sale) == keypad.count(TokenRecord) == 0
    keypad.check_conservation()
    # grouped digits as printed are fine
    assert services.vend(keypad.desk, "6007 2700 0000 0000 09", 1000)["meter"] == PAN


def test_keypad_accounts_check_the_identity(db: Database, keys: CardKeys) -> None:
    Keypad(db, keys)

    def open_(**identity: Any) -> None:
        fields: dict[str, Any] = {"pan": OTHER_PAN, "sgc": SGC, "ti": 1, "krn": 1, "kt": 2}
        with transaction(db.sessions) as session:
            open_keypad_account(session, name="X", category_id=1, **{**fields, **identity})

    cases: dict[str, dict[str, Any]] = {
        "PAN": {"pan": "1234"},
        "SGC": {"sgc": "12345"},
        "TI": {"ti": 100},
        "KRN": {"krn": 0},
        "KT": {"kt": "x"},
        "base date": {"base_date": 2000},
        "EA": {"ea": "08"},
        "DKGA": {"ea": "11", "dkga": "02"},
    }
    for field, bad in cases.items():
        with pytest.raises(InvalidInputError, match=f"^{field}: "):
            open_(**bad)
    with pytest.raises(ConflictError, match=f"PAN {PAN} is registered already"):
        open_(pan=PAN)
    with transaction(db.sessions) as session:
        open_account(session, name="Card", meter_no="000012345678", category_id=1)
    with pytest.raises(NotFoundError):  # a card meter has no PAN
        services.vend(Desk(db.sessions, keys), "000000000000012345", 1000)
