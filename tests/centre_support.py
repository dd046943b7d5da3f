"""Helpers the centre's tests share (imported as ``centre_support``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from cardlayout.security.keystore import KeyStore, init_master_keys, open_keystore

KEYSTORE_PASSPHRASE = "centre tests"


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
