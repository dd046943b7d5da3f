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
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from cardlayout.fileio import atomic_write
from cardmeter.registers import MeterState


class StateError(Exception):
    """The meter state cannot be read or written."""


class Document(Protocol):
    """What a state file holds: anything that writes itself as a JSON object."""

    def to_json(self) -> dict[str, Any]: ...


D = TypeVar("D", bound=Document)


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


def newest_document(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The newest good state document at ``path`` (or its previous copy), undecoded.

    Lets a command tell a card meter's state from a keypad meter's before
    choosing how to decode it.
    """
    p = Path(path)
    found = [e for e in (_envelope(p), _envelope(p.with_name(p.name + ".prev"))) if e]
    return max(found, key=lambda e: e[0])[1] if found else None


class StateFile(Generic[D]):
    """Loads and saves one meter's document at ``path``, decoded by ``decode``."""

    def __init__(self, path: str | os.PathLike[str], decode: Callable[[dict[str, Any]], D]) -> None:
        self.path = Path(path)
        self.previous = self.path.with_name(self.path.name + ".prev")
        self.seq = 0
        self._decode = decode

    def exists(self) -> bool:
        return self.path.exists() or self.previous.exists()

    def load(self) -> D:
        """The newest good state (the previous one if the newest is damaged)."""
        found: list[tuple[int, D]] = []
        foreign: str | None = None
        for where in (self.path, self.previous):
            envelope = _envelope(where)
            if envelope is None:
                continue
            try:
                found.append((envelope[0], self._decode(envelope[1])))
            except (KeyError, TypeError):
                continue
            except ValueError as exc:
                foreign = str(exc)
        if not found:
            if not self.exists():
                raise StateError(f"no meter state at {self.path}; create one with `cardmeter init`")
            if foreign is not None:
                raise StateError(f"{self.path} is {foreign}")
            raise StateError(f"the meter state at {self.path} and its previous copy are damaged")
        self.seq, document = max(found, key=lambda r: r[0])
        return document

    def save(self, document: D) -> None:
        """Write ``document`` so that a kill at any instant leaves a good state."""
        self.seq += 1
        state_doc = document.to_json()
        text = json.dumps(
            {"seq": self.seq, "sha256": _digest(state_doc, self.seq), "state": state_doc},
            sort_keys=True,
            indent=1,
        )
        atomic_write(self.path, text.encode("utf-8"), keep_previous=self.previous)


class StateStore(StateFile[MeterState]):
    """A card meter's state file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(path, MeterState.from_json)
