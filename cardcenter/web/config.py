"""The service-hall application's configuration: the centre's, plus what a web desk needs.

Read once from the environment into a frozen value (as
:class:`cardcenter.core.config.Config` is) and handed to
:func:`cardcenter.web.create_app`; tests build their own with
:func:`dataclasses.replace`.

=============================  ==========================================================
variable                       meaning (default)
=============================  ==========================================================
``CARDCENTER_SECRET_KEY``      signs the session cookie (a random key kept in
                               ``secret_key`` in the data directory, mode 0600)
``CARDCENTER_SESSION_MINUTES`` idle minutes before a log-in expires (15)
``CARDCENTER_READER``          the desk's PC/SC reader, a name, part of one or an index
                               (the first real reader; without one, the vpcd reader)
``CARDCENTER_VPCD_PORT``       vpcd port of the virtual reader (35963: "Virtual PCD 00 00")
``CARDCENTER_TIMEZONE``        the hall's time zone for dates on pages (``TZ``, else UTC)
``CARDCENTER_COOKIE_SECURE``   ``1`` when the application is served over HTTPS
=============================  ==========================================================

and the centre's own ``CARDCENTER_DATABASE_URL``, ``CARDCENTER_KEYSTORE``,
``CARDCENTER_DATA_DIR`` and ``CARDCENTER_SITE`` (the hall this desk is in).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from platformdirs import user_data_dir

from cardcenter.core.config import APP_NAME, Config
from cardcenter.core.errors import InvalidInputError
from cardcenter.operators.services import PASSWORD_METHOD, LoginPolicy
from cardcenter.reports.services import zone_of

SECRET_KEY_FILE = "secret_key"
VPCD_PORT = 35963


@dataclass(frozen=True)
class WebConfig:
    """Everything :func:`cardcenter.web.create_app` needs to know, nothing global."""

    core: Config
    secret_key: str = field(repr=False)
    data_dir: Path
    session_minutes: int = 15
    """Idle time after which an operator has to log in again."""
    max_failures: int = 5
    """Failed log-ins in a row that lock an operator out ..."""
    lockout_minutes: int = 15
    """... for this long (or until an administrator unlocks)."""
    reader: str | None = None
    """The desk's reader (``CARDCENTER_READER``); None picks one (:mod:`cardcenter.web.reader`)."""
    vpcd_port: int = VPCD_PORT
    timezone: str = "UTC"
    cookie_secure: bool = False
    keystore_passphrase: str | None = field(default=None, repr=False)
    """The key file's passphrase; None reads ``CARDLAYOUT_KEYSTORE_PASSPHRASE`` (or prompts)."""
    password_method: str = PASSWORD_METHOD
    """werkzeug hash method for passwords set through the application (tests make it cheap)."""

    @property
    def site(self) -> str:
        """The service hall this application serves (``CARDCENTER_SITE``)."""
        return self.core.site

    @property
    def login_policy(self) -> LoginPolicy:
        return LoginPolicy(
            max_failures=self.max_failures,
            lockout=timedelta(minutes=self.lockout_minutes),
            password_method=self.password_method,
        )

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> WebConfig:
        env = dict(os.environ if environ is None else environ)
        core = Config.from_env(env)
        data = Path(env.get("CARDCENTER_DATA_DIR") or user_data_dir(APP_NAME, appauthor=False))
        secret = env.get("CARDCENTER_SECRET_KEY") or stored_secret_key(data)
        zone_of(core.timezone)  # a misspelt CARDCENTER_TIMEZONE stops the start, with the reason
        return cls(
            core=core,
            secret_key=secret,
            data_dir=data,
            session_minutes=_positive(env, "CARDCENTER_SESSION_MINUTES", 15),
            reader=env.get("CARDCENTER_READER") or None,
            vpcd_port=_positive(env, "CARDCENTER_VPCD_PORT", VPCD_PORT),
            timezone=core.timezone,
            cookie_secure=env.get("CARDCENTER_COOKIE_SECURE", "") in ("1", "true", "yes"),
        )


def _positive(env: dict[str, str], name: str, default: int) -> int:
    text = env.get(name)
    if not text:
        return default
    if not text.isdigit() or int(text) <= 0:
        raise InvalidInputError(name, f"{text!r} is not a positive whole number")
    return int(text)


def stored_secret_key(data_dir: Path) -> str:
    """The session-signing key kept in the data directory, created on first use.

    Kept rather than made afresh at every start so a restart does not log
    every desk out; created with mode 0600 (and exclusively, so two
    processes starting at once agree on one key) because whoever reads it
    can forge a log-in.
    """
    path = data_dir / SECRET_KEY_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_text(encoding="ascii").strip()
        if len(key) < 32:
            raise InvalidInputError(
                "CARDCENTER_SECRET_KEY", f"{path} holds no usable key; delete it to make a new one"
            ) from None
        return key
    key = secrets.token_hex(32)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(key + "\n")
    return key
