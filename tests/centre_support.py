"""Helpers the centre's tests share (imported as ``centre_support``)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from cardlayout.security.keystore import KeyStore, init_master_keys, open_keystore

KEYSTORE_PASSPHRASE = "centre tests"
PG_URL = os.environ.get("CARDCENTER_TEST_PG_URL", "postgresql://root@127.0.0.1:5432/test")
"""The PostgreSQL the tests use (CI runs every database test on it as well as on SQLite)."""


@dataclass
class Database:
    """One test's database: its URL (for subprocesses), engine and sessions."""

    backend: str
    url: str
    engine: Engine
    sessions: sessionmaker[Session]


def make_keystore(path: Path) -> KeyStore:
    """A key file with every master key, at a low scrypt cost for speed."""
    store = open_keystore(str(path), passphrase=KEYSTORE_PASSPHRASE, create=True, scrypt_n=2**10)
    init_master_keys(store)
    return store


def in_threads(*calls: Callable[[], Any], together: bool = False) -> list[Any]:
    """Run each call in a thread of its own; the results in order (an exception raised
    is the result). ``together`` releases them at once at a barrier."""
    barrier = threading.Barrier(len(calls)) if together else None
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        try:
            if barrier is not None:
                barrier.wait(10)
            results[i] = calls[i]()
        except BaseException as exc:  # reported to the test as the call's result
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert not any(thread.is_alive() for thread in threads), "a call hung"
    return results
