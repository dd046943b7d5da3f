"""Attach a virtual card to pcscd through the vsmartcard ``vpcd`` reader driver.

pcscd loads vpcd (Debian package ``vsmartcard-vpcd``) as the driver of the
readers "Virtual PCD 00 00" and "Virtual PCD 00 01"; vpcd listens on ports
35963 and 35964, one per reader. A program that connects to a port *is* a
card in that reader, and closing the connection pulls it out. (vpcd binds
every interface, not only loopback: on a machine others can reach, keep
those ports behind a firewall, or anyone can insert a card.)
Every program on the machine then sees the virtual card through PC/SC, as it
would see a real one: the point of the exercise, since the centre's PC/SC code
path is then tested without a card in hand.

The wire protocol (both ways): a 2-byte big-endian length, then that many
bytes. A 1-byte payload from vpcd is a control message: ``00`` power off,
``01`` power on, ``02`` reset (none of them answered), ``04`` get ATR
(answered with the ATR); anything longer is a command APDU, answered with the
response APDU. vpcd also sends ``04`` on its own every few hundred
milliseconds: that is how it polls whether the card is still there.

Latency. vpcd writes the length and the payload with two ``send`` calls. With
Nagle's algorithm on its side, the payload waits until the length segment is
acknowledged, and a client with Linux's default delayed ACK acknowledges only
after about 40 ms: every APDU then costs ~40 ms (DESIGN.md section 4 measured
45 ms). The bridge therefore sets ``TCP_QUICKACK`` before *every* ``recv``
(Linux clears the flag again after it has been used, so once is not enough),
which acknowledges at once and lets the payload go; and it sends its own
answers as one segment (length and payload in one ``sendall``, with
``TCP_NODELAY``) so vpcd is never left waiting for a tail either. Measured
through pcscd: about 0.1-0.2 ms per APDU instead of ~40 ms, which is what
makes end-to-end tests through pcscd affordable.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import threading
import time
from typing import Protocol

from cardlayout.errors import NoReaderError, NoServiceError

logger = logging.getLogger(__name__)

VPCD_HOST = "127.0.0.1"
VPCD_PORT = 35963
"""Port of the first vpcd reader ("Virtual PCD 00 00"); the second is 35964."""

POWER_OFF = 0x00
POWER_ON = 0x01
RESET = 0x02
GET_ATR = 0x04

CONNECT_TIMEOUT = 3.0
JOIN_TIMEOUT = 5.0

#: How long :meth:`VpcdBridge.remove` waits for vpcd's next presence poll
#: before pulling the card regardless (pcscd polls every 0.4 s).
REMOVE_TIMEOUT = 2.0

#: How long :meth:`VpcdBridge.insert` waits for vpcd to take the card (its
#: first presence poll comes within 0.4 s unless another card is in the reader).
ACCEPT_TIMEOUT = 2.0

#: pcscd asks vpcd whether the card is present every 0.4 s
#: (pcsc-lite's PCSCLITE_STATUS_POLL_RATE), plus a margin.
PCSCD_POLL_GAP = 0.5

#: Status word for an exception inside the card operating system: ISO/IEC
#: 7816-4 "no precise diagnosis", as a real card answers after an internal fault.
SW_NO_PRECISE_DIAGNOSIS = b"\x6f\x00"


class CardOS(Protocol):
    """What the bridge needs of a card (met by ``cardlayout.vcard.cos.VirtualCard``).

    ``process`` raises ``cardlayout.vcard.cos.PowerLost`` when the card loses
    power in the middle of a command; the bridge then pulls the card.
    """

    @property
    def atr(self) -> bytes: ...

    def power_on(self) -> bytes: ...

    def power_off(self) -> None: ...

    def process(self, apdu: bytes) -> bytes: ...


class VpcdHandler:
    """The vpcd protocol over any :class:`CardOS`, without sockets or threads.

    One message in, the answer out (``None`` for the messages vpcd does not
    expect an answer to). Exceptions of the card, ``PowerLost`` included,
    pass through: what they mean for the connection is the caller's business.
    """

    def __init__(self, card: CardOS) -> None:
        self.card = card

    def handle(self, message: bytes) -> bytes | None:
        if len(message) != 1:
            return self.card.process(message) if message else None
        control = message[0]
        if control == POWER_OFF:
            self.card.power_off()
        elif control == POWER_ON:
            self.card.power_on()
        elif control == RESET:
            # A warm reset for a card in Python: RAM state gone, files kept.
            self.card.power_off()
            self.card.power_on()
        elif control == GET_ATR:
            return self.card.atr
        else:
            logger.warning("vpcd sent unknown control byte %02X; ignored", control)
        return None


def frame(payload: bytes) -> bytes:
    """A vpcd message: 2-byte big-endian length, then the payload."""
    if len(payload) > 0xFFFF:
        raise ValueError(f"a vpcd message holds at most 65535 bytes, not {len(payload)}")
    return len(payload).to_bytes(2, "big") + payload


def _quickack(sock: socket.socket) -> None:
    """Acknowledge the next segment at once (see the module docstring: ~40 ms)."""
    quickack = getattr(socket, "TCP_QUICKACK", None)  # Linux only
    if quickack is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, quickack, 1)


def recv_exactly(sock: socket.socket, count: int) -> bytes | None:
    """Exactly ``count`` bytes, or ``None`` if the peer closed first.

    TCP delivers a stream, not messages: the length and the payload may come
    in any number of pieces, so a single ``recv`` is never enough.
    """
    chunks = bytearray()
    while len(chunks) < count:
        _quickack(sock)
        chunk = sock.recv(count - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


def read_message(sock: socket.socket) -> bytes | None:
    """One vpcd message's payload, or ``None`` when the connection closed."""
    header = recv_exactly(sock, 2)
    if header is None:
        return None
    length = int.from_bytes(header, "big")
    if length == 0:
        return b""
    return recv_exactly(sock, length)


def write_message(sock: socket.socket, payload: bytes) -> None:
    """Send one message as a single segment (length and payload together)."""
    sock.sendall(frame(payload))


def _is_power_lost(exc: BaseException) -> bool:
    """Whether ``exc`` is ``cardlayout.vcard.cos.PowerLost``.

    Looked up in ``sys.modules`` rather than imported: if the card operating
    system was never imported, no exception can be its ``PowerLost``, and this
    module stays usable (and importable) with any :class:`CardOS`.
    """
    cos = sys.modules.get("cardlayout.vcard.cos")
    power_lost = getattr(cos, "PowerLost", None)
    return isinstance(power_lost, type) and isinstance(exc, power_lost)


class VpcdBridge:
    """A virtual card in a vpcd reader: :meth:`insert` and :meth:`remove` it.

    ``insert`` connects to vpcd and answers it from a daemon thread, so a
    test can insert the card and then talk to it through PC/SC in the same
    process; ``serve_forever`` does the same in the calling thread, for the
    ``cardlayout vcard attach`` command.

    When the card raises ``PowerLost`` (an armed tear fired) the bridge closes
    the connection, which is what pulling a card out looks like to pcscd: the
    PC/SC call in flight gets no answer (``PcscTransport`` raises
    ``CardRemovedError``) and the reader is reported empty. The card
    stays out until the next :meth:`insert`, as a torn real card stays dead
    until someone puts it back. :attr:`power_lost` then tells why it ended.

    Whenever the card leaves the reader (removed, torn, pcscd gone) it is
    powered off, in the serving thread, so the next insertion starts with the
    card's RAM state cleared as a real card's is.

    Only one card can sit in a vpcd reader: vpcd serves one connection per
    port, so :meth:`insert` into an occupied reader raises
    :class:`NoReaderError`; :meth:`serve_forever` may instead wait in vpcd's
    queue until the other card is removed.
    """

    def __init__(self, card: CardOS, *, host: str = VPCD_HOST, port: int = VPCD_PORT) -> None:
        self.card = card
        self.host = host
        self.port = port
        self.handler = VpcdHandler(card)
        self.power_lost = False
        """Whether the card left the reader last time because it lost power."""
        self.error: BaseException | None = None
        """What ended the serving thread, if it was not a removal or a tear."""
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._served_out = threading.Event()
        self._accepted = threading.Event()
        self._serving_ident: int | None = None
        self._stopping = False
        self._torn_at: float | None = None

    @property
    def is_inserted(self) -> bool:
        """Whether the card is in the reader (connected to vpcd, being served)."""
        return self._sock is not None

    def __enter__(self) -> VpcdBridge:
        self.insert()
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    # -- inserting -------------------------------------------------------------

    def insert(self) -> None:
        """Put the card in the reader and answer vpcd from a daemon thread.

        Returns once vpcd has taken the card, at its next presence poll
        (within 0.4 s), so pcscd is registering the card by then;
        :meth:`cardlayout.transport.pcsc.PcscTransport.connect` waits for the
        rest. Raises :class:`NoReaderError` if vpcd does not take it because
        another card is in that reader: vpcd serves one connection per port
        and would leave a second one waiting, unanswered, for ever.
        Inserting a card that is already in does nothing.
        """
        if self.is_inserted:
            return
        sock = self._attach()
        accepted = self._accepted
        thread = threading.Thread(
            target=self._serve_in_thread,
            args=(sock,),
            name=f"vpcd-bridge-{self.port}",
            daemon=True,
        )
        self._thread = thread
        thread.start()
        if not accepted.wait(ACCEPT_TIMEOUT):
            with self._lock:
                self._stopping = True
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            thread.join(JOIN_TIMEOUT)
            raise NoReaderError(self._busy_sentence())

    def _busy_sentence(self) -> str:
        return (
            f"the vpcd reader on port {self.port} does not take the card: another card is "
            "in it (a running `cardlayout vcard attach`, or another test run); remove that one"
        )

    def serve_forever(self) -> None:
        """Insert the card and answer vpcd in this thread until the card is out.

        Returns when :meth:`remove` is called (from another thread, or from a
        signal handler of this one) or the card loses power
        (:attr:`power_lost`); raises :class:`NoServiceError` if pcscd goes
        away meanwhile. If another card is in the reader, this may wait until
        that one is removed (vpcd takes one card at a time).
        """
        sock = self._attach()
        self._serve(sock)

    def _attach(self) -> socket.socket:
        """Connect to vpcd, which is inserting the card."""
        with self._lock:
            if self._sock is not None:
                raise RuntimeError(f"the card is already in the vpcd reader on port {self.port}")
            thread, self._thread = self._thread, None
        if thread is not None:  # its connection ended by itself (tear, pcscd gone)
            thread.join(JOIN_TIMEOUT)
        self._let_pcscd_see_the_tear()
        sock = self._connect()
        with self._lock:
            self._sock = sock
            self._served_out = threading.Event()
            self._accepted = threading.Event()
            self._stopping = False
            self.power_lost = False
            self.error = None
        return sock

    def _connect(self) -> socket.socket:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=CONNECT_TIMEOUT)
        except TimeoutError as exc:
            # vpcd listens with no backlog: one connection waiting to be
            # accepted fills it, and further ones are not even refused.
            raise NoReaderError(self._busy_sentence()) from exc
        except OSError as exc:
            raise NoServiceError(
                f"nothing answers on vpcd's port {self.host}:{self.port}: pcscd is not "
                "running or the vsmartcard-vpcd driver is not installed "
                "(install vsmartcard-vpcd, then start or restart pcscd)"
            ) from exc
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _let_pcscd_see_the_tear(self) -> None:
        """Keep a torn card out until pcscd has polled the empty reader once.

        A tear closes the connection while vpcd waits for an answer, and vpcd
        then drops the connection at once, outside pcscd's presence poll. If
        the card came back before the next poll, vpcd would accept it at that
        poll and pcscd would never see a removal: it would neither report the
        pulled card nor power the new one. Real cards are not pulled and put
        back within 0.4 s, so this costs the tear tests a fraction of a second
        and nothing else.
        """
        if self._torn_at is not None:
            delay = self._torn_at + PCSCD_POLL_GAP - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self._torn_at = None

    # -- removing ------------------------------------------------------------

    def remove(self) -> None:
        """Pull the card out; return once pcscd has seen the reader empty.

        The card is pulled at vpcd's next presence poll (within 0.4 s) rather
        than at once: vpcd then fails that very poll on the closed connection,
        and pcscd, whose poll it was, marks the reader empty. Closing at once
        would leave a window in which pcscd still reports the old card, so that
        a :meth:`insert` right after could go unnoticed by pcscd. If no poll
        comes (pcscd hung), the card is pulled anyway after a timeout. On a
        machine with both cores busy, pcscd was seen to miss a card put in
        straight after this returned (it kept reporting the old card's ATR),
        so a caller that swaps cards waits for pcscd to report the reader
        empty as well (:func:`cardlayout.transport.pcsc.wait_until_vpcd_empty`,
        kept out of this module, which needs no PC/SC).

        Safe to call when the card is already out (after a tear it still
        returns only once pcscd can have seen the reader empty). Called from the serving
        thread itself (a signal handler during :meth:`serve_forever`), it only
        asks for the removal and returns.
        """
        with self._lock:
            sock, thread = self._sock, self._thread
            served_out = self._served_out
            self._stopping = True
            here = self._serving_ident == threading.get_ident()
        if here:
            return
        if sock is not None and not served_out.wait(REMOVE_TIMEOUT):
            logger.warning("no presence poll from vpcd on port %d; pulling the card", self.port)
            # shutdown, not close: it wakes the recv() blocked in the serving
            # thread, which a close() from another thread does not.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            served_out.wait(JOIN_TIMEOUT)
        if thread is not None:
            thread.join(JOIN_TIMEOUT)
            with self._lock:
                if self._thread is thread:
                    self._thread = None
        # A card torn earlier left at once, outside pcscd's poll: wait out that
        # poll here too, so whatever is inserted next (this card or a new
        # bridge's) is seen as a new card.
        self._let_pcscd_see_the_tear()

    # -- serving -------------------------------------------------------------

    def _serve_in_thread(self, sock: socket.socket) -> None:
        try:
            self._serve(sock)
        except Exception as exc:
            self.error = exc
            logger.error("virtual card on vpcd port %d: %s", self.port, exc)

    def _serve(self, sock: socket.socket) -> None:
        """Answer vpcd on ``sock`` until the card is removed or loses power."""
        debug = logger.isEnabledFor(logging.DEBUG)
        served_out, accepted = self._served_out, self._accepted
        self._serving_ident = threading.get_ident()
        previous = b""
        try:
            while True:
                try:
                    message = read_message(sock)
                except OSError:
                    message = None
                if message is None:
                    if self._stopping:
                        return
                    raise NoServiceError(
                        f"vpcd closed the connection on port {self.port}: pcscd stopped "
                        "or restarted; the virtual card is out of the reader"
                    )
                accepted.set()
                if debug:
                    logger.debug("vpcd %d > %s", self.port, message.hex().upper())
                if self._stopping and _is_presence_poll(message, previous):
                    return  # removal asked for: fail this poll (see remove())
                previous = message
                try:
                    reply = self.handler.handle(message)
                except Exception as exc:
                    if not _is_power_lost(exc):
                        reply = self._fault(message)
                    else:
                        logger.info("virtual card on vpcd port %d lost power: %s", self.port, exc)
                        self.power_lost = True
                        self._torn_at = time.monotonic()
                        return  # the finally below pulls the card
                if reply is not None:
                    if debug:
                        logger.debug("vpcd %d < %s", self.port, reply.hex().upper())
                    try:
                        write_message(sock, reply)
                    except OSError:
                        if self._stopping:
                            return
                        raise NoServiceError(
                            f"vpcd on port {self.port} stopped listening (pcscd stopped?)"
                        ) from None
        finally:
            sock.close()
            try:
                self.card.power_off()
            except Exception:
                logger.exception("virtual card on vpcd port %d failed to power off", self.port)
            with self._lock:
                if self._sock is sock:
                    self._sock = None
                self._serving_ident = None
            served_out.set()

    def _fault(self, message: bytes) -> bytes | None:
        """The answer to a message the card OS failed on with a bug.

        A fault in the card OS must not pull the card: answer as a real card
        does after an internal error, and leave the traceback in the log for
        whoever is debugging it.
        """
        logger.exception("virtual card on vpcd port %d failed on %s", self.port, message.hex())
        return SW_NO_PRECISE_DIAGNOSIS if len(message) > 1 else None


def _is_presence_poll(message: bytes, previous: bytes) -> bool:
    """Whether vpcd sent ``message`` to ask if the card is still there.

    vpcd asks for the ATR in two cases: to poll presence (pcscd's event
    thread, every 0.4 s) and right after powering the card (``01`` or ``02``)
    to read the answer to reset. Only the first is a good moment to pull.
    """
    return message == bytes((GET_ATR,)) and previous not in (bytes((POWER_ON,)), bytes((RESET,)))
