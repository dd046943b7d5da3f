"""Every part of the application, registered by :func:`cardcenter.web.create_app` in this order.

A part is a :class:`Section`: a Flask blueprint and the menu entries it adds
to ``base.html`` (each shown to operators holding its role or a higher one).
A new part defines ``SECTION = Section(bp, (NavItem(...),))`` in its own
module and adds ONE line to :data:`SECTIONS` below; nothing else in the
application changes.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Blueprint

from cardcenter.operators.models import Role


@dataclass(frozen=True)
class NavItem:
    """A menu entry: the endpoint it links to, its label, who sees it, where it sorts."""

    endpoint: str
    label: object
    """A lazy string (``_l("Customers")``), so it is translated per request."""
    role: Role = Role.CASHIER
    order: int = 50


@dataclass(frozen=True)
class Section:
    blueprint: Blueprint
    nav: tuple[NavItem, ...] = ()


def sections() -> tuple[Section, ...]:
    """The application's parts (imported here, when the application is made)."""
    from cardcenter.web import (
        api,
        auth,
        customers,
        dashboard,
        operators,
        reports,
        selling,
        shifts,
        tariffs,
    )

    SECTIONS: tuple[Section, ...] = (
        auth.SECTION,
        dashboard.SECTION,
        selling.SECTION,
        customers.SECTION,
        shifts.SECTION,
        tariffs.SECTION,
        reports.SECTION,
        operators.SECTION,
        api.SECTION,
    )
    return SECTIONS
