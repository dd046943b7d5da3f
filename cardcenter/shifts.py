"""A cashier's shift: opened with a float, closed with a cash-up checked against the books.

The drawer must hold, at the end of a shift, what it held at the start (the
float) plus the cash the operator took minus the cash they handed back.
What the books say was taken and handed back follows the sales report's
cash-up (:func:`cardcenter.reports.services.sales_report`), so a shift's
expected cash and the report's ``takings`` for that operator agree:

- **taken**: the ``tendered`` of the operator's sales at the shift's site
  made during the shift and not void or pending (written, delivered, and
  those reversed or refunded later: the cash was taken all the same); a
  meter swap's carry-over took no cash and is not counted;
- **refunded**: the ``tendered`` of the sales at that site that this
  operator reversed (or refunded) during the shift, whoever sold them when:
  the money goes back out of the drawer of the operator who hands it over,
  as the journal books it (a sale is reversed only at the hall that sold
  it, whose till took its cash);
- **paid out**: account-closing refunds this operator paid from this site's
  till during the shift (the journal's ``meter:N -> till:SITE`` movements,
  net of a customer settling a debt the other way: an overdrawn meter's
  debt, at closing or at a meter swap).

A shift is not closed while the operator has a sale pending at its site (a
card write cut short): its cash is in the drawer, and the books take it
only when the sale is confirmed (or void it), so the count would not agree.

``expected = float + taken - refunded - paid out``; the difference is
counted minus expected (negative: the drawer is short). A difference of
more than :data:`NOTE_OVER` either way needs a note saying why.

Sales are all cash here: the books record no payment method, and card or
bank payments come through the JSON API under an API client, never under a
cashier's log-in.

At most one shift per operator is open at a time; the partial unique index
on ``shifts`` settles two requests racing to open one. Every function takes
the caller's session and flushes; the caller audits and commits, so the
shift and its audit entry land together. The one write that can lose a race
(opening) runs in a savepoint of its own, so losing it is a
:class:`~cardcenter.core.errors.ConflictError` and leaves the caller's
transaction usable.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cardcenter.core.db import utcnow
from cardcenter.core.errors import ConflictError, InvalidInputError, NotFoundError
from cardcenter.operators.models import Operator, Shift
from cardcenter.reports.services import PAID_BACK, PAID_BACK_BY, TAKEN
from cardcenter.sales import ledger
from cardcenter.sales.models import Sale, SaleKind, SaleStatus
from cardcenter.tariffs.pricing import format_money

__all__ = [
    "MAX_AMOUNT",
    "NOTE_LIMIT",
    "NOTE_OVER",
    "CashUp",
    "cash_up",
    "close_shift",
    "open_shift",
    "open_shift_of",
]

NOTE_OVER = 1000
"""A difference of more than this (minor units, 10.00) either way needs a note."""
NOTE_LIMIT = 400
"""The note column's length."""
MAX_AMOUNT = 10**12
"""More than any drawer holds (10 000 000 000.00): a typo, not a float."""


@dataclass(frozen=True)
class CashUp:
    """What the books say the drawer holds, and how the count compares."""

    opening_float: int
    sales: int
    """Sales whose cash was taken in the shift."""
    taken: int
    refunds: int
    """Sales reversed or refunded in the shift."""
    refunded: int
    paid_out: int
    """Account-closing refunds paid from the till (net)."""
    expected: int
    counted: int | None = None
    difference: int | None = None


def open_shift_of(session: Session, operator_id: int) -> Shift | None:
    """The operator's open shift, or None."""
    return session.scalar(
        select(Shift).where(Shift.operator_id == operator_id, Shift.closed_at.is_(None))
    )


def _amount(value: int, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(field, f"{value!r} is not an amount in minor units")
    if not 0 <= value <= MAX_AMOUNT:
        raise InvalidInputError(field, "give an amount of 0 or more, as counted")
    return value


def open_shift(
    session: Session,
    operator_id: int,
    *,
    site: str,
    opening_float: int,
    now: datetime | None = None,
) -> Shift:
    """Open a shift for the operator at ``site`` with ``opening_float`` in the drawer.

    Refused (:class:`ConflictError`) while the operator has a shift open:
    the cash-up of that one is still owed.
    """
    _amount(opening_float, "opening_float")
    operator = session.get(Operator, operator_id)
    if operator is None:
        raise NotFoundError(f"There is no operator {operator_id}.")
    if open_shift_of(session, operator_id) is not None:
        raise ConflictError(
            f"{operator.username} has a shift open already: close it with its cash-up first"
        )
    shift = Shift(
        operator_id=operator_id,
        site=site,
        opened_at=now or utcnow(),
        opening_float=opening_float,
    )
    try:
        with session.begin_nested():
            session.add(shift)
    except IntegrityError:
        raise ConflictError(
            f"{operator.username} opened a shift at the same moment elsewhere: "
            "reload the page to see it"
        ) from None
    return shift


def cash_up(session: Session, shift: Shift, *, until: datetime | None = None) -> CashUp:
    """What the drawer of ``shift`` should hold at ``until`` (default: its close, else now)."""
    end = until or shift.closed_at or utcnow()
    start = shift.opened_at

    sold = session.execute(
        select(func.count(), func.coalesce(func.sum(Sale.tendered), 0)).where(
            Sale.operator_id == shift.operator_id,
            Sale.site == shift.site,
            Sale.status.in_(TAKEN),
            Sale.kind != SaleKind.CARRY_OVER,
            Sale.created_at >= start,
            Sale.created_at <= end,
        )
    ).one()
    paid_back_at = func.coalesce(Sale.reversed_at, Sale.created_at)
    paid_back = session.execute(
        select(func.count(), func.coalesce(func.sum(Sale.tendered), 0)).where(
            PAID_BACK_BY == shift.operator_id,  # noqa: SIM300 - a column, not a constant
            Sale.site == shift.site,
            Sale.status.in_(PAID_BACK),
            paid_back_at >= start,
            paid_back_at <= end,
        )
    ).one()
    till = ledger.till(shift.site)
    entry = ledger.JournalEntry

    def closing(source_is_till: bool) -> int:
        other = entry.destination if source_is_till else entry.source
        mine = entry.source if source_is_till else entry.destination
        total = session.scalar(
            select(func.coalesce(func.sum(entry.amount), 0)).where(
                entry.operator_id == shift.operator_id,
                entry.sale_id.is_(None),
                mine == till,
                other.like("meter:%"),
                entry.at >= start,
                entry.at <= end,
            )
        )
        return int(total or 0)

    paid_out = closing(source_is_till=False) - closing(source_is_till=True)
    taken, refunded = int(sold[1]), int(paid_back[1])
    return CashUp(
        opening_float=shift.opening_float,
        sales=int(sold[0]),
        taken=taken,
        refunds=int(paid_back[0]),
        refunded=refunded,
        paid_out=paid_out,
        expected=shift.opening_float + taken - refunded - paid_out,
        counted=shift.counted_cash,
        difference=shift.difference,
    )


def close_shift(
    session: Session,
    operator_id: int,
    *,
    counted: int,
    note: str = "",
    now: datetime | None = None,
    note_over: int = NOTE_OVER,
) -> tuple[Shift, CashUp]:
    """Close the operator's open shift with the cash ``counted`` in the drawer.

    Records the expected cash and the difference; a difference of more than
    ``note_over`` either way is refused without a ``note`` (field ``note``),
    so a short drawer is explained when it is counted, not weeks later.
    """
    _amount(counted, "counted_cash")
    text = note.strip() if isinstance(note, str) else ""
    if len(text) > NOTE_LIMIT:
        raise InvalidInputError("note", f"keep the note to {NOTE_LIMIT} characters")
    shift = session.scalar(
        select(Shift)
        .where(Shift.operator_id == operator_id, Shift.closed_at.is_(None))
        .with_for_update()
    )
    if shift is None:
        raise ConflictError("there is no open shift to close: open one first")
    pending = session.scalars(
        select(Sale.id).where(
            Sale.operator_id == operator_id,
            Sale.site == shift.site,
            Sale.status == SaleStatus.PENDING,
        )
    ).all()
    if pending:
        raise ConflictError(
            f"sale {', '.join(map(str, pending))} is pending (its card write was cut short): "
            "finish it with the card in the reader (repeat the sale, or `sale recover`) "
            "before the cash-up, so the books count its cash"
        )
    at = now or utcnow()
    figures = cash_up(session, shift, until=at)
    difference = counted - figures.expected
    if abs(difference) > note_over and not text:
        raise InvalidInputError(
            "note",
            f"the count differs from the expected cash by {format_money(difference)}: "
            f"say why in a note (needed above {format_money(note_over)})",
        )
    shift.closed_at = at
    shift.counted_cash = counted
    shift.expected_cash = figures.expected
    shift.difference = difference
    shift.note = text
    session.flush()
    return shift, replace(figures, counted=counted, difference=difference)
