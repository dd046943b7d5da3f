"""The card's files in one place: by EF, by FID, by SFI, and per card kind.

Everything that walks the card (the personaliser, the snapshot reader, the
virtual card, the CLI) takes the file list from here, so adding or resizing a
file is one edit. Card kinds and their files follow docs/card.md 3.6.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from cardlayout.files.base import CardFile
from cardlayout.files.history import HISTORY
from cardlayout.files.parameters import PARAMETERS, CardType
from cardlayout.files.purse import PURSE
from cardlayout.files.tariffs import TARIFF_SET_1, TARIFF_SET_2
from cardlayout.files.writeback import WRITE_BACK

__all__ = [
    "ALL_FILES",
    "CARD_KINDS",
    "HISTORY",
    "PARAMETERS",
    "PURSE",
    "TARIFF_SET_1",
    "TARIFF_SET_2",
    "WRITE_BACK",
    "CardKindSpec",
    "Utility",
    "file_by_fid",
    "file_by_name",
    "file_by_sfi",
]

ALL_FILES: tuple[CardFile[Any], ...] = (
    PARAMETERS,
    PURSE,
    TARIFF_SET_1,
    TARIFF_SET_2,
    WRITE_BACK,
    HISTORY,
)
"""Every EF of a utility DF, in EF order (EF01..EF06)."""


class Utility(enum.Enum):
    """The utility a DF serves; the value is its name as used on the command line."""

    ELECTRICITY = "electricity"
    WATER = "water"
    GAS = "gas"

    @property
    def df(self) -> int:
        """FID of the utility's DF under the MF."""
        return _DF[self]

    @property
    def unit(self) -> str:
        """The unit quantities are counted in (0.01 of it on the card)."""
        return _UNIT[self]

    @classmethod
    def from_df(cls, fid: int) -> Utility:
        """Return the utility whose DF has ``fid``; KeyError if none."""
        for utility, df in _DF.items():
            if df == fid:
                return utility
        raise KeyError(f"no utility has DF {fid:04X}")


_DF = {Utility.ELECTRICITY: 0xDF01, Utility.WATER: 0xDF02, Utility.GAS: 0xDF03}
_UNIT = {Utility.ELECTRICITY: "kWh", Utility.WATER: "m3", Utility.GAS: "m3"}


@dataclass(frozen=True)
class CardKindSpec:
    """A kind of card: its EF01 card type, a name, and the EFs it carries."""

    card_type: CardType
    name: str
    user_card: bool
    files: tuple[CardFile[Any], ...]


_USER_FILES = ALL_FILES

CARD_KINDS: dict[CardType, CardKindSpec] = {
    spec.card_type: spec
    for spec in (
        CardKindSpec(CardType.OPENING, "opening user card", True, _USER_FILES),
        CardKindSpec(CardType.PURCHASE, "purchase user card", True, _USER_FILES),
        CardKindSpec(CardType.REPLACEMENT, "replacement user card", True, _USER_FILES),
        CardKindSpec(
            CardType.PARAMETER_SETTING,
            "parameter-setting card",
            False,
            (PARAMETERS, TARIFF_SET_1, TARIFF_SET_2, WRITE_BACK),
        ),
        CardKindSpec(
            CardType.READING, "reading (check) card", False, (PARAMETERS, WRITE_BACK, HISTORY)
        ),
        CardKindSpec(CardType.TEST_CLEAR, "test/clear card", False, (PARAMETERS, WRITE_BACK)),
    )
}
"""Card kinds of docs/card.md 3.6, by the card type written in EF01."""


def file_by_fid(fid: int) -> CardFile[Any]:
    """Return the EF with ``fid`` (1..6); KeyError if none."""
    for card_file in ALL_FILES:
        if card_file.fid == fid:
            return card_file
    raise KeyError(f"no card file has FID {fid:04X}")


def file_by_sfi(sfi: int) -> CardFile[Any]:
    """Return the EF with short identifier ``sfi`` (1..6); KeyError if none."""
    for card_file in ALL_FILES:
        if card_file.sfi == sfi:
            return card_file
    raise KeyError(f"no card file has SFI {sfi}")


def file_by_name(name: str) -> CardFile[Any]:
    """Return the EF called ``name`` (e.g. ``"purse"``); KeyError if none."""
    for card_file in ALL_FILES:
        if card_file.name == name:
            return card_file
    raise KeyError(f"no card file is called {name!r}")
