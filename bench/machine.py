"""How fast this machine is right now, by a fixed piece of work: printed beside every figure.

The benchmarks run on a shared virtual machine whose speed changes from one
day to the next (the same code has measured up to twice as slow on a busy
day). A rate on its own cannot tell a slower program from a slower machine;
the same fixed work timed just before (and after) a benchmark can. The work
is what the centre's own hot paths are made of: Python dictionaries,
attribute and string handling, and SQLite inserts into an indexed table.

Run alone: ``.venv/bin/python bench/machine.py``.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

ROUNDS = 5
PY_ITEMS = 20_000
SQL_ROWS = 20_000


def _python_work() -> int:
    """Dictionary, string and integer work of a fixed size (the interpreter's speed)."""
    table: dict[str, int] = {}
    for i in range(PY_ITEMS):
        table[f"meter-{i:08d}"] = i * 7 % 1013
    total = 0
    for key, value in table.items():
        if key.endswith("7"):
            total += value
    return total


def _sqlite_work() -> None:
    """Inserts into an indexed in-memory table, one transaction (the database engine's speed)."""
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, serial TEXT, amount INTEGER)")
    db.execute("CREATE INDEX t_serial ON t (serial)")
    with db:
        db.executemany(
            "INSERT INTO t (serial, amount) VALUES (?, ?)",
            ((f"{i * 2654435761 % 2**32:08x}", i) for i in range(SQL_ROWS)),
        )
    db.close()


def _best(work: Callable[[], object], rounds: int = ROUNDS) -> float:
    """The shortest of ``rounds`` timings in seconds: the least disturbed by other load."""
    best = float("inf")
    for _ in range(rounds):
        begun = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - begun)
    return best


def reference() -> str:
    """One line: the fixed work's rates now (higher is a faster machine)."""
    python = PY_ITEMS / _best(_python_work)
    sqlite = SQL_ROWS / _best(_sqlite_work)
    return (
        f"machine reference: {python / 1000:,.0f}k Python items/s, "
        f"{sqlite / 1000:,.0f}k SQLite inserts/s (bench/machine.py; higher is faster)"
    )


if __name__ == "__main__":
    print(reference())
