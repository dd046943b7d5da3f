"""Operators: finding one, roles, passwords, log-in with lock-out, API client credentials.

Everything here takes a session and leaves the transaction to the caller
(the command line's ``transaction``, the web application's request session),
so a log-in's counter update and its audit entry commit together.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, bindparam, inspect, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from cardcenter.core.db import utcnow
from cardcenter.core.errors import CentreError, ConflictError, InvalidInputError
from cardcenter.core.loaded import as_written
from cardcenter.core.prepared import Prepared
from cardcenter.operators.models import LOCALES, ApiClient, Operator, Role

API_OPERATOR_PREFIX = "api:"
"""User names beginning so are the operators API clients sell as (``api:<key id>``)."""


def ensure_operator(
    session: Session, username: str, *, site: str, role: Role = Role.ADMINISTRATOR
) -> Operator:
    """The operator ``username``; created with ``role`` at ``site`` if unknown.

    The command line runs as one named operator (``CARDCENTER_OPERATOR``);
    the web application logs operators in with their passwords.
    """
    username = check_username(username)
    operator = session.scalar(select(Operator).where(Operator.username == username))
    if operator is None:
        operator = Operator(username=username, name=username, role=role, site=site)
        session.add(operator)
        session.flush()
    return operator


RANK = {Role.CASHIER: 1, Role.SUPERVISOR: 2, Role.ADMINISTRATOR: 3}


class NotAllowedError(CentreError):
    """The operator's role does not allow the action."""


def require_role(operator: Operator, role: Role) -> None:
    """Refuse unless ``operator`` holds ``role`` or a higher one."""
    if not operator.active:
        raise NotAllowedError(f"operator {operator.username} is disabled")
    if not has_role(operator.role, role):
        raise NotAllowedError(
            f"operator {operator.username} is a {operator.role}; this needs a {role.value}"
        )


def has_role(held: Role | str, needed: Role) -> bool:
    """Whether a holder of ``held`` may do what needs ``needed`` (roles are ranked)."""
    return RANK[Role(held)] >= RANK[needed]


# -- passwords ---------------------------------------------------------------------------

PASSWORD_METHOD = "scrypt"
"""werkzeug's default: scrypt with n=2**15, r=8, p=1 (about 60 ms a check here).

Slow on purpose: a stolen table of hashes then costs an attacker that much
per guess. Tests pass a cheaper ``method`` (``scrypt:1024:8:1``)."""

MIN_PASSWORD = 8
MAX_PASSWORD = 200


def _hashed(password: str, method: str) -> str:
    """werkzeug's hash of ``password``, werkzeug imported here on first use.

    Only a log-in and a password change need it, while importing werkzeug
    cost every ``cardcenter`` command about 50 ms of its start (a test
    checks the command line does not import it).
    """
    from werkzeug.security import generate_password_hash

    return generate_password_hash(password, method=method)


def _matches(password_hash: str, password: str) -> bool:
    """Whether ``password`` is the one ``password_hash`` was made from (see :func:`_hashed`)."""
    from werkzeug.security import check_password_hash

    return check_password_hash(password_hash, password)


def check_username(username: str) -> str:
    username = username.strip()
    if not username or len(username) > 64 or not username.isprintable():
        raise InvalidInputError("operator", "give a user name of 1 to 64 printable characters")
    return username


def check_new_password(password: str) -> str:
    """A password an operator may choose: 8 to 200 characters, not only blanks."""
    if len(password) < MIN_PASSWORD or len(password) > MAX_PASSWORD or not password.strip():
        raise InvalidInputError(
            "password", f"give {MIN_PASSWORD} to {MAX_PASSWORD} characters, not only blanks"
        )
    return password


def set_password(
    operator: Operator,
    password: str,
    *,
    method: str = PASSWORD_METHOD,
    at: datetime | None = None,
) -> None:
    """Hash and store a new password; it also clears a lock-out and ends older web sessions."""
    operator.password_hash = _hashed(check_new_password(password), method)
    operator.password_changed_at = at or utcnow()
    operator.failed_logins = 0
    operator.locked_until = None


def new_password() -> str:
    """A random password for a new account (shown once to whoever created it)."""
    return secrets.token_urlsafe(12)


@dataclass(frozen=True)
class LoginPolicy:
    """How many failed log-ins lock an operator out, and for how long."""

    max_failures: int = 5
    lockout: timedelta = timedelta(minutes=15)
    password_method: str = PASSWORD_METHOD


class LoginRefusedError(CentreError):
    """A log-in was refused. ``reason`` is for the audit trail, never for the screen:
    the page shows one generic sentence so nobody learns which user names exist."""

    def __init__(self, reason: str, operator: Operator | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.operator = operator


def authenticate(
    session: Session,
    username: str,
    password: str,
    policy: LoginPolicy,
    at: datetime | None = None,
) -> Operator:
    """The operator whose user name and password these are, or :class:`LoginRefusedError`.

    A wrong password counts a failure; the ``max_failures``-th locks the
    operator out for ``policy.lockout`` (reason ``locked`` from then on,
    whatever password is given). An unknown user name still costs one hash
    check, so timing does not tell which names exist. The caller commits
    (the failure counter and the audit entry) whatever the outcome.
    """
    at = at or utcnow()
    operator = session.scalar(select(Operator).where(Operator.username == username.strip()))
    if operator is None or operator.password_hash is None:
        _spend_a_check(password, policy.password_method)
        raise LoginRefusedError("unknown user" if operator is None else "no password", operator)
    if operator.locked_until is not None and operator.locked_until > at:
        raise LoginRefusedError("locked", operator)
    if not _matches(operator.password_hash, password):
        # Counted in the row, not from the copy read above: guesses sent at once (on
        # PostgreSQL their transactions overlap) must each count, or the lock-out
        # could be outrun. The UPDATE waits for any other one's on the row.
        failures = session.execute(
            update(Operator)
            .where(Operator.id == operator.id)
            .values(failed_logins=Operator.failed_logins + 1)
            .returning(Operator.failed_logins)
            .execution_options(synchronize_session=False)
        ).scalar_one()
        set_committed_value(operator, "failed_logins", failures)
        if failures >= policy.max_failures:
            operator.locked_until = at + policy.lockout
            operator.failed_logins = 0
            raise LoginRefusedError("locked now", operator)
        raise LoginRefusedError("wrong password", operator)
    if not operator.active:
        raise LoginRefusedError("disabled", operator)
    operator.failed_logins = 0
    operator.locked_until = None
    return operator


def _spend_a_check(password: str, method: str) -> None:
    _matches(_dummy_hash(method), password)


@functools.cache
def _dummy_hash(method: str) -> str:
    """A hash no password matches, made once per method, to spend the time of a check."""
    return _hashed(secrets.token_hex(16), method)


def unlock(operator: Operator) -> None:
    """Lift a lock-out (an administrator's decision)."""
    operator.failed_logins = 0
    operator.locked_until = None


def is_locked(operator: Operator, at: datetime | None = None) -> bool:
    return operator.locked_until is not None and operator.locked_until > (at or utcnow())


def add_operator(
    session: Session,
    username: str,
    *,
    name: str,
    role: Role,
    site: str,
    password: str | None,
    locale: str = "en",
    method: str = PASSWORD_METHOD,
) -> Operator:
    """A new operator; refused if the user name is taken."""
    username = check_username(username)
    if username.startswith(API_OPERATOR_PREFIX):
        raise InvalidInputError(
            "operator",
            f"user names beginning {API_OPERATOR_PREFIX} are kept for API clients: choose another",
        )
    if session.scalar(select(Operator.id).where(Operator.username == username)) is not None:
        raise ConflictError(f"there is already an operator {username}")
    if locale not in LOCALES:
        raise InvalidInputError("language", f"choose one of {', '.join(LOCALES)}")
    operator = Operator(
        username=username,
        name=name.strip()[:200] or username,
        role=Role(role),
        site=site,
        locale=locale,
    )
    if password is not None:
        set_password(operator, password, method=method)
    session.add(operator)
    session.flush()
    return operator


# -- API clients -------------------------------------------------------------------------


def hash_api_secret(secret: str) -> str:
    """SHA-256 of an API secret.

    A fast hash is right here, unlike for passwords: the secret is 256 random
    bits that nobody can guess from a dictionary, and the API checks it on
    every request, where scrypt would cost more than the sale itself.
    """
    return "sha256$" + hashlib.sha256(secret.encode("utf-8")).hexdigest()


def check_api_secret(client: ApiClient, secret: str) -> bool:
    """Whether ``secret`` is the client's (compared in constant time)."""
    return hmac.compare_digest(client.secret_hash, hash_api_secret(secret))


def add_api_client(session: Session, name: str, role: Role = Role.CASHIER) -> tuple[ApiClient, str]:
    """A new API client and its secret, which is shown this once and never stored."""
    name = name.strip()
    if not name or len(name) > 100 or not name.isprintable():
        raise InvalidInputError("name", "give 1 to 100 printable characters")
    if session.scalar(select(ApiClient.id).where(ApiClient.name == name)) is not None:
        raise ConflictError(f"there is already an API client {name}")
    secret = secrets.token_urlsafe(32)
    client = ApiClient(
        name=name,
        key_id="ck_" + secrets.token_hex(8),
        secret_hash=hash_api_secret(secret),
        role=Role(role),
    )
    session.add(client)
    session.flush()
    return client, secret


_CLIENT_KEYS = tuple(attr.key for attr in inspect(ApiClient).column_attrs)
_CLIENT_OF_KEY = Prepared(
    select(*(getattr(ApiClient, key) for key in _CLIENT_KEYS)).where(
        ApiClient.key_id == bindparam("key_id")
    )
)


def find_api_client(engine: Engine, key_id: str, secret: str) -> ApiClient | None:
    """The active client with these credentials, or None (for the JSON API's authentication).

    Asked on every API request, so one SELECT on the driver, read on its
    own outside any transaction (on SQLite it then takes no write lock),
    and the client an object no session tracks (:func:`as_written`): the
    request reads it, never changes it.
    """
    with engine.connect() as connection:
        row = _CLIENT_OF_KEY.first_alone(connection, {"key_id": key_id})
    if row is None:
        return None
    client = as_written(ApiClient, **dict(zip(_CLIENT_KEYS, row, strict=True)))
    if not client.active or not check_api_secret(client, secret):
        return None
    return client
