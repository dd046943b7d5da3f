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

import os

from cardmeter.keypad import KEYPAD_FORMAT, KeypadMeter
from cardmeter.store import StateFile, newest_document


def is_keypad_state(path: str | os.PathLike[str]) -> bool:
    """Whether the newest good state at ``path`` is a keypad meter's (for ``status``)."""
    document = newest_document(path)
    return document is not None and document.get("format") == KEYPAD_FORMAT


class KeypadStore(StateFile[KeypadMeter]):
    """A keypad meter's state file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(path, KeypadMeter.from_json)
