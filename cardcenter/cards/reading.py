"""What the service hall learns from the card in its reader.

One snapshot per visit; the meter's write-back and history are trusted only
after their MACs verify, and the purse only after the centre's own MAC does.
Nothing here touches the database: the sale, replacement and reading
services decide what the card means for the books.
"""

from __future__ import annotations

from dataclasses import dataclass

from cardcenter.core.errors import CardRefusedError
from cardlayout.card.operations import verified_history, verified_write_back, verify_purse
from cardlayout.card.snapshot import CardSnapshot, FileStatus, read_snapshot
from cardlayout.errors import FormatError, SecurityError
from cardlayout.files import (
    HISTORY,
    WRITE_BACK,
    History,
    Parameters,
    Purse,
    WriteBack,
)
from cardlayout.security.diversify import CardKeys
from cardlayout.transport.channel import CardChannel


@dataclass(frozen=True)
class CardReading:
    """A user card as read at the desk, with every MAC checked."""

    snapshot: CardSnapshot
    parameters: Parameters | None
    purse: Purse | None
    """``None`` when the purse is torn or blank (a card pulled during a sale)."""
    write_back: WriteBack | None
    """The meter's report, ``None`` when cleared (no insertion since the last sale)."""
    write_back_status: FileStatus
    history: History | None

    @property
    def serial(self) -> str:
        return self.snapshot.serial.hex().upper()

    @property
    def blank(self) -> bool:
        return not self.snapshot.personalised

    @property
    def raw_write_back(self) -> bytes:
        return self.snapshot.state(WRITE_BACK).raw

    @property
    def raw_history(self) -> bytes | None:
        state = self.snapshot.state(HISTORY)
        return state.raw if state.status is FileStatus.OK else None

    @property
    def write_back_cleared(self) -> bool:
        """True only for a cleanly cleared write-back (not torn, not blank)."""
        return self.write_back_status is FileStatus.CLEARED


def read_card(channel: CardChannel, keys: CardKeys) -> CardReading:
    """Read the card and check every MAC on it.

    Parameters that cannot be read (torn by a pulled card) give ``None``: the
    card is still identified by its serial, and the next write restores them.

    A write-back or history whose MAC does not verify, or a purse the centre
    did not MAC, is a forged or foreign card: refused with that sentence. A
    torn purse or write-back is reported as such (``None`` with its status),
    since a pulled card is a fault the services know how to recover from.
    """
    snapshot = read_snapshot(channel)
    if not snapshot.personalised:
        return CardReading(snapshot, None, None, None, FileStatus.BLANK, None)
    serial = snapshot.serial.hex().upper()
    params = snapshot.parameters
    if params is not None and not params.card_type.is_user_card:
        raise CardRefusedError(
            f"card {serial} is a {params.card_type.name.lower().replace('_', '-')} tool card, "
            "not a customer's card"
        )
    # Torn parameters (a card pulled during a sale) leave the purse unchecked
    # here: the desk only compares it with what the books last wrote, and
    # rewrites the card whole.
    purse = snapshot.purse
    if purse is not None and params is not None:
        try:
            verify_purse(purse, params, snapshot.serial, keys.purse_key(params.meter_no))
        except SecurityError:
            raise CardRefusedError(
                f"card {serial}: its purse does not carry this centre's MAC; the card is "
                "forged or from another system: keep it and report it"
            ) from None
    forged = CardRefusedError(
        f"card {serial}: its write-back does not carry a valid meter MAC; the card is "
        "forged or was copied: keep it and report it"
    )
    write_back: WriteBack | None = None
    history: History | None = None
    try:
        write_back = verified_write_back(keys, snapshot)
    except SecurityError:
        raise forged from None
    except FormatError:
        pass  # torn (a card pulled from the meter): reported by its status
    if write_back is not None:
        try:
            history = verified_history(keys, snapshot, write_back)
        except SecurityError:
            raise forged from None
        except FormatError:
            pass  # a torn history loses the statistics, not the write-back
    return CardReading(
        snapshot, params, purse, write_back, snapshot.state(WRITE_BACK).status, history
    )
