"""The meter's non-volatile memory: a state file that survives power loss.

Each save writes a complete document with a sequence number and a SHA-256
checksum to a temporary file, syncs it, keeps the previous good file as
``STATE.prev`` and renames the new one into place. Killed at any instant,
the meter finds either the new state or the previous one whole; a damaged
file (checksum wrong) is passed over for the previous one. Nothing but the
last interval or the step in progress can be lost.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from cardlayout.fileio import atomic_write
from cardmeter.registers import MeterState


class StateError(Exception):
    """The meter state cannot be read or written."""


def _digest(state_doc: dict[str, Any], seq: int) -> str:
    canonical = json.dumps({"seq": seq, "state": state_doc}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _read(path: Path) -> tuple[int, MeterState] | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        seq, state_doc = int(doc["seq"]), doc["state"]
        if doc["sha256"] != _digest(state_doc, seq):
            return None
        return seq, MeterState.from_json(state_doc)
    except (OSError, ValueError, KeyError, TypeError):
        return None


class StateStore:
    """Loads and saves one meter's state at ``path``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.previous = self.path.with_name(self.path.name + ".prev")
        self.seq = 0

    def exists(self) -> bool:
        return self.path.exists() or self.previous.exists()

    def load(self) -> MeterState:
        """The newest good state (the previous one if the newest is damaged)."""
        found = [r for r in (_read(self.path), _read(self.previous)) if r is not None]
        if not found:
            if not self.exists():
                raise StateError(f"no meter state at {self.path}; create one with `cardmeter init`")
            raise StateError(f"the meter state at {self.path} and its previous copy are damaged")
        self.seq, state = max(found, key=lambda r: r[0])
        return state

    def save(self, state: MeterState) -> None:
        """Write ``state`` so that a kill at any instant leaves a good state."""
        self.seq += 1
        state_doc = state.to_json()
        text = json.dumps(
            {"seq": self.seq, "sha256": _digest(state_doc, self.seq), "state": state_doc},
            sort_keys=True,
            indent=1,
        )
        atomic_write(self.path, text.encode("utf-8"), keep_previous=self.previous)
