"""What every command needs: configuration, the database, keys, the desk, output.

Built per command from the environment (``CARDCENTER_DATABASE_URL``,
``CARDCENTER_KEYSTORE``, ``CARDCENTER_DATA_DIR``, ``CARDCENTER_SITE``,
``CARDCENTER_OPERATOR``) and the command's options; nothing global.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, inspect
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from cardcenter.core.config import Config
from cardcenter.core.db import make_engine, session_factory
from cardcenter.core.errors import CentreError
from cardcenter.operators.services import NotAllowedError
from cardcenter.sales.desk import Desk
from cardlayout.cli.common import add_reader_options, open_channel
from cardlayout.codec.money import parse_decimal
from cardlayout.errors import FormatError
from cardlayout.security.diversify import CardKeys
from cardlayout.security.keystore import open_keystore
from cardlayout.transport.channel import CardChannel


class DatabaseUnavailableError(CentreError):
    """The database cannot be reached or has not been made yet."""


ERRORS: tuple[type[Exception], ...] = (CentreError, NotAllowedError)


def add_common(
    parser: argparse.ArgumentParser, *, keys: bool = False, reader: bool = False
) -> None:
    """``--json`` always; ``--keystore`` and the reader options where the command needs them."""
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    if keys:
        parser.add_argument(
            "--keystore",
            metavar="SPEC",
            help="key store: a key file path (passphrase from CARDLAYOUT_KEYSTORE_PASSPHRASE) "
            "or a pkcs11: URI; default CARDCENTER_KEYSTORE or keys.json in the data directory",
        )
    if reader:
        add_reader_options(parser)


def config_of(args: argparse.Namespace) -> Config:
    config = Config.from_env()
    keystore = getattr(args, "keystore", None)
    if keystore:
        config = dataclasses.replace(config, keystore=keystore)
    return config


def engine_of(config: Config, *, must_exist: bool = True) -> Engine:
    """The engine; refuses a database that ``cardcenter init`` has not made."""
    try:
        engine = make_engine(config.database_url)
        if must_exist and not inspect(engine).has_table("alembic_version"):
            raise DatabaseUnavailableError(
                "the database has no centre schema yet: run `cardcenter init` first"
            )
    except OperationalError as exc:
        raise DatabaseUnavailableError(
            f"the database cannot be opened ({_first_line(exc)}); check CARDCENTER_DATABASE_URL"
        ) from None
    return engine


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextmanager
def sessions_of(args: argparse.Namespace) -> Iterator[sessionmaker[Session]]:
    engine = engine_of(config_of(args))
    try:
        yield session_factory(engine)
    except SQLAlchemyError as exc:
        raise DatabaseUnavailableError(f"the database failed: {_first_line(exc)}") from None
    finally:
        engine.dispose()


@contextmanager
def desk_of(args: argparse.Namespace) -> Iterator[Desk]:
    """A desk for this command: database, keys and the operator from the environment."""
    config = config_of(args)
    with sessions_of(args) as sessions, open_keystore(config.keystore) as store:
        yield Desk(sessions, CardKeys(store), operator=config.operator, site=config.site)


def channel_of(args: argparse.Namespace) -> CardChannel:
    return open_channel(args)


def money_arg(text: str) -> int:
    """An amount typed in currency units ("200", "200.5", "200.50") as minor units."""
    try:
        return parse_decimal(text, 2, field="amount")
    except FormatError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def emit(args: argparse.Namespace, result: Any, text: Callable[[Any], str] | None = None) -> int:
    """Print ``result`` as JSON with ``--json``, else as ``text(result)`` or key: value lines."""
    if getattr(args, "json", False):
        print(json.dumps(result, indent=2, default=str, ensure_ascii=False))
    elif text is not None:
        print(text(result))
    else:
        print(key_values(result))
    return 0


def key_values(result: Any, indent: str = "") -> str:
    """A dict as aligned ``key: value`` lines (nested dicts indented)."""
    if not isinstance(result, dict):
        return f"{indent}{result}"
    width = max((len(str(k)) for k in result), default=0)
    lines = []
    for key, value in result.items():
        if isinstance(value, dict):
            lines.append(f"{indent}{key}:")
            lines.append(key_values(value, indent + "  "))
        elif isinstance(value, list):
            shown = ", ".join(str(v) for v in value) if value else "none"
            lines.append(f"{indent}{str(key).ljust(width)}  {shown}")
        else:
            lines.append(f"{indent}{str(key).ljust(width)}  {'-' if value is None else value}")
    return "\n".join(lines)


def progress_bar(label: str, stream: Any = None) -> Callable[[int, int | None], None]:
    """A one-line progress bar on stderr for long jobs (``done`` of ``total``)."""
    out = stream or sys.stderr
    state = {"last": -1}

    def show(done: int, total: int | None) -> None:
        if total:
            percent = done * 100 // total
            if percent == state["last"] and done != total:
                return
            state["last"] = percent
            bar = "#" * (percent // 4)
            out.write(f"\r{label} [{bar:<25}] {percent:3d}% {done}/{total}")
        else:
            out.write(f"\r{label} {done}")
        if total and done >= total:
            out.write("\n")
        out.flush()

    return show
