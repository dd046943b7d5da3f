"""Finding (or, on a fresh install, creating) the operator at the desk."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from cardcenter.core.errors import CentreError, InvalidInputError
from cardcenter.operators.models import Operator, Role


def ensure_operator(
    session: Session, username: str, *, site: str, role: Role = Role.ADMINISTRATOR
) -> Operator:
    """The operator ``username``; created with ``role`` at ``site`` if unknown.

    The command line runs as one named operator (``CARDCENTER_OPERATOR``);
    the web application (a later issue) adds passwords and log-in.
    """
    username = username.strip()
    if not username or len(username) > 64:
        raise InvalidInputError("operator", "give a user name of 1 to 64 characters")
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
    if RANK[Role(operator.role)] < RANK[role]:
        raise NotAllowedError(
            f"operator {operator.username} is a {operator.role}; this needs a {role.value}"
        )
