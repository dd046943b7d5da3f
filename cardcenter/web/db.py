"""The request's database session and desk.

:func:`session` is one SQLAlchemy session per request, kept on
:data:`flask.g` and closed at teardown: whatever a view did not commit is
rolled back then. A view that writes commits itself
(``session().commit()``); the audit entries it added commit with it.

:func:`desk` is the :class:`~cardcenter.sales.desk.Desk` of the logged-in
operator at this hall, one per request, with the application's keys. A
desk's flows open their own transactions (read, write the card, confirm),
so :func:`desk` first commits whatever the request's session holds: on
SQLite every transaction takes the write lock at its start (``BEGIN
IMMEDIATE``), and a request session left open would make the desk's own
transactions wait for it until the busy timeout.
"""

from __future__ import annotations

from flask import Flask, g
from sqlalchemy.orm import Session

from cardcenter.sales.desk import Desk
from cardcenter.web.state import state


def session() -> Session:
    """This request's session (made on first use)."""
    found: Session | None = g.get("db_session")
    if found is None:
        found = state().sessions()
        g.db_session = found
    return found


def desk() -> Desk:
    """The desk of the logged-in operator (commits the request's session first; see above)."""
    found: Desk | None = g.get("desk")
    if found is None:
        from cardcenter.web.auth import current_operator

        operator = current_operator()
        if operator is None:
            raise RuntimeError("desk() needs a logged-in operator: decorate the view")
        db = session()
        if db.in_transaction():
            db.commit()
        app_state = state()
        found = Desk(
            app_state.sessions,
            app_state.keys,
            operator=operator.username,
            site=app_state.config.site,
        )
        g.desk = found
    elif (db := g.get("db_session")) is not None and db.in_transaction():
        db.commit()
    return found


def init_app(app: Flask) -> None:
    @app.teardown_appcontext
    def close_session(_exc: BaseException | None) -> None:
        found: Session | None = g.pop("db_session", None)
        if found is not None:
            found.close()
