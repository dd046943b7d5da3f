"""The PC/SC transport and the vpcd bridge, end to end through the real pcscd.

A tiny fake card (enough of a T=0 card to exercise 61xx and 6Cxx) is put in
the vpcd reader with :class:`VpcdBridge` and spoken to with
:class:`PcscTransport`, so every byte goes through pcscd and the vpcd driver
as it will for the centre and the meter. The first tests pin the vpcd wire
protocol against a stand-in for vpcd, without pcscd.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from cardlayout.apdu import commands
from cardlayout.apdu.apdu import CommandApdu
from cardlayout.errors import CardRemovedError, NoCardError, NoReaderError, NoServiceError
from cardlayout.transport import pcsc as pcsc_module
from cardlayout.transport.channel import CardChannel
from cardlayout.transport.pcsc import (
    PcscTransport,
    list_readers,
    resolve_reader,
    wait_for_card,
    wait_for_removal,
)
from cardlayout.vcard import vpcd
from cardlayout.vcard.vpcd import VpcdBridge, VpcdHandler

pcsc = pytest.mark.pcsc

SERIAL = bytes.fromhex("8600000012345678")
ATR = bytes.fromhex("3B0A8068") + SERIAL
OK = b"\x90\x00"
INS_ECHO = 0xEE
INS_BUG = 0xFF
CHALLENGE = bytes(range(0x10, 0x20))
BINARY = b"\x68hello"[:5]


def power_lost_type() -> type[Exception]:
    """``cardlayout.vcard.cos.PowerLost``: what a torn card raises."""
    from cardlayout.vcard.cos import PowerLost

    return PowerLost


class FakeCard:
    """Just enough of a T=0 card to drive the transport and the channel.

    SELECT answers 9000; INS EE echoes its data; INTERNAL AUTHENTICATE answers
    61 10 and hands 16 bytes to GET RESPONSE; READ BINARY wants Le=5 and says
    6C 05 otherwise; UPDATE BINARY tears when :attr:`tear` is set; INS FF is a
    bug in the card OS.
    """

    def __init__(self) -> None:
        self.powered = False
        self.tear = False
        self.pending = b""
        self.commands: list[bytes] = []
        self.power_events: list[str] = []

    @property
    def atr(self) -> bytes:
        return ATR

    def power_on(self) -> bytes:
        self.powered = True
        self.pending = b""
        self.power_events.append("on")
        return ATR

    def power_off(self) -> None:
        self.powered = False
        self.power_events.append("off")

    def process(self, apdu: bytes) -> bytes:
        self.commands.append(apdu)
        ins = apdu[1]
        le = (apdu[4] or 256) if len(apdu) == 5 else None
        if ins == 0xA4:
            return OK
        if ins == INS_ECHO:
            return apdu[5 : 5 + apdu[4]] + OK if len(apdu) > 5 else OK
        if ins == 0x88:
            self.pending = CHALLENGE
            return bytes((0x61, len(CHALLENGE)))
        if ins == 0xC0:
            data, self.pending = self.pending, b""
            return data[: le or 0] + OK
        if ins == 0xB0:
            return BINARY + OK if le == len(BINARY) else bytes((0x6C, len(BINARY)))
        if ins == 0xD6:
            if self.tear:
                self.tear = False
                raise power_lost_type()("torn during UPDATE BINARY")
            return OK
        if ins == INS_BUG:
            raise RuntimeError("a bug in the card OS")
        return b"\x6d\x00"


def echo(data: bytes) -> bytes:
    return CommandApdu(0x80, INS_ECHO, 0, 0, data).to_bytes()


SELECT_MF = commands.select(0x3F00).to_bytes()


# -- the vpcd protocol, against a stand-in for vpcd --------------------------


class FakeVpcd:
    """The server side of vpcd: accepts one card, sends messages, reads answers."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.conn: socket.socket | None = None

    def accept(self) -> socket.socket:
        self.server.settimeout(5)
        self.conn, _ = self.server.accept()
        self.conn.settimeout(5)
        return self.conn

    def send(self, payload: bytes) -> None:
        assert self.conn is not None
        # vpcd writes the length and the payload separately; so does this.
        self.conn.sendall(len(payload).to_bytes(2, "big"))
        self.conn.sendall(payload)

    def receive(self) -> bytes | None:
        assert self.conn is not None
        return vpcd.read_message(self.conn)

    def ask(self, payload: bytes) -> bytes | None:
        self.send(payload)
        return self.receive()

    def take(self, bridge: VpcdBridge) -> socket.socket:
        """Insert ``bridge``'s card as vpcd does: accept it at a presence poll."""

        def accept_and_poll() -> None:
            self.accept()
            self.send(b"\x04")

        poller = threading.Thread(target=accept_and_poll)
        poller.start()
        bridge.insert()  # returns once the card has seen vpcd's first message
        poller.join(5)
        assert self.receive() == ATR
        assert self.conn is not None
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.server.close()


@pytest.fixture
def fake_vpcd() -> Iterator[FakeVpcd]:
    server = FakeVpcd()
    yield server
    server.close()


def test_handler_control_messages() -> None:
    card = FakeCard()
    handler = VpcdHandler(card)
    assert handler.handle(b"\x04") == ATR
    assert handler.handle(b"\x01") is None and card.powered
    assert handler.handle(b"\x00") is None and not card.powered
    assert handler.handle(b"\x02") is None and card.power_events == ["on", "off", "off", "on"]
    assert handler.handle(b"\x03") is None  # unknown control: ignored
    assert handler.handle(SELECT_MF) == OK


def test_frame_and_read_message_across_fragments() -> None:
    left, right = socket.socketpair()
    with left, right:
        message = vpcd.frame(b"\x00\xa4\x00\x0c\x02\x3f\x00")
        for byte in message:  # one byte per segment: recv must loop
            left.sendall(bytes((byte,)))
        assert vpcd.read_message(right) == b"\x00\xa4\x00\x0c\x02\x3f\x00"
        left.close()
        assert vpcd.read_message(right) is None
    with pytest.raises(ValueError, match="65535"):
        vpcd.frame(bytes(0x10000))


def test_bridge_serves_vpcd_and_pulls_on_a_tear(fake_vpcd: FakeVpcd) -> None:
    card = FakeCard()
    bridge = VpcdBridge(card, port=fake_vpcd.port)
    try:
        fake_vpcd.take(bridge)
        assert bridge.is_inserted
        fake_vpcd.send(b"\x01")
        assert fake_vpcd.ask(echo(b"abc")) == b"abc" + OK
        assert fake_vpcd.ask(bytes((0x80, INS_BUG, 0, 0))) == b"\x6f\x00"  # bug: card stays
        card.tear = True
        assert fake_vpcd.ask(b"\x00\xd6\x00\x00\x01\x68") is None  # connection closed
        deadline = time.monotonic() + 5
        while bridge.is_inserted and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not bridge.is_inserted
        assert bridge.power_lost
        assert not card.powered
    finally:
        bridge.remove()


def test_bridge_remove_waits_for_the_presence_poll(fake_vpcd: FakeVpcd) -> None:
    card = FakeCard()
    bridge = VpcdBridge(card, port=fake_vpcd.port)
    conn = fake_vpcd.take(bridge)
    fake_vpcd.send(b"\x01")
    assert fake_vpcd.ask(b"\x04") == ATR  # ATR after power on: answered
    remover = threading.Thread(target=bridge.remove)
    remover.start()
    time.sleep(0.1)
    assert remover.is_alive(), "remove() should wait for vpcd's next presence poll"
    assert fake_vpcd.ask(SELECT_MF) == OK  # commands before the poll are still served
    assert fake_vpcd.ask(b"\x04") is None  # the poll: the card is pulled instead
    remover.join(5)
    assert not remover.is_alive()
    assert not bridge.is_inserted and not bridge.power_lost and not card.powered
    conn.close()


def test_serve_forever_returns_when_the_card_is_removed(fake_vpcd: FakeVpcd) -> None:
    card = FakeCard()
    bridge = VpcdBridge(card, port=fake_vpcd.port)
    server = threading.Thread(target=bridge.serve_forever)
    server.start()
    fake_vpcd.accept()
    assert fake_vpcd.ask(b"\x04") == ATR
    remover = threading.Thread(target=bridge.remove)
    remover.start()
    for _ in range(100):  # polls until the removal is seen: the card stops answering
        if fake_vpcd.ask(b"\x04") is None:
            break
        time.sleep(0.01)
    else:
        pytest.fail("the card was not pulled at a presence poll")
    remover.join(5)
    server.join(5)
    assert not server.is_alive() and not remover.is_alive()
    assert not bridge.is_inserted and not card.powered


def test_bridge_into_an_occupied_reader_says_so(
    fake_vpcd: FakeVpcd, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vpcd, "ACCEPT_TIMEOUT", 0.2)
    bridge = VpcdBridge(FakeCard(), port=fake_vpcd.port)  # never accepted, never polled
    with pytest.raises(NoReaderError, match="another card is in it"):
        bridge.insert()
    assert not bridge.is_inserted


def test_bridge_without_vpcd_names_the_service() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free, and nothing listens on it
    with pytest.raises(NoServiceError, match="pcscd is not running"):
        VpcdBridge(FakeCard(), port=port).insert()


# -- reader choice and the service, without a card ------------------------------

READERS = ["Virtual PCD 00 00", "Virtual PCD 00 01", "ACS ACR39U ICC Reader 01 00"]


def test_the_vpcd_reader_of_a_port_is_named_by_its_slot() -> None:
    assert pcsc_module.vpcd_reader_name(READERS, 35963) == "Virtual PCD 00 00"
    assert pcsc_module.vpcd_reader_name(READERS, 35964) == "Virtual PCD 00 01"
    assert pcsc_module.vpcd_reader_name(READERS, 35965) is None
    assert pcsc_module.vpcd_reader_name(READERS[2:], 35963) is None


def test_waiting_for_the_empty_vpcd_reader_asks_pcscd_about_its_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[tuple[str, float | None]] = []

    def wait_for_removal(reader: str, timeout: float | None) -> bool:
        asked.append((reader, timeout))
        return reader.endswith("01")

    monkeypatch.setattr(pcsc_module, "list_readers", lambda: READERS)
    monkeypatch.setattr(pcsc_module, "wait_for_removal", wait_for_removal)
    assert pcsc_module.wait_until_vpcd_empty(35964, 2.0) is True
    assert pcsc_module.wait_until_vpcd_empty(35963, 2.0) is False  # pcscd still shows a card
    assert asked == [("Virtual PCD 00 01", 2.0), ("Virtual PCD 00 00", 2.0)]
    assert (
        pcsc_module.wait_until_vpcd_empty(35999, 2.0) is None
    )  # no such reader: nothing to wait for

    def no_service() -> list[str]:
        raise NoServiceError("the PC/SC service (pcscd) is not running")

    monkeypatch.setattr(pcsc_module, "list_readers", no_service)
    assert pcsc_module.wait_until_vpcd_empty(35963, 2.0) is None
    assert len(asked) == 2


def test_resolve_reader_by_name_piece_and_index() -> None:
    assert resolve_reader("Virtual PCD 00 01", READERS) == "Virtual PCD 00 01"
    assert resolve_reader("acr39", READERS) == "ACS ACR39U ICC Reader 01 00"
    assert resolve_reader(1, READERS) == "Virtual PCD 00 01"
    with pytest.raises(NoReaderError, match="ambiguous"):
        resolve_reader("Virtual", READERS)
    with pytest.raises(NoReaderError, match=r"no reader number 3.*'Virtual PCD 00 00'"):
        resolve_reader(3, READERS)
    with pytest.raises(NoReaderError, match="no readers"):
        resolve_reader(0, [])


def test_importing_the_transport_does_not_need_pyscard() -> None:
    code = (
        "import sys, cardlayout, cardlayout.transport, cardlayout.transport.pcsc, "
        "cardlayout.vcard.vpcd; assert 'smartcard' not in sys.modules, 'pyscard imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_no_pcscd_is_a_clear_no_service_error() -> None:
    # libpcsclite finds pcscd through this socket; point it at nothing.
    env = dict(os.environ, PCSCLITE_CSOCK_NAME="/nonexistent/pcscd.comm")
    code = (
        "from cardlayout.errors import NoServiceError\n"
        "from cardlayout.transport.pcsc import PcscTransport, list_readers\n"
        "for call in (list_readers, PcscTransport(0, timeout=0.1).connect):\n"
        "    try:\n"
        "        call()\n"
        "    except NoServiceError as exc:\n"
        "        print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    expected = "the PC/SC service (pcscd) is not running; start it with `pcscd`\n"
    assert result.stdout == expected * 2


# -- through pcscd and vpcd -----------------------------------------------------


@pytest.fixture
def empty_reader(vpcd_reader: str) -> str:
    """The vpcd reader, checked empty: a card left by another test would mislead."""
    assert wait_for_removal(vpcd_reader, 3.0), f"a card was left in {vpcd_reader!r}"
    return vpcd_reader


@pytest.fixture
def card() -> FakeCard:
    return FakeCard()


@pytest.fixture
def bridge(empty_reader: str, card: FakeCard) -> Iterator[VpcdBridge]:
    with VpcdBridge(card) as inserted:
        yield inserted


@pytest.fixture
def transport(bridge: VpcdBridge, vpcd_reader: str) -> Iterator[PcscTransport]:
    with PcscTransport(vpcd_reader, timeout=5.0) as opened:
        yield opened


@pcsc
def test_readers_are_listed(pcscd: list[str]) -> None:
    readers = list_readers()
    assert set(pcscd) <= set(readers)


@pcsc
def test_connect_returns_the_atr(bridge: VpcdBridge, vpcd_reader: str) -> None:
    # by a piece of the name, case ignored: the slot suffix is enough here
    transport = PcscTransport(vpcd_reader[-5:].lower(), timeout=5.0)
    try:
        assert transport.connect() == ATR
        assert transport.name == vpcd_reader
        assert transport.connect() == ATR  # already open: same card, no new session
    finally:
        transport.disconnect()
        transport.disconnect()  # twice is fine


@pcsc
def test_apdus_round_trip(transport: PcscTransport, card: FakeCard) -> None:
    for size in (0, 1, 2, 100, 255):
        data = bytes(i & 0xFF for i in range(size))
        assert transport.transmit(echo(data)) == data + OK
    assert card.commands[-1] == echo(bytes(i & 0xFF for i in range(255)))


@pcsc
def test_61xx_is_fetched_with_get_response(transport: PcscTransport, card: FakeCard) -> None:
    channel = CardChannel(transport)
    data = channel.send(commands.internal_authenticate(0x01, bytes(8)), "INTERNAL AUTHENTICATE")
    assert data == CHALLENGE
    assert channel.apdus == 2
    assert card.commands[-1] == commands.get_response(0x10).to_bytes()


@pcsc
def test_6cxx_is_resent_with_the_right_le(transport: PcscTransport, card: FakeCard) -> None:
    channel = CardChannel(transport)
    assert channel.send(commands.read_binary(0, 256), "READ BINARY") == BINARY
    assert channel.apdus == 2
    assert card.commands[-1][-1] == len(BINARY)


@pcsc
def test_removing_the_card_mid_session(transport: PcscTransport, bridge: VpcdBridge) -> None:
    assert transport.transmit(SELECT_MF) == OK
    bridge.remove()
    assert not bridge.is_inserted
    with pytest.raises(CardRemovedError, match="removed"):
        transport.transmit(SELECT_MF)
    assert not transport.connected
    with pytest.raises(NoCardError):  # and pcscd knows the reader is empty
        PcscTransport(transport.name, timeout=0.1).connect()


@pcsc
def test_a_torn_card_is_pulled_and_can_be_reinserted(
    transport: PcscTransport, bridge: VpcdBridge, card: FakeCard, vpcd_reader: str
) -> None:
    card.tear = True
    with pytest.raises(CardRemovedError):
        transport.transmit(b"\x00\xd6\x00\x00\x01\x68")
    assert bridge.power_lost and not bridge.is_inserted and not card.powered
    assert not transport.connected  # the dead handle is dropped: connect() opens anew
    bridge.insert()  # put it back, as the operator does
    assert transport.connect() == ATR
    assert transport.transmit(SELECT_MF) == OK
    assert card.powered and not bridge.power_lost


@pcsc
def test_a_card_os_bug_answers_6f00_and_keeps_the_card(
    transport: PcscTransport, bridge: VpcdBridge
) -> None:
    assert transport.transmit(bytes((0x80, INS_BUG, 0, 0))) == b"\x6f\x00"
    assert bridge.is_inserted
    assert transport.transmit(SELECT_MF) == OK


@pcsc
def test_unknown_reader_names_the_readers(pcscd: list[str]) -> None:
    with pytest.raises(NoReaderError) as raised:
        PcscTransport("No Such Reader", timeout=0.1).connect()
    message = str(raised.value)
    assert "'No Such Reader'" in message
    for name in pcscd:
        assert repr(name) in message


@pcsc
def test_no_card_within_the_timeout(empty_reader: str) -> None:
    started = time.monotonic()
    with pytest.raises(NoCardError, match="no card"):
        PcscTransport(empty_reader, timeout=0.3).connect()
    assert 0.25 < time.monotonic() - started < 3.0
    with pytest.raises(NoCardError):
        wait_for_card(empty_reader, 0.1)


@pcsc
def test_exclusive_session_keeps_others_off(transport: PcscTransport, vpcd_reader: str) -> None:
    with pytest.raises(NoReaderError, match="held by another program"):
        PcscTransport(vpcd_reader, timeout=0.3).connect()
    # watching the reader needs no access to the card
    assert wait_for_card(vpcd_reader, 1.0) == ATR
    assert not wait_for_removal(vpcd_reader, 0.1)


@pcsc
def test_wait_for_card_and_removal(empty_reader: str, card: FakeCard) -> None:
    bridge = VpcdBridge(card)
    inserter = threading.Timer(0.2, bridge.insert)
    inserter.start()
    try:
        assert wait_for_card(empty_reader, 5.0) == ATR
        remover = threading.Timer(0.2, bridge.remove)
        remover.start()
        assert wait_for_removal(empty_reader, 5.0)
        remover.join()
    finally:
        inserter.join()
        bridge.remove()


@pcsc
def test_latency_per_apdu(transport: PcscTransport, capsys: pytest.CaptureFixture[str]) -> None:
    """Guards against the ~40 ms delayed-ACK stall per APDU (see vcard/vpcd.py)."""
    count = 50
    transport.transmit(SELECT_MF)
    started = time.perf_counter()
    for _ in range(count):
        transport.transmit(SELECT_MF)
    per_apdu_ms = (time.perf_counter() - started) / count * 1000
    with capsys.disabled():
        print(f"\nPC/SC through pcscd + vpcd: {per_apdu_ms:.3f} ms per APDU ({count} APDUs)")
    assert per_apdu_ms < 20, f"{per_apdu_ms:.1f} ms per APDU: delayed ACK is back?"
