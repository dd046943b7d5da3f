"""The card as JSON, for ``cardlayout dump`` and for people reading a card.

Bytes become upper-case hex, times ISO 8601 with their offset, enums their
names: the edge of the system, where hex belongs.
"""

from __future__ import annotations

import dataclasses
import enum
from datetime import datetime
from typing import Any

from cardlayout.card.snapshot import CardSnapshot


def jsonable(value: Any) -> Any:
    """A JSON-ready copy of a decoded card value."""
    if isinstance(value, enum.Flag) and not isinstance(value, enum.IntEnum):
        return [m.name.lower() for m in type(value) if m in value and m.name]
    if isinstance(value, enum.Enum):
        return value.name.lower()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex().upper()
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return value


def snapshot_json(snapshot: CardSnapshot) -> dict[str, Any]:
    """The whole snapshot: card identity, then each file's state and value."""
    files: dict[str, Any] = {}
    for name, state in snapshot.files.items():
        entry: dict[str, Any] = {"status": state.status.value}
        if state.value is not None:
            entry["value"] = jsonable(state.value)
        if state.problem:
            entry["problem"] = state.problem
        files[name] = entry
    card_type = snapshot.card_type
    return {
        "atr": snapshot.atr.hex().upper(),
        "serial": snapshot.serial.hex().upper(),
        "personalised": snapshot.personalised,
        "utility": snapshot.utility.value if snapshot.utility else None,
        "card_type": card_type.name.lower() if card_type is not None else None,
        "files": files,
    }
