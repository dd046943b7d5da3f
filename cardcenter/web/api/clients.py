"""Who is calling: an API client by HTTP Basic authentication, and the desk it sells at.

Every request carries ``Authorization: Basic base64(key_id:secret)``; the
secret is checked against its SHA-256 (:func:`cardcenter.operators.services.find_api_client`).
A missing, malformed or wrong credential and a disabled client all get the
same 401, so the answer does not tell which. The client's role (cashier,
supervisor, administrator) is checked by :func:`client_required`, declared
on each view as ``view.required_role``.

A sale records the operator who made it (``sales.operator_id``), so each
client sells as an operator of its own, ``api:<key id>``: it has no
password (nobody can log in as it) and mirrors the client's role, which the
desk checks again for a reversal. Its site, ``api:<key id>`` too, names the
till its money goes to (``till:api:<key id>``), so what a channel collected
is one balance in the journal, apart from the service hall's cash.

Request ids are the client's own: stored as ``api:<client id>:<request id>``,
so two clients using the same id never see each other's sale, and a desk's
ids never meet a client's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import wraps
from typing import Any, TypeVar, cast

from flask import Flask, Request, current_app, g, request
from flask.blueprints import BlueprintSetupState
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cardcenter.operators.models import ApiClient, Operator, Role
from cardcenter.operators.services import API_OPERATOR_PREFIX, find_api_client, has_role
from cardcenter.sales.desk import Desk
from cardcenter.web import db
from cardcenter.web.api.errors import ApiError, unauthenticated
from cardcenter.web.api.turns import FifoLock
from cardcenter.web.auth import ROLE_NAMES
from cardcenter.web.i18n import _
from cardcenter.web.state import state

F = TypeVar("F", bound=Callable[..., Any])

PREFIX = API_OPERATOR_PREFIX
MAX_KEY_ID = 64
MAX_SECRET = 200
EXTENSION = "cardcenter.api"


@dataclass
class ApiState:
    """What the API keeps for the application's lifetime (in ``app.extensions``).

    ``one_at_a_time`` is a lock on SQLite: every transaction there takes the
    database's write lock at its start, and a request that finds it taken
    polls for it with growing sleeps (SQLite's busy handler: up to 100 ms
    each), so under load some wait seconds while others pass. Queued on a
    lock in the process instead, each API request gets the database the
    moment the one before it is done, in the order the requests came
    (:class:`~cardcenter.web.api.turns.FifoLock`). (PostgreSQL needs no
    such thing.)
    ``operators`` remembers the operator each client sells as, by client and
    role, so a request costs no lookup of it after the first.
    """

    one_at_a_time: FifoLock | None
    operators: dict[tuple[int, str], int] = field(default_factory=dict)
    """Operator ids by (client id, role)."""

    @classmethod
    def install(cls, setup: BlueprintSetupState) -> None:
        """At the blueprint's registration: the application's :class:`ApiState`, and
        log-in sessions for the pages only (:class:`PagesOnlySessions`)."""
        app = cast(Flask, setup.app)
        sqlite = state(app).engine.dialect.name == "sqlite"
        app.extensions[EXTENSION] = cls(FifoLock() if sqlite else None)
        app.session_interface = PagesOnlySessions(f"{setup.url_prefix}/")


class PagesOnlySessions(SecureCookieSessionInterface):
    """The service hall's signed-cookie sessions, and none for the vending API.

    An API request authenticates itself (:func:`authenticate`): a log-in
    cookie that a browser sends along must not count for it, so under the
    API's prefix the session is Flask's empty null session, read as no
    log-in, with no cookie checked or set (nor the time that costs a request).
    """

    def __init__(self, api_prefix: str) -> None:
        self.api_prefix = api_prefix

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if request.path.startswith(self.api_prefix):
            return self.make_null_session(app)
        return super().open_session(app, request)


def api_state() -> ApiState:
    found: ApiState = current_app.extensions[EXTENSION]
    return found


@contextmanager
def database_turn() -> Iterator[None]:
    """This request's turn at the database (see :class:`ApiState`)."""
    lock = api_state().one_at_a_time
    with lock if lock is not None else nullcontext():
        yield


def current_client() -> ApiClient:
    """The authenticated client of this request (only inside :func:`client_required`)."""
    client: ApiClient = g.api_client
    return client


def channel_name(client: ApiClient) -> str:
    """The operator name and the site of ``client``'s sales."""
    return f"{PREFIX}{client.key_id}"


def stored_request_id(request_id: str) -> str:
    """The client's request id as the books keep it."""
    return f"{PREFIX}{current_client().id}:{request_id}"


def own_request_id(stored: str) -> str:
    """The request id as the client gave it (the books' one without the client's prefix)."""
    prefix = f"{PREFIX}{current_client().id}:"
    return stored[len(prefix) :] if stored.startswith(prefix) else stored


def authenticate() -> ApiClient:
    """The active client whose key ID and secret the request carries, or 401."""
    credentials = request.authorization
    if credentials is None or credentials.type != "basic":
        raise unauthenticated()
    key_id, secret = credentials.username or "", credentials.password or ""
    if not key_id or not secret or len(key_id) > MAX_KEY_ID or len(secret) > MAX_SECRET:
        raise unauthenticated()
    client = find_api_client(state().engine, key_id, secret)
    if client is None:
        raise unauthenticated()
    return client


def channel_operator(session: Session, client: ApiClient) -> Operator:
    """The operator ``client`` sells as (made on its first request, its role kept in step)."""
    name = channel_name(client)
    operator = session.scalar(select(Operator).where(Operator.username == name))
    if operator is None:
        try:
            with session.begin_nested():
                operator = Operator(
                    username=name,
                    name=client.name,
                    role=client.role,
                    site=name,
                    active=True,
                    password_hash=None,
                )
                session.add(operator)
        except IntegrityError:  # another request of this client made it first
            operator = session.scalars(select(Operator).where(Operator.username == name)).one()
    if operator.password_hash is not None:
        raise ApiError(
            "forbidden",
            _(
                "The operator name %(name)s belongs to a person who logs in; an administrator "
                "must rename that operator before this API client can sell.",
                name=name,
            ),
        )
    if operator.role != client.role or not operator.active:
        operator.role = Role(client.role)
        operator.active = True
    return operator


def client_required(role: Role) -> Callable[[F], F]:
    """Only for an authenticated API client holding ``role`` or a higher one (else 401/403)."""

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            with database_turn():
                return checked(*args, **kwargs)

        def checked(*args: Any, **kwargs: Any) -> Any:
            client = authenticate()
            if not has_role(client.role, role):
                raise ApiError(
                    "forbidden",
                    _(
                        "This needs an API client with the %(needed)s role; this one is a "
                        "%(held)s.",
                        needed=ROLE_NAMES[role],
                        held=ROLE_NAMES[Role(client.role)],
                    ),
                )
            g.api_client = client
            known = api_state().operators
            operator_id = known.get((client.id, str(client.role)))
            if operator_id is None:
                session = db.session()
                operator_id = channel_operator(session, client).id
                # End the transaction now: on SQLite it holds the write lock, and the
                # desk's flows run transactions of their own.
                session.commit()
                known[(client.id, str(client.role))] = operator_id
            g.api_operator_id = operator_id
            return view(*args, **kwargs)

        wrapped.required_role = role  # type: ignore[attr-defined]
        return wrapped  # type: ignore[return-value]

    return decorate


def channel_operator_id() -> int:
    """The id of the operator this request's client sells as."""
    found: int = g.api_operator_id
    return found


def desk() -> Desk:
    """The desk of this request's client: its operator, its site, the application's keys."""
    found: Desk | None = g.get("api_desk")
    if found is None:
        app_state = state()
        name = channel_name(current_client())
        found = Desk(app_state.sessions, app_state.keys, operator=name, site=name)
        g.api_desk = found
    return found
