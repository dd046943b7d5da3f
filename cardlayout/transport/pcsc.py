"""PC/SC transport: any reader pcscd knows, USB CCID or the vpcd virtual one.

This is the only module of the package that imports pyscard, and it does so
inside functions, so ``import cardlayout`` (and this module) works on a
machine without pyscard or pcscd; the error comes when a card is asked for.

It uses pyscard's thin ``smartcard.scard`` layer (the PC/SC C API one to one)
rather than ``CardRequest``/``CardConnection``: every call then returns the
PC/SC result code itself, which is what the mapping to the project's errors
needs (pcscd gone, reader gone, card gone are different sentences for the
operator), one context serves a whole session, and a wait can be cut into
short slices so Ctrl-C is honoured. ``CardRequest`` waits the same way
underneath (``SCardGetStatusChange``) but opens a context per request and
keeps waiting, silently, when pcscd stops in the middle.

The card is opened in exclusive share mode: a sale's reads, authentication
and writes form one logical session, and no other process (a second counter
program, a dashboard) can slip a SELECT in between and move the card's
current file or reset its security state.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, NoReturn

from cardlayout.errors import (
    CardIOError,
    CardRemovedError,
    NoCardError,
    NoReaderError,
    NoServiceError,
)

NO_SERVICE_MESSAGE = "the PC/SC service (pcscd) is not running; start it with `pcscd`"

#: Longest single blocking PC/SC wait. Waits longer than this are cut into
#: slices, so a KeyboardInterrupt reaches Python within this time.
WAIT_SLICE = 0.5

#: Pause between tries when pcscd still reports a card it can no longer
#: power, or another process holds the card: both clear by themselves.
RETRY_PAUSE = 0.05


def _scard() -> Any:
    """pyscard's ``smartcard.scard`` module, imported on first use."""
    try:
        from smartcard import scard
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise NoServiceError(
            "pyscard is not installed, so PC/SC readers cannot be used; "
            "install it with `pip install 'cardprepay[pcsc]'`"
        ) from exc
    return scard


def _unsigned(hresult: int) -> int:
    """PC/SC codes as the 0x8010xxxx numbers the documentation uses."""
    return hresult & 0xFFFFFFFF


def _describe(hresult: int) -> str:
    scard = _scard()
    return f"{scard.SCardGetErrorMessage(hresult)} (0x{_unsigned(hresult):08X})"


def _service_codes() -> set[int]:
    scard = _scard()
    return {_unsigned(scard.SCARD_E_NO_SERVICE), _unsigned(scard.SCARD_E_SERVICE_STOPPED)}


def _removed_codes() -> set[int]:
    """Codes meaning the card under a session went away or lost its state.

    ``SCARD_E_NOT_TRANSACTED`` is among them because that is what pcscd says
    when the card stopped answering in the middle of an APDU (a pulled card,
    or a virtual card that lost power), before its poll notices the removal.
    A reset (``SCARD_W_RESET_CARD``) counts too: the card forgot the session's
    authentication and current file, so the session cannot go on either.
    """
    scard = _scard()
    return {
        _unsigned(code)
        for code in (
            scard.SCARD_W_REMOVED_CARD,
            scard.SCARD_W_RESET_CARD,
            scard.SCARD_W_UNPOWERED_CARD,
            scard.SCARD_W_UNRESPONSIVE_CARD,
            scard.SCARD_E_NO_SMARTCARD,
            scard.SCARD_E_NOT_TRANSACTED,
            scard.SCARD_E_COMM_DATA_LOST,
        )
    }


def _reader_gone_codes() -> set[int]:
    scard = _scard()
    return {
        _unsigned(scard.SCARD_E_UNKNOWN_READER),
        _unsigned(scard.SCARD_E_READER_UNAVAILABLE),
        _unsigned(scard.SCARD_E_NO_READERS_AVAILABLE),
    }


def _check_service(hresult: int) -> None:
    if _unsigned(hresult) in _service_codes():
        raise NoServiceError(NO_SERVICE_MESSAGE)


def _establish() -> int:
    """A PC/SC context; the one call that finds out whether pcscd runs."""
    scard = _scard()
    hresult, hcontext = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hresult != scard.SCARD_S_SUCCESS:
        _check_service(hresult)
        raise NoServiceError(f"cannot open a PC/SC context: {_describe(hresult)}")
    return int(hcontext)


def _release(hcontext: int) -> None:
    scard = _scard()
    scard.SCardReleaseContext(hcontext)


def _list(hcontext: int) -> list[str]:
    scard = _scard()
    hresult, names = scard.SCardListReaders(hcontext, [])
    if _unsigned(hresult) == _unsigned(scard.SCARD_E_NO_READERS_AVAILABLE):
        return []
    if hresult != scard.SCARD_S_SUCCESS:
        _check_service(hresult)
        raise CardIOError(f"cannot list the PC/SC readers: {_describe(hresult)}")
    return [str(name) for name in names]


def _readers_sentence(names: list[str]) -> str:
    if not names:
        return "pcscd lists no readers (is one plugged in, or the vpcd driver installed?)"
    listed = ", ".join(f"[{i}] {name!r}" for i, name in enumerate(names))
    return f"the readers are {listed}"


def resolve_reader(spec: str | int, names: list[str]) -> str:
    """The reader ``spec`` designates among ``names``.

    An ``int`` is an index into the list. A string is an exact name, or else a
    piece of one (case ignored) that only one reader contains: reader names
    carry a slot suffix ("... 00 00") that people do not type.
    """
    if isinstance(spec, int):
        if 0 <= spec < len(names):
            return names[spec]
        raise NoReaderError(f"there is no reader number {spec}: {_readers_sentence(names)}")
    if spec in names:
        return spec
    matches = [name for name in names if spec.lower() in name.lower()]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise NoReaderError(
            f"reader {spec!r} is ambiguous, it matches {', '.join(map(repr, matches))}; "
            "give more of the name"
        )
    raise NoReaderError(f"there is no reader {spec!r}: {_readers_sentence(names)}")


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + max(timeout, 0.0)


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(deadline - time.monotonic(), 0.0)


class _Seen(NamedTuple):
    """What a wait on a reader ended with."""

    reached: bool
    """Whether the wanted state came before the deadline."""
    state: int
    """The reader's event state seen last (``SCARD_STATE_*`` bits)."""
    atr: bytes


def _wait_for_state(
    hcontext: int,
    reader: str,
    wanted: Callable[[int], bool],
    deadline: float | None,
) -> _Seen:
    """Block until ``wanted(event_state)`` holds for ``reader``, or the deadline.

    Each blocking call lasts at most :data:`WAIT_SLICE`; passing the state
    seen last as the "current" one means no change between slices is missed
    (pcsc-lite also counts card events in the upper bits of the state, so
    even a removal and reinsertion between two slices shows as a change).
    """
    scard = _scard()
    known = scard.SCARD_STATE_UNAWARE
    atr = b""
    while True:
        remaining = _remaining(deadline)
        slice_ms = int(1000 * (WAIT_SLICE if remaining is None else min(remaining, WAIT_SLICE)))
        if known == scard.SCARD_STATE_UNAWARE:
            slice_ms = 0  # first call: just read the present state
        hresult, states = scard.SCardGetStatusChange(hcontext, slice_ms, [(reader, known)])
        if _unsigned(hresult) == _unsigned(scard.SCARD_E_TIMEOUT):
            if remaining is not None and remaining <= 0:
                return _Seen(False, int(known), atr)
            continue
        if hresult != scard.SCARD_S_SUCCESS:
            _check_service(hresult)
            if _unsigned(hresult) in _reader_gone_codes():
                raise NoReaderError(f"reader {reader!r} went away")
            raise CardIOError(f"cannot watch reader {reader!r}: {_describe(hresult)}")
        _, event_state, raw_atr = states[0]
        atr = bytes(raw_atr)
        if event_state & scard.SCARD_STATE_UNKNOWN:  # (UNAVAILABLE passes: it may clear)
            raise NoReaderError(f"reader {reader!r} went away")
        if wanted(event_state):
            return _Seen(True, int(event_state), atr)
        if remaining is not None and remaining <= 0:
            return _Seen(False, int(event_state), atr)
        known = event_state & ~scard.SCARD_STATE_CHANGED


def _no_card(reader: str, seen: _Seen, waited: float | None) -> NoCardError:
    scard = _scard()
    if seen.state & scard.SCARD_STATE_MUTE:
        return NoCardError(
            f"the card in {reader!r} does not answer (no ATR): is it inserted the right way "
            "round, and is it a contact chip card?"
        )
    return NoCardError(f"no card in {reader!r} (waited {waited:g} s)")


def _card_ready(event_state: int) -> bool:
    scard = _scard()
    return bool(event_state & scard.SCARD_STATE_PRESENT) and not (
        event_state & scard.SCARD_STATE_MUTE
    )


def _card_absent(event_state: int) -> bool:
    scard = _scard()
    return bool(event_state & scard.SCARD_STATE_EMPTY)


def list_readers() -> list[str]:
    """The names of the readers pcscd knows, in its order (indexes count in it)."""
    hcontext = _establish()
    try:
        return _list(hcontext)
    finally:
        _release(hcontext)


def wait_for_card(reader: str | int, timeout: float | None = 10.0) -> bytes:
    """Wait until a card is in ``reader`` and return its ATR, without opening it.

    Meant for a dashboard that shows "card inserted": it only watches the
    reader, so it works while another process holds the card exclusively.
    ``timeout=None`` waits for ever; :class:`NoCardError` after ``timeout``.
    """
    hcontext = _establish()
    try:
        name = resolve_reader(reader, _list(hcontext))
        seen = _wait_for_state(hcontext, name, _card_ready, _deadline(timeout))
    finally:
        _release(hcontext)
    if not seen.reached:
        raise _no_card(name, seen, timeout)
    return seen.atr


def wait_for_removal(reader: str | int, timeout: float | None = 10.0) -> bool:
    """Wait until ``reader`` is empty; ``True`` if it is, ``False`` at the timeout.

    A card still present is not an error (the operator has not taken it yet),
    hence a flag rather than an exception. ``timeout=None`` waits for ever.
    """
    hcontext = _establish()
    try:
        name = resolve_reader(reader, _list(hcontext))
        return _wait_for_state(hcontext, name, _card_absent, _deadline(timeout)).reached
    finally:
        _release(hcontext)


VPCD_READER_PREFIX = "Virtual PCD"
"""How pcscd's names of the vsmartcard vpcd driver's readers begin."""
VPCD_FIRST_PORT = 35963
"""The port of vpcd's first reader (its reader.conf); each next slot listens on the next port."""
VPCD_EMPTY_WAIT = 3.0
"""Seconds :func:`wait_until_vpcd_empty` waits by default (pcscd polls a reader every 0.4 s)."""


def vpcd_reader_name(names: Sequence[str], port: int) -> str | None:
    """The reader among pcscd's ``names`` that a virtual card on vpcd ``port`` fills, or None.

    pcscd names a reader's slots ``<name> <reader> <slot>``; vpcd's slot 0 is
    :data:`VPCD_FIRST_PORT`, slot 1 the next port.
    """
    slot = f" 00 {port - VPCD_FIRST_PORT:02d}"
    return next((n for n in names if n.startswith(VPCD_READER_PREFIX) and n.endswith(slot)), None)


def wait_until_vpcd_empty(port: int, timeout: float = VPCD_EMPTY_WAIT) -> bool | None:
    """After a virtual card was pulled from vpcd ``port``: wait until pcscd reports it empty.

    vpcd takes the next card at its next presence poll, and with both cores
    of the machine busy pcscd was seen to miss a swap made at once: it went
    on reporting the old card's ATR, which is where a card's serial is read
    from. Whoever swaps virtual cards waits here between them. True once
    pcscd reports the reader empty, False at ``timeout``, None when there is
    nothing to wait for (no pcscd, or no vpcd reader for ``port``).
    """
    try:
        name = vpcd_reader_name(list_readers(), port)
        return None if name is None else wait_for_removal(name, timeout)
    except CardIOError:
        return None


class PcscTransport:
    """A :class:`~cardlayout.transport.base.Transport` onto one PC/SC reader.

    ``reader`` is an exact reader name, a unique piece of one, or an index
    into :func:`list_readers`. ``timeout`` bounds how long :meth:`connect`
    waits for a card (and for another process to release it). ``exclusive``
    (the default) keeps every other process off the card until
    :meth:`disconnect`; pass ``False`` only for read-only tools that must
    coexist with a running sale.
    """

    def __init__(self, reader: str | int, *, timeout: float = 10.0, exclusive: bool = True) -> None:
        self.reader = reader
        self.timeout = timeout
        self.exclusive = exclusive
        self.atr = b""
        self._reader_name: str | None = None
        self._hcontext: int | None = None
        self._hcard: int | None = None
        self._protocol = 0

    @property
    def name(self) -> str:
        """The reader's full name once resolved, else what was asked for."""
        if self._reader_name is not None:
            return self._reader_name
        return self.reader if isinstance(self.reader, str) else f"reader #{self.reader}"

    @property
    def connected(self) -> bool:
        return self._hcard is not None

    def __enter__(self) -> PcscTransport:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.disconnect()

    def connect(self) -> bytes:
        """Wait up to ``timeout`` for a card, open it, power it, return its ATR.

        T=0 or T=1, whichever the card offers (the profile's cards are T=0).
        If pcscd still shows a card it can no longer power (pulled a moment
        ago), or another process holds the card, this keeps trying until the
        deadline instead of failing on what is a passing state.
        """
        if self._hcard is not None:
            return self.atr
        scard = _scard()
        deadline = _deadline(self.timeout)
        hcontext = _establish()
        self._hcontext = hcontext
        try:
            name = resolve_reader(self.reader, _list(hcontext))
            self._reader_name = name
            share = scard.SCARD_SHARE_EXCLUSIVE if self.exclusive else scard.SCARD_SHARE_SHARED
            protocols = scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1
            while True:
                seen = _wait_for_state(hcontext, name, _card_ready, deadline)
                if not seen.reached:
                    raise _no_card(name, seen, self.timeout)
                hresult, hcard, protocol = scard.SCardConnect(hcontext, name, share, protocols)
                if hresult == scard.SCARD_S_SUCCESS:
                    break
                code = _unsigned(hresult)
                _check_service(hresult)
                if code in _reader_gone_codes():
                    raise NoReaderError(f"reader {name!r} went away")
                busy = code == _unsigned(scard.SCARD_E_SHARING_VIOLATION)
                if not busy and code not in _removed_codes():
                    raise CardIOError(f"cannot open the card in {name!r}: {_describe(hresult)}")
                remaining = _remaining(deadline)
                if remaining is not None and remaining <= 0:
                    if busy:
                        raise NoReaderError(
                            f"the card in {name!r} is held by another program "
                            f"(still after {self.timeout:g} s); close it and try again"
                        )
                    raise NoCardError(f"the card in {name!r} does not answer: {_describe(hresult)}")
                time.sleep(RETRY_PAUSE)
            self._hcard = int(hcard)
            self._protocol = int(protocol)
            self.atr = self._read_atr(seen.atr)
            return self.atr
        except BaseException:
            self.disconnect()
            raise

    def _read_atr(self, fallback: bytes) -> bytes:
        """The ATR of the card now open (it may differ from the one watched)."""
        scard = _scard()
        hresult, _reader, _state, _protocol, atr = scard.SCardStatus(self._hcard)
        if hresult != scard.SCARD_S_SUCCESS:
            self._raise(hresult, "reading the ATR")
        return bytes(atr) if atr else fallback

    def transmit(self, command: bytes) -> bytes:
        """Send one command APDU as it is; return the response APDU as it is."""
        if self._hcard is None:
            raise CardIOError(f"no card is open in {self.name!r}: call connect() first")
        scard = _scard()
        pci = (
            scard.SCARD_PCI_T1 if self._protocol == scard.SCARD_PROTOCOL_T1 else scard.SCARD_PCI_T0
        )
        hresult, response = scard.SCardTransmit(self._hcard, pci, list(command))
        if hresult != scard.SCARD_S_SUCCESS:
            self._raise(hresult, "the exchange")
        if len(response) < 2:
            # Every response APDU ends in a status word. vpcd reports a card
            # that vanished in the middle of a command as a *successful*
            # exchange with no bytes, so this is how a tear shows up here.
            self._drop_dead_card()
            raise CardRemovedError(
                f"the card in {self.name!r} gave no answer: it was removed or lost power"
            )
        return bytes(response)

    def _raise(self, hresult: int, during: str) -> NoReturn:
        """Turn a PC/SC failure under an open card into the project's error."""
        code = _unsigned(hresult)
        _check_service(hresult)
        if code in _removed_codes():
            self._drop_dead_card()
            raise CardRemovedError(
                f"the card in {self.name!r} was removed or lost power during {during} "
                f"({_describe(hresult)})"
            )
        if code in _reader_gone_codes():
            raise NoReaderError(f"reader {self.name!r} went away during {during}")
        raise CardIOError(f"{during} with the card in {self.name!r} failed: {_describe(hresult)}")

    def _drop_dead_card(self) -> None:
        """Forget the handle of a card that is gone, so :meth:`connect` opens anew.

        Left as it is rather than reset: there is nothing to reset, and the
        caller's next step is usually to wait for the card to come back.
        """
        hcard, self._hcard = self._hcard, None
        if hcard is not None:
            scard = _scard()
            scard.SCardDisconnect(hcard, scard.SCARD_LEAVE_CARD)

    def disconnect(self) -> None:
        """Reset the card and let go of it; safe to call twice, and after a removal.

        The reset makes the card forget this session's authentication, so the
        next program to open it starts from a clean state.
        """
        hcard, self._hcard = self._hcard, None
        hcontext, self._hcontext = self._hcontext, None
        if hcard is not None:
            scard = _scard()
            scard.SCardDisconnect(hcard, scard.SCARD_RESET_CARD)
        if hcontext is not None:
            _release(hcontext)
