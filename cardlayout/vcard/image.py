"""The virtual card's non-volatile memory and its image file.

Everything a real card keeps in EEPROM (serial, life cycle, keys, the file
tree and each file's bytes) is one :class:`CardImage`. It is saved as JSON
(bytes as hex, which is the edge: a person can read the image) and written
atomically, so a killed process leaves the previous image or the new one.
An image without a path lives in memory only, which keeps exhaustive tear
sweeps fast.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cardlayout.errors import FormatError
from cardlayout.fileio import atomic_write

IMAGE_FORMAT = "cardlayout-vcard/1"
LIFE_INITIALISATION = "initialisation"
LIFE_OPERATIONAL = "operational"
MF = 0x3F00


@dataclass
class KeyRecord:
    """One key of the card's key file."""

    value: bytes
    version: int
    tries_left: int


@dataclass
class ElementaryFile:
    """A transparent EF: its bytes and who may update it."""

    fid: int
    sfi: int
    data: bytearray
    update_keys: frozenset[int]


@dataclass
class DedicatedFile:
    """A DF (one per utility) holding EFs."""

    fid: int
    efs: dict[int, ElementaryFile] = field(default_factory=dict)

    def by_sfi(self, sfi: int) -> ElementaryFile | None:
        """The EF with short identifier ``sfi``, if any."""
        for ef in self.efs.values():
            if ef.sfi == sfi:
                return ef
        return None


@dataclass
class CardImage:
    """The card's whole persistent state."""

    serial: bytes
    life_cycle: str = LIFE_INITIALISATION
    keys: dict[int, KeyRecord] = field(default_factory=dict)
    dfs: dict[int, DedicatedFile] = field(default_factory=dict)
    path: Path | None = None

    def save(self) -> None:
        """Write the image atomically (temp file, fsync, rename, fsync dir)."""
        if self.path is None:
            return
        text = json.dumps(self.to_json(), indent=1, sort_keys=True)
        atomic_write(self.path, text.encode("ascii"))

    def to_json(self) -> dict[str, Any]:
        """The JSON document of the image."""
        return {
            "format": IMAGE_FORMAT,
            "serial": self.serial.hex().upper(),
            "life_cycle": self.life_cycle,
            "keys": {
                f"{kid:02X}": {
                    "value": rec.value.hex().upper(),
                    "version": rec.version,
                    "tries_left": rec.tries_left,
                }
                for kid, rec in sorted(self.keys.items())
            },
            "dfs": {
                f"{df.fid:04X}": {
                    f"{ef.fid:04X}": {
                        "sfi": ef.sfi,
                        "update_keys": sorted(ef.update_keys),
                        "data": bytes(ef.data).hex().upper(),
                    }
                    for ef in df.efs.values()
                }
                for df in self.dfs.values()
            },
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any], path: Path | None = None) -> CardImage:
        """Rebuild an image; a damaged document is a :class:`FormatError`."""
        try:
            if doc.get("format") != IMAGE_FORMAT:
                raise FormatError(f"not a virtual card image (format {doc.get('format')!r})")
            image = cls(
                serial=bytes.fromhex(doc["serial"]),
                life_cycle=str(doc["life_cycle"]),
                path=path,
            )
            for kid, rec in doc["keys"].items():
                image.keys[int(kid, 16)] = KeyRecord(
                    bytes.fromhex(rec["value"]), int(rec["version"]), int(rec["tries_left"])
                )
            for df_fid, efs in doc["dfs"].items():
                df = DedicatedFile(int(df_fid, 16))
                for ef_fid, ef in efs.items():
                    df.efs[int(ef_fid, 16)] = ElementaryFile(
                        int(ef_fid, 16),
                        int(ef["sfi"]),
                        bytearray(bytes.fromhex(ef["data"])),
                        frozenset(int(k) for k in ef["update_keys"]),
                    )
                image.dfs[df.fid] = df
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            if isinstance(exc, FormatError):
                raise
            raise FormatError(f"damaged virtual card image: {exc}") from exc
        if len(image.serial) != 8:
            raise FormatError("damaged virtual card image: the serial is not 8 bytes")
        return image

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CardImage:
        """Read an image file."""
        p = Path(path)
        try:
            doc = json.loads(p.read_text(encoding="ascii"))
        except FileNotFoundError as exc:
            raise FormatError(f"no virtual card image at {p}") from exc
        except (OSError, ValueError) as exc:
            raise FormatError(f"cannot read virtual card image {p}: {exc}") from exc
        if not isinstance(doc, dict):
            raise FormatError(f"{p} is not a virtual card image")
        return cls.from_json(doc, p)

    def copy(self) -> CardImage:
        """A deep copy in memory (no path), for sweeps that restart often."""
        return CardImage.from_json(self.to_json())
