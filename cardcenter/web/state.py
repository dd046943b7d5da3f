"""What one application holds for its lifetime, kept in ``app.extensions["cardcenter"]``.

The engine and its sessionmaker, the master key store (opened once at
start: a key file's passphrase is asked for, or read from
``CARDLAYOUT_KEYSTORE_PASSPHRASE``, once, not per request; a PKCS#11 token
stays logged in), the reader service and the virtual card tray. Nothing
lives in module globals, so two applications (two tests) in one process
never share a database or keys. :meth:`AppState.close` releases it all.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from cardcenter.core.db import make_engine, session_factory
from cardcenter.web.blueprints import NavItem
from cardcenter.web.config import WebConfig
from cardcenter.web.reader import ReaderService
from cardcenter.web.vcards import VirtualCardTray
from cardlayout.security.diversify import CardKeys
from cardlayout.security.keystore import KeyStore, open_keystore

EXTENSION = "cardcenter"


@dataclass
class AppState:
    """The application's database, keys and reader."""

    config: WebConfig
    engine: Engine
    sessions: sessionmaker[Session]
    keystore: KeyStore
    keys: CardKeys
    reader: ReaderService
    tray: VirtualCardTray
    nav: tuple[NavItem, ...] = ()
    """The menu entries of every section, in order (filled by ``create_app``)."""

    @classmethod
    def open(cls, config: WebConfig) -> AppState:
        """Open the database engine and the key store; nothing is connected to yet."""
        engine = make_engine(config.core.database_url)
        try:
            store = open_keystore(config.core.keystore, passphrase=config.keystore_passphrase)
        except BaseException:
            engine.dispose()
            raise
        tray = VirtualCardTray(config.data_dir / "vcards", config.vpcd_port)
        reader = ReaderService(config.reader, vpcd_port=config.vpcd_port, tray=tray)
        return cls(config, engine, session_factory(engine), store, CardKeys(store), reader, tray)

    def close(self) -> None:
        """Take the virtual card out, forget the keys, close the database connections."""
        try:
            self.tray.remove()
        finally:
            self.keystore.close()
            self.engine.dispose()


def state(app: Flask | None = None) -> AppState:
    """The state of ``app`` (default: the application handling the request)."""
    found: AppState = (app or current_app).extensions[EXTENSION]
    return found
