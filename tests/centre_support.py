"""Helpers the centre's tests share (imported as ``centre_support``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

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
