"""The channel resolves 61xx and 6Cxx once, for every transport, and traces."""

from __future__ import annotations

import io

import pytest

from cardlayout.apdu import commands
from cardlayout.apdu.apdu import CommandApdu
from cardlayout.apdu.status import SecurityStatusError
from cardlayout.transport.channel import CardChannel


class ScriptedTransport:
    """Answers from a script and records what it was sent."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = [bytes.fromhex(a) for a in answers]
        self.sent: list[bytes] = []

    @property
    def name(self) -> str:
        return "scripted"

    def connect(self) -> bytes:
        return bytes.fromhex("3B0A80680102030405060708")

    def transmit(self, command: bytes) -> bytes:
        self.sent.append(command)
        return self.answers.pop(0)

    def disconnect(self) -> None:
        pass


def test_61xx_fetches_the_data_with_get_response() -> None:
    t = ScriptedTransport(["6110", "00112233445566778899AABBCCDDEEFF9000"])
    ch = CardChannel(t)
    data = ch.send(commands.internal_authenticate(1, bytes(8)), "INTERNAL AUTHENTICATE")
    assert data == bytes.fromhex("00112233445566778899AABBCCDDEEFF")
    assert t.sent[1] == bytes.fromhex("00C0000010")
    assert ch.apdus == 2


def test_61xx_chained_responses_are_joined() -> None:
    t = ScriptedTransport(["6104", "AABB6102", "CCDD9000"])
    ch = CardChannel(t)
    assert ch.send(CommandApdu(0, 0x88, 0, 1, bytes(8), 4), "x") == bytes.fromhex("AABBCCDD")
    assert t.sent[1] == bytes.fromhex("00C0000004")
    assert t.sent[2] == bytes.fromhex("00C0000002")


def test_6cxx_resends_once_with_the_right_le() -> None:
    t = ScriptedTransport(["6C05", "01020304059000"])
    ch = CardChannel(t)
    assert ch.send(commands.read_binary(0, 64, sfi=2), "READ") == bytes.fromhex("0102030405")
    assert t.sent[1] == bytes.fromhex("00B0820005")


def test_error_after_resolution_is_raised_typed() -> None:
    t = ScriptedTransport(["6982"])
    with pytest.raises(SecurityStatusError):
        CardChannel(t).send(commands.read_binary(0, 8, sfi=1), "READ BINARY of parameters")


def test_trace_prints_each_exchange_as_hex_lines() -> None:
    out = io.StringIO()
    t = ScriptedTransport(["6102", "AABB9000"])
    ch = CardChannel(t, trace=out)
    ch.send(CommandApdu(0, 0x88, 0, 1, b"\x01", 2), "x")
    assert out.getvalue().splitlines() == [
        "> 008800010101" + "02",
        "< 6102",
        "> 00C0000002",
        "< AABB9000",
    ]


def test_a_card_that_stops_giving_data_is_a_malformed_file_not_a_hang() -> None:
    from cardlayout.card.snapshot import FileStatus, read_snapshot
    from cardlayout.files import PARAMETERS

    # SELECT DF01 ok; EF01 read gives 10 bytes, then nothing more.
    t = ScriptedTransport(["9000", "00" * 10 + "9000", "9000"] + ["6A82"] * 20)
    snapshot = read_snapshot(CardChannel(t))
    state = snapshot.state(PARAMETERS)
    assert state.status is FileStatus.MALFORMED
    assert state.problem is not None and "ends after 10 of its 64 bytes" in state.problem
