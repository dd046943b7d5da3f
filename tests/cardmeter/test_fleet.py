"""The numpy fleet: deterministic, conserving, and the scalar meter bill for bill.

The decisive test is :func:`test_fleet_is_the_scalar_meter`: meters of a
fleet are replayed through :func:`cardmeter.metering.advance` (and
:mod:`cardmeter.credit` / :func:`cardmeter.insertion.commit` for the card
visits) with the fleet's own recorded quantities, and every register must
come out the same, then the write-back each would put on the card.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cardlayout.errors import SecurityError
from cardlayout.files import (
    HISTORY,
    WRITE_BACK,
    DayPeriod,
    EventCode,
    InsertionResult,
    TariffSet,
    UserType,
)
from cardlayout.security.diversify import CardKeys
from cardlayout.security.keystore import init_master_keys, open_keystore
from cardlayout.security.mac import MacLabel, verify_data_mac
from cardmeter import credit
from cardmeter.credit import TripReason
from cardmeter.fleet import (
    DEFAULT_TARIFFS,
    Fleet,
    TariffPlan,
    WriteBackRecord,
    read_records,
    tier_cost,
    write_records,
)
from cardmeter.insertion import commit, report
from cardmeter.metering import advance
from cardmeter.pricing import price_parts
from cardmeter.registers import MeterState

MIDNIGHT = datetime(2026, 3, 1, tzinfo=UTC)

MONEY_AND_ENERGY = (
    "rate_prices",
    "tier_thresholds",
    "tier_prices",
    "alarm1",
    "alarm2",
    "overdraft_limit",
    "close_allow",
    "top_up",
    "remaining",
    "residue",
    "cumulative_purchased",
    "cumulative_used",
    "cumulative_quantity",
    "quantity_by_rate",
    "settlement_quantity",
    "month_quantity",
    "frozen",
    "last_purchase_amount",
)


def make_keys(path: Path) -> CardKeys:
    store = open_keystore(str(path), passphrase="fleet tests", create=True, scrypt_n=2**10)
    init_master_keys(store)
    return CardKeys(store)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> CardKeys:
    return make_keys(tmp_path_factory.mktemp("keys") / "keys.json")


def arrays(fleet: Fleet) -> Iterator[tuple[str, object]]:
    """Every attribute of the fleet, numpy arrays and plain values alike (not private ones)."""
    for name, value in sorted(vars(fleet).items()):
        if not name.startswith("_"):
            yield name, value


def same_fleet(a: Fleet, b: Fleet) -> None:
    for (name, x), (_, y) in zip(arrays(a), arrays(b), strict=True):
        if isinstance(x, np.ndarray):
            assert isinstance(y, np.ndarray)
            assert x.dtype == y.dtype, name
            np.testing.assert_array_equal(x, y, err_msg=name)
        elif name != "plans":
            assert x == y, name


# -- determinism ---------------------------------------------------------------------------


def test_a_seed_gives_the_same_fleet_and_the_same_run() -> None:
    a = Fleet.build(400, 5, MIDNIGHT)
    b = Fleet.build(400, 5, MIDNIGHT)
    same_fleet(a, b)
    run_a, run_b = a.run(3), b.run(3)
    assert run_a == run_b
    same_fleet(a, b)
    c = Fleet.build(400, 6, MIDNIGHT)
    c.run(3)
    assert not np.array_equal(a.remaining, c.remaining)
    assert a.meter_no != c.meter_no


def test_a_run_split_in_two_is_the_same_run() -> None:
    whole = Fleet.build(300, 9, MIDNIGHT)
    whole.run(5)
    split = Fleet.build(300, 9, MIDNIGHT)
    split.run(2)
    split.run(3)
    same_fleet(whole, split)


def test_the_default_mix() -> None:
    fleet = Fleet.build(20_000, 1, MIDNIGHT)
    kinds = np.bincount(fleet.user_type, minlength=5)[1:] / fleet.n
    assert kinds == pytest.approx([0.70, 0.20, 0.07, 0.03], abs=0.015)
    assert len(set(fleet.meter_no)) == len(set(fleet.customer_no)) == fleet.n
    assert len({fleet.serial(i) for i in range(fleet.n)}) == fleet.n
    # every meter starts normal, closed, above alarm 1
    assert fleet.relay_closed.all()
    assert (fleet.remaining > fleet.alarm1).all()
    assert (fleet.cumulative_purchased - fleet.cumulative_used == fleet.remaining).all()


def test_build_refuses_what_it_cannot_bill() -> None:
    off_quarter = TariffSet(rate_prices=(1, 2), periods=(DayPeriod(0, 0, 1), DayPeriod(8, 10, 2)))
    with pytest.raises(ValueError, match="quarter hour"):
        Fleet.build(1, 1, MIDNIGHT, [TariffPlan("x", UserType.TOU, off_quarter, 1.0)])
    with pytest.raises(ValueError, match="tier prices"):
        Fleet.build(1, 1, MIDNIGHT, [TariffPlan("x", UserType.STEPPED, TariffSet(), 1.0)])
    with pytest.raises(ValueError, match="15-minute"):
        Fleet.build(1, 1, MIDNIGHT + timedelta(minutes=5))
    fleet = Fleet.build(1, 1, MIDNIGHT)
    with pytest.raises(ValueError, match="multiple of 15"):
        fleet.run(1, 20)
    with pytest.raises(ValueError, match="integers"):
        fleet.advance([1.5])
    with pytest.raises(ValueError, match="negative"):
        fleet.advance([-1])
    with pytest.raises(ValueError, match="before the fleet's clock"):
        fleet.insert_cards(MIDNIGHT - timedelta(minutes=1))


# -- conservation --------------------------------------------------------------------------


def test_money_and_quantity_are_conserved_and_integer() -> None:
    fleet = Fleet.build(500, 3, MIDNIGHT)
    for name in MONEY_AND_ENERGY:
        assert getattr(fleet, name).dtype == np.int64, name
    for _day in range(8):
        used, quantity = fleet.cumulative_used.copy(), fleet.cumulative_quantity.copy()
        purchased = fleet.cumulative_purchased.copy()
        run = fleet.run(1, buy_chance=0.4, record=True)
        # for every meter: what was bought less what was used is what remains
        assert (fleet.cumulative_purchased - fleet.cumulative_used == fleet.remaining).all()
        # charges and quantities are never negative; the residue is a fraction of a minor unit
        assert (fleet.cumulative_used >= used).all()
        assert (fleet.cumulative_quantity >= quantity).all()
        assert ((fleet.residue >= 0) & (fleet.residue < 10_000)).all()
        assert (fleet.settlement_quantity >= 0).all() and (fleet.month_quantity >= 0).all()
        assert (fleet.quantity_by_rate.sum(axis=1) == fleet.cumulative_quantity).all()
        # the run's totals are the registers' movements
        assert run.charged == int((fleet.cumulative_used - used).sum())
        assert run.quantity == int((fleet.cumulative_quantity - quantity).sum())
        assert run.purchased == int((fleet.cumulative_purchased - purchased).sum())
        for name in MONEY_AND_ENERGY:
            assert getattr(fleet, name).dtype == np.int64, name
    loads = [q for i in range(fleet.n) for _, q in fleet.consumption(i)]
    assert min(loads) >= 0 and all(isinstance(q, int) for q in loads)
    assert fleet.overdraft_enabled.any() and (fleet.remaining < 0).any()


def test_an_open_relay_consumes_nothing() -> None:
    fleet = Fleet.build(400, 4, MIDNIGHT)
    fleet.run(4, visit_chance=0)  # nobody comes: alarm-2 trips stay open
    tripped = ~fleet.relay_closed
    assert tripped.sum() > 10
    before = {
        name: getattr(fleet, name).copy()
        for name in ("remaining", "residue", "cumulative_used", "cumulative_quantity")
    }
    fleet.run(2, visit_chance=0, record=True)
    assert (~fleet.relay_closed[tripped]).all()
    for name, value in before.items():
        np.testing.assert_array_equal(getattr(fleet, name)[tripped], value[tripped], name)
    offered = sum(q for i in np.flatnonzero(tripped) for _, q in fleet.consumption(int(i)))
    assert offered > 0  # the load was there; the meter did not serve it
    closed = fleet.relay_closed & ~tripped
    assert (fleet.cumulative_quantity[closed] > before["cumulative_quantity"][closed]).all()


# -- pricing -------------------------------------------------------------------------------

_STEPPED = TariffSet(tier_thresholds=(1000, 2000), tier_prices=(4883, 5383, 7883))


def test_a_stepped_interval_is_split_at_the_thresholds() -> None:
    plan = TariffPlan("stepped", UserType.STEPPED, _STEPPED, 1.0)
    fleet = Fleet.build(6, 1, MIDNIGHT, [plan])
    fleet.remaining[:] = 10**9
    fleet.cumulative_purchased[:] = fleet.cumulative_used + fleet.remaining
    fleet.settlement_quantity[:] = [900, 900, 0, 999, 1000, 0]
    fleet.residue[:] = [0, 0, 9999, 0, 0, 5116]
    used = fleet.cumulative_used.copy()
    fleet.advance([300, 1300, 1, 1, 1, 1])
    # thresholds 10.00 and 20.00 kWh; prices 0.4883, 0.5383, 0.7883 per kWh
    # meter 0: 900 + 300 crosses 1000: 100 x 4883 + 200 x 5383
    #          = 488_300 + 1_076_600 = 1_564_900 -> charge 156, residue 4_900
    # meter 1: 900 + 1300 crosses both: 100 x 4883 + 1000 x 5383 + 200 x 7883
    #          = 488_300 + 5_383_000 + 1_576_600 = 7_447_900 -> charge 744, residue 7_900
    # meter 2: residue 9_999 + 1 x 4883 = 14_882 -> charge 1, residue 4_882
    # meter 3: the unit that reaches 1000 exactly is still tier 0: 4883 -> 0, residue 4_883
    # meter 4: at 1000 the next unit is tier 1: 5383 -> 0, residue 5_383
    # meter 5: residue 5_116 + 4_883 = 9_999: not yet a minor unit -> 0, residue 9_999
    assert list(fleet.cumulative_used - used) == [156, 744, 1, 0, 0, 0]
    assert list(fleet.residue) == [4_900, 7_900, 4_882, 4_883, 5_383, 9_999]
    assert list(fleet.settlement_quantity) == [1200, 2200, 1, 1000, 1001, 1]


def test_tou_plus_stepped_is_the_sum_of_both_prices() -> None:
    tariff = TariffSet(
        rate_prices=(5683, 2883),
        periods=(DayPeriod(8, 0, 1), DayPeriod(22, 0, 2)),
        tier_thresholds=(18_000,),
        tier_prices=(0, 500),
    )
    fleet = Fleet.build(2, 1, MIDNIGHT, [TariffPlan("both", UserType.TOU_STEPPED, tariff, 1.0)])
    fleet.remaining[:] = 10**9
    fleet.residue[:] = 0
    fleet.settlement_quantity[:] = 17_900
    used, by_rate = fleet.cumulative_used.copy(), fleet.quantity_by_rate.copy()
    fleet.advance([300, 300], 60)  # 00:00..01:00: valley (rate 2, from 22:00 the day before)
    # 300 x 2883 + (100 x 0 + 200 x 500) = 864_900 + 100_000 = 964_900 -> 96, residue 4_900
    assert list(fleet.cumulative_used - used) == [96, 96]
    assert list(fleet.residue) == [4_900, 4_900]
    assert (fleet.quantity_by_rate - by_rate)[:, :3].tolist() == [[0, 300, 0]] * 2
    fleet.clock = MIDNIGHT + timedelta(hours=9)
    fleet.residue[:] = 0
    used = fleet.cumulative_used.copy()
    fleet.advance([100, 100], 60)  # 09:00: peak (rate 1), all in tier 1 now
    # 100 x 5683 + 100 x 500 = 618_300 -> 61, residue 8_300
    assert list(fleet.cumulative_used - used) == [61, 61]
    assert list(fleet.residue) == [8_300, 8_300]
    assert (fleet.quantity_by_rate - by_rate)[:, :3].tolist() == [[100, 300, 0]] * 2


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(1, 10**6), min_size=0, max_size=6, unique=True),
    st.lists(st.integers(0, 99_999_999), min_size=7, max_size=7),
    st.integers(0, 2 * 10**6),
    st.integers(0, 2 * 10**6),
)
def test_tier_cost_is_the_scalar_split(
    thresholds: list[int], prices: list[int], settled: int, quantity: int
) -> None:
    thresholds.sort()
    tariff = TariffSet(
        tier_thresholds=tuple(thresholds), tier_prices=tuple(prices[: len(thresholds) + 1])
    )
    parts = price_parts(UserType.STEPPED, tariff, MIDNIGHT, settled, quantity)
    expected = sum(part.quantity * part.price for part in parts)
    assert int(tier_cost(settled, quantity, tariff.tier_thresholds, tariff.tier_prices)) == expected


# -- credit states ----------------------------------------------------------------------

_UNIT_PRICE = TariffPlan("unit price", UserType.SINGLE_RATE, TariffSet(rate_prices=(10_000,)), 1.0)
"""1.0000 per kWh: 0.01 kWh costs exactly one minor unit, so a quantity lands
``remaining`` exactly where a test wants it (on a boundary, or one off)."""

_levels = st.integers(0, 3000)
_steps = st.lists(
    st.one_of(
        st.tuples(st.just("use"), st.integers(0, 3000)),
        st.tuples(st.just("card"), st.sampled_from([0, 0, 1, 500, 1000, 2000, 3001, 8000])),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=250, deadline=None)
@given(_levels, _levels, _levels, _levels, st.integers(-3000, 6000), _steps)
def test_credit_states_at_their_boundaries_are_the_scalar_meters(
    alarm1: int,
    alarm2: int,
    limit: int,
    close_allow: int,
    remaining: int,
    steps: list[tuple[str, int]],
) -> None:
    fleet = Fleet.build(1, 1, MIDNIGHT, [_UNIT_PRICE])
    fleet.alarm1[:], fleet.alarm2[:] = alarm1, alarm2
    fleet.overdraft_limit[:], fleet.close_allow[:] = limit, close_allow
    fleet.residue[:] = 0
    fleet.remaining[:] = remaining
    fleet.cumulative_purchased[:] = fleet.cumulative_used + remaining
    state = fleet.meter_state(0)
    for kind, value in steps:
        if kind == "use":
            advance(state, fleet.clock, value)
            fleet.advance([value])
        else:
            credit.card_inserted(state, fleet.clock)
            if value:
                commit(state, state.last_purchase_count + 1, value, fleet.clock)
            fleet.insert_cards(fleet.clock, [0], [value])
        assert registers(state) == registers(fleet.meter_state(0)), (kind, value)


# -- write-backs -----------------------------------------------------------------------------


def test_write_backs_decode_and_their_macs_verify(keys: CardKeys, tmp_path: Path) -> None:
    fleet = Fleet.build(40, 8, MIDNIGHT)
    fleet.run(3, buy_chance=0.3)
    written_at = fleet.clock + timedelta(minutes=7, seconds=30)
    records = list(fleet.write_backs(keys, written_at))
    assert [r.meter_no for r in records] == fleet.meter_no
    for i, record in enumerate(records):
        wb = WRITE_BACK.decode(record.write_back)
        history = HISTORY.decode(record.history)
        assert wb is not None and history is not None
        assert record.write_back == WRITE_BACK.encode(wb)  # one value, one encoding
        assert (wb.meter_no, wb.customer_no) == (fleet.meter_no[i], fleet.customer_no[i])
        assert record.card_serial == fleet.serial(i)
        assert wb.written_at == written_at
        assert wb.insertion_result is InsertionResult.NOTHING_TO_LOAD
        assert wb.remaining_amount - wb.overdraft_used == fleet.remaining[i]
        assert wb.purchase_count == fleet.purchase_count[i]
        assert history.cumulative_purchased - history.cumulative_used == fleet.remaining[i]
        assert history.cumulative_quantity == fleet.cumulative_quantity[i]
        key = keys.writeback_key(wb.meter_no)
        identity = (wb.meter_no, wb.customer_no, record.card_serial)
        verify_data_mac(key, MacLabel.WRITE_BACK, WRITE_BACK.mac_message(wb), *identity, wb.mac)
        body = HISTORY.mac_message(history)
        verify_data_mac(key, MacLabel.HISTORY, body, *identity, history.mac)
    # another utility's keys, or a write-back copied to another card, do not verify
    other = make_keys(tmp_path / "other.json")
    wb = WRITE_BACK.decode(records[0].write_back)
    assert wb is not None
    with pytest.raises(SecurityError):
        verify_data_mac(
            other.writeback_key(wb.meter_no),
            MacLabel.WRITE_BACK,
            WRITE_BACK.mac_message(wb),
            wb.meter_no,
            wb.customer_no,
            records[0].card_serial,
            wb.mac,
        )
    with pytest.raises(SecurityError):
        verify_data_mac(
            keys.writeback_key(wb.meter_no),
            MacLabel.WRITE_BACK,
            WRITE_BACK.mac_message(wb),
            wb.meter_no,
            wb.customer_no,
            records[1].card_serial,
            wb.mac,
        )


def test_records_round_trip_as_json_lines(keys: CardKeys, tmp_path: Path) -> None:
    fleet = Fleet.build(25, 2, MIDNIGHT)
    fleet.run(1)
    records = list(fleet.write_backs(keys, fleet.clock))
    path = tmp_path / "records.jsonl"
    seen: list[int] = []
    assert write_records(path, records, seen.append, every=10) == 25
    assert seen == [10, 20, 25]
    assert list(read_records(path)) == records
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 25
    doc = json.loads(lines[0])
    assert set(doc) == {"meter_no", "customer_no", "card_serial", "write_back", "history"}
    assert doc["meter_no"] == fleet.meter_no[0]
    assert bytes.fromhex(doc["card_serial"]) == fleet.serial(0)
    assert bytes.fromhex(doc["write_back"]) == records[0].write_back
    assert WriteBackRecord.from_json(doc) == records[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["records.jsonl"]  # no temporary left
    path.write_text(lines[0] + "\n{}\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2"):
        list(read_records(path))


# -- the scalar model ------------------------------------------------------------------------


def replay(fleet: Fleet, i: int, state: MeterState, minutes: int) -> None:
    """Feed meter ``i``'s recorded visits and quantities to the scalar model."""
    visits = {visit.when: visit for visit in fleet.visits(i)}
    for start, quantity in fleet.consumption(i):
        visit = visits.pop(start, None)
        if visit is not None:
            credit.card_inserted(state, start)
            if visit.amount:
                commit(state, state.last_purchase_count + 1, visit.amount, start)
        advance(state, start, quantity, minutes)
    assert not visits


def registers(state: MeterState) -> dict[str, object]:
    doc = state.to_json()
    doc["events"] = doc["events"][-8:]  # the fleet keeps the newest 8, as the card carries
    return doc


@pytest.mark.parametrize(
    ("meters", "start", "days", "minutes"),
    [
        # month boundary and the monthly settlement of 1 April 00h
        (90, datetime(2026, 3, 12, tzinfo=UTC), 24, 15),
        # year boundary: the yearly settlement of 1 January 00h, hourly intervals
        (60, datetime(2025, 12, 26, 6, tzinfo=UTC), 12, 60),
    ],
)
def test_fleet_is_the_scalar_meter(
    keys: CardKeys, meters: int, start: datetime, days: int, minutes: int
) -> None:
    fleet = Fleet.build(meters, 21, start)
    assert set(fleet.plan) == set(range(len(DEFAULT_TARIFFS)))
    states = [fleet.meter_state(i) for i in range(meters)]
    fleet.run(days, minutes, buy_chance=0.3, record=True)
    for i, state in enumerate(states):
        replay(fleet, i, state, minutes)
        assert registers(state) == registers(fleet.meter_state(i)), (i, fleet.meter_no[i])

    # the run went through every credit state, or the comparison proves little
    details = {
        int(event.detail)
        for i in range(meters)
        for event in fleet.events(i)
        if event.code is EventCode.RELAY_TRIP
    }
    assert details >= {TripReason.ALARM2, TripReason.ZERO, TripReason.OFF}
    assert fleet.overdraft_enabled.any()

    # and the card: the scalar meter's write-back at the same insertion
    written_at = fleet.clock + timedelta(minutes=3)
    records = list(fleet.write_backs(keys, written_at))
    for i, state in enumerate(states):
        credit.card_inserted(state, written_at)
        write_back, history = report(state, InsertionResult.NOTHING_TO_LOAD, written_at)
        got_wb = WRITE_BACK.decode(records[i].write_back)
        got_history = HISTORY.decode(records[i].history)
        assert got_wb is not None and got_history is not None
        assert dataclasses.replace(got_wb, mac=write_back.mac) == write_back
        assert dataclasses.replace(got_history, mac=history.mac) == history
        assert registers(state) == registers(fleet.meter_state(i))
