"""Configuration from the environment, read once into a frozen value.

No module keeps a global configuration: the command line builds a
:class:`Config` and hands it down, and tests build their own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from platformdirs import user_data_dir

APP_NAME = "cardcenter"


@dataclass(frozen=True)
class Config:
    """Where the centre keeps its books and keys, and who is at the desk."""

    database_url: str
    keystore: str
    site: str = "HQ"
    operator: str = "admin"
    timezone: str = "UTC"
    """The hall's time zone (IANA name): the days of the sales report and the dashboard."""

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Config:
        env = dict(os.environ if environ is None else environ)
        # The user's data directory (~/.local/share/cardcenter) unless told otherwise.
        data = Path(env.get("CARDCENTER_DATA_DIR") or user_data_dir(APP_NAME, appauthor=False))
        url = env.get("CARDCENTER_DATABASE_URL") or f"sqlite:///{data / 'cardcenter.db'}"
        keystore = env.get("CARDCENTER_KEYSTORE") or str(data / "keys.json")
        return cls(
            database_url=url,
            keystore=keystore,
            site=env.get("CARDCENTER_SITE", "HQ"),
            operator=env.get("CARDCENTER_OPERATOR", "admin"),
            timezone=env.get("CARDCENTER_TIMEZONE") or _named_zone(env.get("TZ")) or "UTC",
        )


def _named_zone(tz: str | None) -> str | None:
    """``TZ`` when it names an IANA zone; POSIX rules (``EST5EDT``, ``:/etc/localtime``) are not."""
    if not tz:
        return None
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return tz
