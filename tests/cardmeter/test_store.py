"""The meter's state file: atomic, checksummed, and the previous good copy kept."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cardlayout.files import EventCode
from cardmeter.registers import MeterState, PendingLoad
from cardmeter.store import StateError, StateStore

METER = "000012345678"


def test_round_trip_of_every_register(tmp_path: Path) -> None:
    state = MeterState(meter_no=METER, remaining=-250, residue=9999, customer_no="310101000042")
    state.card_serial = bytes.fromhex("5A000000000000A1")
    state.pending = PendingLoad(state.card_serial, 3, 5000)
    state.record(EventCode.COVER_OPEN, state.clock)
    store = StateStore(tmp_path / "meter.json")
    store.save(state)
    assert StateStore(tmp_path / "meter.json").load() == state


def test_damaged_newest_file_falls_back_to_the_previous(tmp_path: Path) -> None:
    path = tmp_path / "meter.json"
    store = StateStore(path)
    store.save(MeterState(meter_no=METER, remaining=100))
    store.save(MeterState(meter_no=METER, remaining=200))
    assert StateStore(path).load().remaining == 200
    doc = json.loads(path.read_text())
    doc["state"]["remaining"] = 1_000_000  # changed behind the checksum's back
    path.write_text(json.dumps(doc))
    assert StateStore(path).load().remaining == 100
    path.write_text(path.read_text()[:40])  # a torn file
    assert StateStore(path).load().remaining == 100


def test_missing_and_hopeless_states_are_sentences(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="cardmeter init"):
        StateStore(tmp_path / "none.json").load()
    path = tmp_path / "meter.json"
    path.write_text("garbage")
    with pytest.raises(StateError, match="damaged"):
        StateStore(path).load()


def test_saves_continue_the_sequence_after_a_reload(tmp_path: Path) -> None:
    path = tmp_path / "meter.json"
    StateStore(path).save(MeterState(meter_no=METER, remaining=1))
    store = StateStore(path)
    store.load()
    store.save(MeterState(meter_no=METER, remaining=2))
    assert StateStore(path).load().remaining == 2


def cardmeter(*args: str) -> subprocess.CompletedProcess[str]:
    exe = str(Path(sys.executable).with_name("cardmeter"))
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=120, check=False)


def test_killed_at_any_moment_the_meter_keeps_its_credit(tmp_path: Path) -> None:
    """SIGKILL `cardmeter run` at several moments: every time the state loads,
    credit is conserved (purchased = remaining + used) and energy only grows."""
    from cardlayout.files import PARAMETERS, TARIFF_SET_1, UserType

    path = tmp_path / "meter.json"
    params = PARAMETERS.examples[0].value
    import dataclasses

    state = MeterState(
        meter_no=params.meter_no,
        customer_no=params.customer_no,
        remaining=50_000,
        cumulative_purchased=50_000,
        parameters_frame=PARAMETERS.encode(
            dataclasses.replace(params, user_type=UserType.SINGLE_RATE, load_limit=None)
        ),
        current_tariff_frame=TARIFF_SET_1.encode(TARIFF_SET_1.examples[1].value),
    )
    store = StateStore(path)
    store.save(state)
    exe = str(Path(sys.executable).with_name("cardmeter"))
    last_quantity = 0
    for delay in (0.3, 0.5, 0.8, 1.1):
        proc = subprocess.Popen([exe, "run", str(path), "--days", "30"], stderr=subprocess.PIPE)
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        after = StateStore(path).load()
        assert after.cumulative_purchased == after.remaining + after.cumulative_used
        assert after.cumulative_quantity >= last_quantity
        last_quantity = after.cumulative_quantity
    assert last_quantity > 0
    # At the next power-up the meter logs that its power was lost.
    cardmeter("run", str(path), "--days", "1")
    events = StateStore(path).load().events
    assert any(e.code is EventCode.POWER_LOSS for e in events)
    assert not StateStore(path).load().running
