"""The keypad meter's secure memory: its state file, written like the card meter's.

Same mechanism and envelope as :mod:`cardmeter.store` (a sequence number, a
SHA-256 checksum, an atomic replace that keeps ``STATE.prev``), so a kill at
any instant leaves the new state or the previous one whole; only the
document inside differs (``cardmeter-keypad/1``). The document holds the
meter's decoder key: the file is written mode 0600 and stands for the
meter's secure memory, as the card meter's ``.sam`` file stands for its
security module. Nothing read from it is printed but check values.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from cardlayout.fileio import atomic_write
from cardmeter.keypad import KEYPAD_FORMAT, KeypadMeter
from cardmeter.store import StateError


def _digest(state_doc: dict[str, Any], seq: int) -> str:
    canonical = json.dumps({"seq": seq, "state": state_doc}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _envelope(path: Path) -> tuple[int, dict[str, Any]] | None:
    """(seq, state document) of a file whose checksum holds, else None."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        seq, state_doc = int(doc["seq"]), doc["state"]
        if doc["sha256"] != _digest(state_doc, seq) or not isinstance(state_doc, dict):
            return None
        return seq, state_doc
    except (OSError, ValueError, KeyError, TypeError):
        return None


def is_keypad_state(path: str | os.PathLike[str]) -> bool:
    """Whether the newest good state at ``path`` is a keypad meter's (for ``status``)."""
    p = Path(path)
    found = [e for e in (_envelope(p), _envelope(p.with_name(p.name + ".prev"))) if e]
    return bool(found) and max(found, key=lambda e: e[0])[1].get("format") == KEYPAD_FORMAT


class KeypadStore:
    """Loads and saves one keypad meter's state at ``path``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.previous = self.path.with_name(self.path.name + ".prev")
        self.seq = 0

    def exists(self) -> bool:
        return self.path.exists() or self.previous.exists()

    def load(self) -> KeypadMeter:
        """The newest good state (the previous one if the newest is damaged)."""
        found: list[tuple[int, KeypadMeter]] = []
        foreign: str | None = None
        for where in (self.path, self.previous):
            envelope = _envelope(where)
            if envelope is None:
                continue
            try:
                found.append((envelope[0], KeypadMeter.from_json(envelope[1])))
            except ValueError as exc:
                foreign = str(exc)
        if not found:
            if not self.exists():
                raise StateError(f"no meter state at {self.path}; create one with `cardmeter init`")
            if foreign is not None:
                raise StateError(f"{self.path} is {foreign}")
            raise StateError(f"the meter state at {self.path} and its previous copy are damaged")
        self.seq, meter = max(found, key=lambda r: r[0])
        return meter

    def save(self, meter: KeypadMeter) -> None:
        """Write ``meter`` so that a kill at any instant leaves a good state."""
        self.seq += 1
        state_doc = meter.to_json()
        text = json.dumps(
            {"seq": self.seq, "sha256": _digest(state_doc, self.seq), "state": state_doc},
            sort_keys=True,
            indent=1,
        )
        atomic_write(self.path, text.encode("utf-8"), keep_previous=self.previous)
