"""EA07's table sets: two nibble substitutions and one 64-bit permutation.

STA's strength rests on the tables, which are issued to licensed utilities;
the project ships only the standard's published sample tables (STS.md) and
reads production tables from a JSON file named in the configuration::

    {"s1": [16 ints], "s2": [16 ints], "p": [64 ints]}

Tables are checked when they are made, not when a token first fails: a
substitution that is not a permutation of 0..15 (or a P that is not one of
0..63) cannot be inverted, so the meter could never decrypt what the centre
vends. Every fault gets a sentence naming the table and the entry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cardlayout.errors import FormatError

__all__ = ["SAMPLE_TABLES", "StaTables", "load_tables"]

_SIZES: Final = {"s1": 16, "s2": 16, "p": 64}


@dataclass(frozen=True, slots=True)
class StaTables:
    """S1 and S2 (nibble substitutions) and P (bit i moves to bit P[i])."""

    s1: tuple[int, ...]
    s2: tuple[int, ...]
    p: tuple[int, ...]

    def __post_init__(self) -> None:
        for name, size in _SIZES.items():
            object.__setattr__(self, name, _permutation(name, getattr(self, name), size))


def load_tables(path: str | Path) -> StaTables:
    """Read and check a table set from a JSON file (format in the module docstring)."""
    where = str(path)
    text = Path(path).read_text(encoding="utf-8")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FormatError(f"{where} is not JSON: {exc}", field="tables") from None
    if not isinstance(document, dict):
        raise FormatError(f"{where} must hold an object with keys s1, s2 and p", field="tables")
    missing = [name for name in _SIZES if name not in document]
    unknown = sorted(str(name) for name in document if name not in _SIZES)
    if missing or unknown:
        parts = []
        if missing:
            parts.append("misses " + ", ".join(missing))
        if unknown:
            parts.append("has unknown keys " + ", ".join(unknown))
        raise FormatError(
            f"{where} {' and '.join(parts)} (expected exactly s1, s2 and p)", field="tables"
        )
    try:
        return StaTables(s1=document["s1"], s2=document["s2"], p=document["p"])
    except FormatError as exc:
        raise FormatError(f"{where}: {exc}", field="tables") from None


def _permutation(name: str, values: object, size: int) -> tuple[int, ...]:
    if not isinstance(values, list | tuple):
        raise FormatError(
            f"table {name} is a list of {size} numbers, got {type(values).__name__}",
            field="tables",
        )
    if len(values) != size:
        raise FormatError(f"table {name} has {len(values)} entries, not {size}", field="tables")
    for index, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < size:
            raise FormatError(
                f"table {name} entry {index} is {value!r}, not a number in 0..{size - 1}",
                field="tables",
            )
    seen: dict[int, int] = {}
    for index, value in enumerate(values):
        if value in seen:
            raise FormatError(
                f"table {name} is not a permutation: {value} appears at entries "
                f"{seen[value]} and {index}",
                field="tables",
            )
        seen[value] = index
    return tuple(values)


SAMPLE_TABLES: Final = StaTables(
    s1=(12, 10, 8, 4, 3, 15, 0, 2, 14, 1, 5, 13, 6, 9, 7, 11),
    s2=(6, 9, 7, 4, 3, 10, 12, 14, 2, 13, 1, 15, 0, 11, 8, 5),
    p=(
        29, 27, 34, 9, 16, 62, 55, 2, 40, 49, 38, 25, 33, 61, 30, 23,
        1, 41, 21, 57, 42, 15, 5, 58, 19, 53, 22, 17, 48, 28, 24, 39,
        3, 60, 36, 14, 11, 52, 54, 12, 31, 51, 10, 26, 0, 45, 37, 43,
        44, 6, 59, 4, 7, 35, 56, 50, 13, 18, 32, 47, 46, 63, 20, 8,
    ),
)  # fmt: skip
"""The standard's published sample tables: for tests and demonstrations only."""
