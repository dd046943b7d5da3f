"""The user card's files (docs/card.md section 3): typed values and their codecs.

Each EF is declared once as a :class:`CardFile` (name, FID, SFI, size, codec,
worked examples); :mod:`cardlayout.files.catalogue` lists them and the card
kinds. Import everything from here.
"""

from cardlayout.files.base import MAC_SIZE, CardFile, Example
from cardlayout.files.catalogue import (
    ALL_FILES,
    CARD_KINDS,
    CardKindSpec,
    Utility,
    file_by_fid,
    file_by_name,
    file_by_sfi,
)
from cardlayout.files.history import (
    HISTORY,
    MAX_EVENTS,
    MONTHS,
    Event,
    EventCode,
    History,
    HistoryFile,
)
from cardlayout.files.parameters import (
    ANY_METER,
    NO_FRIENDLY_DAYS,
    NO_UPDATES,
    PARAMETERS,
    CardType,
    FriendlyDays,
    Parameters,
    ParametersFile,
    UpdateFlags,
    UserType,
)
from cardlayout.files.purse import PURSE, Purse, PurseFile
from cardlayout.files.tariffs import (
    MAX_PERIODS,
    MAX_RATES,
    MAX_SETTLEMENT_DATES,
    MAX_TIERS,
    TARIFF_SET_1,
    TARIFF_SET_2,
    DayPeriod,
    SettlementDate,
    TariffSet,
    TariffSetFile,
)
from cardlayout.files.writeback import (
    NO_STATUS,
    WRITE_BACK,
    InsertionResult,
    MeterStatus,
    WriteBack,
    WriteBackFile,
)

__all__ = [
    "ALL_FILES",
    "ANY_METER",
    "CARD_KINDS",
    "HISTORY",
    "MAC_SIZE",
    "MAX_EVENTS",
    "MAX_PERIODS",
    "MAX_RATES",
    "MAX_SETTLEMENT_DATES",
    "MAX_TIERS",
    "MONTHS",
    "NO_FRIENDLY_DAYS",
    "NO_STATUS",
    "NO_UPDATES",
    "PARAMETERS",
    "PURSE",
    "TARIFF_SET_1",
    "TARIFF_SET_2",
    "WRITE_BACK",
    "CardFile",
    "CardKindSpec",
    "CardType",
    "DayPeriod",
    "Event",
    "EventCode",
    "Example",
    "FriendlyDays",
    "History",
    "HistoryFile",
    "InsertionResult",
    "MeterStatus",
    "Parameters",
    "ParametersFile",
    "Purse",
    "PurseFile",
    "SettlementDate",
    "TariffSet",
    "TariffSetFile",
    "UpdateFlags",
    "UserType",
    "Utility",
    "WriteBack",
    "WriteBackFile",
    "file_by_fid",
    "file_by_name",
    "file_by_sfi",
]
