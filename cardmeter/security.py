"""The meter's security module: the keys of this one meter, nothing more.

A field meter holds its keys in a secure element (ESAM); the model keeps them
in a file of their own beside the state (mode 0600), diversified at
``cardmeter init`` from the utility's master keys by the meter number, so a
meter never holds a master key. It can authenticate to cards bound to it
(and to "any meter" tool cards), verify the centre's purse MAC, and MAC its
own write-back. Output shows key check values only.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from cardlayout.fileio import atomic_write
from cardlayout.files import ANY_METER
from cardlayout.security.diversify import CardKeys
from cardlayout.security.keys import SecretKey

SAM_FORMAT = "cardmeter-sam/1"


@dataclass(frozen=True)
class SecurityModule:
    """One meter's keys."""

    meter_no: str
    card_key: SecretKey
    tool_key: SecretKey
    purse_key: SecretKey
    writeback_key: SecretKey

    @classmethod
    def provision(cls, keys: CardKeys, meter_no: str) -> SecurityModule:
        """Diversify this meter's keys from the master keys (at the factory)."""
        return cls(
            meter_no,
            keys.meter_card_key(meter_no),
            keys.meter_card_key(ANY_METER),
            keys.purse_key(meter_no),
            keys.writeback_key(meter_no),
        )

    def check_values(self) -> dict[str, str]:
        """Key check values, for status output and logs."""
        return {
            "card": self.card_key.kcv_hex,
            "tool": self.tool_key.kcv_hex,
            "purse": self.purse_key.kcv_hex,
            "write-back": self.writeback_key.kcv_hex,
        }

    def save(self, path: Path) -> None:
        doc = {
            "format": SAM_FORMAT,
            "meter_no": self.meter_no,
            "keys": {
                name: key.value.hex().upper()
                for name, key in (
                    ("card", self.card_key),
                    ("tool", self.tool_key),
                    ("purse", self.purse_key),
                    ("write-back", self.writeback_key),
                )
            },
        }
        atomic_write(path, json.dumps(doc).encode("ascii"))

    @classmethod
    def load(cls, path: Path) -> SecurityModule:
        try:
            doc = json.loads(path.read_text(encoding="ascii"))
            if doc.get("format") != SAM_FORMAT:
                raise ValueError("wrong format")
            k = {name: SecretKey(bytes.fromhex(v)) for name, v in doc["keys"].items()}
            return cls(doc["meter_no"], k["card"], k["tool"], k["purse"], k["write-back"])
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"cannot read the meter's security module {path}: {exc}") from None


def sam_path(state_path: str | os.PathLike[str]) -> Path:
    """Where the security module of the meter whose state is at ``state_path`` lives."""
    p = Path(state_path)
    return p.with_name(p.name + ".sam")
