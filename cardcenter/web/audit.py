"""The audit trail from a request: who (operator or API client), what, to what, from where.

``audit("sale.confirm", f"sale:{sale_id}", amount="100.00")`` adds an
:class:`~cardcenter.operators.models.AuditEntry` to the request's session;
it is written when the view commits, together with what it records, so an
action and its audit entry land or fail together (``into=`` writes it in a
service's own transaction instead, for the same reason). An action whose own
transaction is a desk flow (committed already) is audited after it, and the
view commits the entry.

Nothing here updates or deletes an entry, and nothing may: the ORM and the
database both refuse it (see :mod:`cardcenter.operators.models`).
"""

from __future__ import annotations

from typing import Any, cast

from flask import g, has_request_context, request
from sqlalchemy import Table, insert
from sqlalchemy.orm import Session

from cardcenter.core.db import utcnow
from cardcenter.core.loaded import as_written
from cardcenter.core.prepared import Prepared
from cardcenter.operators.models import AuditEntry
from cardcenter.web.db import session

MAX_SUBJECT = 64
MAX_ACTION = 64


def audit(
    action: str,
    subject: str | None = None,
    *,
    operator_id: int | None = None,
    api_client_id: int | None = None,
    into: Session | None = None,
    **detail: Any,
) -> AuditEntry:
    """Record ``action`` on ``subject`` in the request's session (committed by the view).

    ``into`` is another session to add the entry to: the one of the
    transaction that makes the change audited, so both commit together
    (and with one commit where a view's own would be a second).

    The operator (or the API client, once the JSON API sets
    ``g.api_client``) defaults to whoever is logged in; ``detail`` must be
    JSON-serialisable (money as text, times as ISO strings). Never put a
    password or a secret in it.
    """
    if operator_id is None and api_client_id is None:
        operator = g.get("operator")
        client = g.get("api_client")
        operator_id = operator.id if operator is not None else None
        api_client_id = client.id if client is not None else None
    values: dict[str, Any] = {
        "action": action[:MAX_ACTION],
        "subject": subject[:MAX_SUBJECT] if subject else None,
        "operator_id": operator_id,
        "api_client_id": api_client_id,
        "detail": detail,
        "remote_addr": (request.remote_addr or None) if has_request_context() else None,
    }
    if into is None:
        entry = AuditEntry(**values)
        session().add(entry)
        return entry
    return _insert(into, values)


def _insert(into: Session, values: dict[str, Any]) -> AuditEntry:
    """Write an entry of ``values`` in ``into``'s transaction with one INSERT, outside its
    unit of work; the entry as an untracked object (its ``id`` unset).

    An entry is written once and never changed, so tracking it buys nothing,
    nor does the model's constructor (an attribute event per value). The
    statement runs on the driver (:mod:`cardcenter.core.prepared`), as the
    vend's own do.
    """
    values["at"] = utcnow()
    _INSERT.execute(into.connection(), values)
    return as_written(AuditEntry, **values)


_TABLE = cast(Table, AuditEntry.__table__)
_COLUMNS = tuple(column.name for column in _TABLE.columns if column.name != "id")
_INSERT = Prepared(insert(_TABLE), column_keys=_COLUMNS)  # on the vend's hot path
