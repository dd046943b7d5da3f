"""Which STA tables EA07 tokens are made with: the configuration, read at the edges.

Production tables are issued to licensed utilities and never ship with the
project; a utility names its file in ``CARDCENTER_STS_TABLES``. Without it
the standard's published sample tables are used, which any STS engine knows,
so every result and log line says "sample tables" rather than letting a test
set-up pass for a production one.
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from pathlib import Path

from cardcenter.core.errors import InvalidInputError
from cardlayout.errors import FormatError
from cardlayout.sts.identity import EncryptionAlgorithm
from cardlayout.sts.tables import SAMPLE_TABLES, StaTables, load_tables

TABLES_VARIABLE = "CARDCENTER_STS_TABLES"
SAMPLE = "sample tables"

log = logging.getLogger(__name__)


def configured_tables(environ: dict[str, str] | None = None) -> str | None:
    """The production tables file the configuration names (absolute), or None for the sample."""
    env = os.environ if environ is None else environ
    value = (env.get(TABLES_VARIABLE) or "").strip()
    if not value:
        return None
    path = str(Path(value).expanduser().resolve())
    tables_of(path)  # refuse a file that is not a table set now, not at the first vend
    return path


def tables_of(path: str | None) -> StaTables:
    """The tables a meter's ``sts_tables`` names (None: the standard's sample tables)."""
    if path is None:
        return SAMPLE_TABLES
    try:
        return _load(path)
    except FormatError as exc:
        raise InvalidInputError("STA tables", str(exc)) from None
    except OSError as exc:
        raise InvalidInputError(
            "STA tables", f"{path} cannot be read ({exc.strerror or exc}); check {TABLES_VARIABLE}"
        ) from None


@lru_cache(maxsize=8)
def _load(path: str) -> StaTables:
    tables = load_tables(path)
    log.info("STS EA07 production tables loaded from %s", path)
    return tables


def describe_tables(ea: str, path: str | None) -> str | None:
    """What results say about the tables: "sample tables", the file, or None (not EA07)."""
    if EncryptionAlgorithm(ea) is not EncryptionAlgorithm.EA07:
        return None
    return SAMPLE if path is None else path


_warned: list[bool] = []


def warn_if_sample(ea: str, path: str | None) -> None:
    """Log, once per process, that EA07 tokens are being made with the sample tables."""
    if describe_tables(ea, path) == SAMPLE and not _warned:
        _warned.append(True)
        log.warning(
            "STS EA07 tokens are made with the standard's sample tables (%s is not set): "
            "fine for tests and demonstrations, not for meters in the field",
            TABLES_VARIABLE,
        )
