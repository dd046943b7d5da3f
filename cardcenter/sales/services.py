"""The books' side of every card write: record it pending, then confirm or cancel.

A card write is announced in the database (``Card.pending_*`` and, for a
sale, a pending :class:`Sale`) and committed before its first byte reaches
the card. Whatever happens next (a pulled card, a crash, a power cut at the
desk) the next reading of the card shows either the old purse or the new one
(the purse is written last and read back; a torn purse shows neither), and
:func:`settle_pending` confirms, cancels or asks for the write again. Money
moves in the journal only on confirmation, so a sale that never reached the
card never took money into the books.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import Connection, Integer, Table, bindparam, insert, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from cardcenter.cards.models import Card, CardStatus
from cardcenter.cards.reading import CardReading
from cardcenter.core.db import connection_of
from cardcenter.core.errors import CardRefusedError, ConflictError
from cardcenter.core.loaded import RowObjects
from cardcenter.core.prepared import Prepared
from cardcenter.customers.models import Customer, Meter
from cardcenter.reconciliation.models import WriteBackSource
from cardcenter.reconciliation.services import (
    ReconcileResult,
    ReconcileSettings,
    reconcile_write_back,
)
from cardcenter.sales import ledger
from cardcenter.sales.models import Sale, SaleKind, SaleStatus
from cardcenter.tariffs.models import TariffVersion
from cardcenter.tariffs.pricing import format_money


class PendingAction(StrEnum):
    SALE = "sale"
    ISSUE = "issue"
    REVERSAL = "reversal"


class Settled(StrEnum):
    """What the card showed about the write that was in flight."""

    NONE = "none"
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"
    IN_FLIGHT = "in_flight"
    REDO = "redo"


@dataclass
class Visit:
    """A user card identified against the books, its write-back learnt."""

    card: Card
    customer: Customer
    meter: Meter
    reconciled: ReconcileResult | None = None
    settled: Settled = Settled.NONE
    tariffs: tuple[TariffVersion, TariffVersion | None] | None = None
    """The tariff version in force and the next scheduled one (looked up once)."""
    tariff_choice: tuple[int | None, int | None] | None = None
    """The ids of those two versions, when the card's row came with them (a sale)."""


def check_usable(card: Card | None, reading: CardReading, *, issuing_ok: bool) -> Card:
    """Refuse an unknown, lost, replaced, closed or half-issued card, with the reason."""
    if card is None:
        raise CardRefusedError(
            f"card {reading.serial} is not registered at this centre: it is from another "
            "system or forged"
        )
    if card.status in (CardStatus.LOST, CardStatus.REPLACED, CardStatus.CLOSED):
        when = card.status_changed_at.date().isoformat() if card.status_changed_at else "?"
        raise CardRefusedError(
            f"card {card.serial} was {card.status.value} on {when}"
            f"{': ' + card.status_reason if card.status_reason else ''}; it cannot be used "
            "any more: keep it"
        )
    if card.status is CardStatus.ISSUING and not issuing_ok:
        raise CardRefusedError(
            f"card {card.serial} was being issued when it was pulled: finish the issue "
            "(repeat `card issue` or `card replace`) or run `sale recover`"
        )
    return card


def identify(session: Session, reading: CardReading, *, issuing_ok: bool = False) -> Visit:
    """Match the card with its customer and meter (one query), or refuse it with the reason."""
    loaded = VISIT_OBJECTS.load(session, _CARD_OF_SERIAL, {"serial": reading.serial})
    return visit_of(loaded[0] if loaded else None, reading, issuing_ok=issuing_ok)


def visit_of(row: Sequence[Any] | None, reading: CardReading, *, issuing_ok: bool = False) -> Visit:
    """The visit of a card row with its customer and meter (first in ``row``), or the refusal.

    Apart from :func:`identify` so that a flow may fetch the row together
    with what else it needs from the books in the same statement (the sale:
    its request id and tariff, :data:`CARD_ROW_OF_SERIAL`).
    """
    if reading.blank:
        raise CardRefusedError(f"card {reading.serial} is blank: issue it to a customer first")
    card = check_usable(row[0] if row else None, reading, issuing_ok=issuing_ok)
    assert row is not None
    customer, meter = row[1], row[2]
    params = reading.parameters
    named = (params.meter_no, params.customer_no) if params is not None else None
    # (a card with a write in flight may still name the meter it is leaving)
    books = (meter.meter_no, customer.customer_no)
    if named is not None and named != books and card.pending_action is None:
        raise CardRefusedError(
            f"card {card.serial} names meter {named[0]} and customer {named[1]}, but the "
            f"books have meter {meter.meter_no} and customer {customer.customer_no}: it "
            "is a forged or foreign card"
        )
    return Visit(card, customer, meter)


def learn(
    session: Session,
    visit: Visit,
    reading: CardReading,
    *,
    source: WriteBackSource,
    operator_id: int | None,
    settings: ReconcileSettings,
) -> None:
    """Reconcile the write-back on the card (once; a second reading is a duplicate)."""
    wb = reading.write_back
    if wb is None:
        return
    if wb.meter_no != visit.meter.meter_no:
        raise CardRefusedError(
            f"card {visit.card.serial} carries a write-back of meter {wb.meter_no}, "
            f"not of its meter {visit.meter.meter_no}"
        )
    visit.reconciled = reconcile_write_back(
        session,
        meter=visit.meter,
        card_serial=visit.card.serial,
        write_back=wb,
        history=reading.history,
        raw_write_back=reading.raw_write_back,
        raw_history=reading.raw_history,
        source=source,
        card=visit.card,
        operator_id=operator_id,
        settings=settings,
    )


def purse_shows(reading: CardReading, count: int | None, amount: int | None) -> bool:
    purse = reading.purse
    return purse is not None and (purse.purchase_count, purse.amount) == (count, amount)


def settle_pending(
    session: Session, visit: Visit, reading: CardReading, *, at: datetime, cancel: bool = False
) -> Settled:
    """Resolve the write that was in flight on this card, from what the card shows.

    New purse on the card: the write happened, confirm it (always safe: the
    card proves it). Old purse: the write has not reached the card; with
    ``cancel`` (``sale recover``, which has just read the card itself) it is
    cancelled and a pending sale becomes void (no money had moved); without,
    it is reported ``IN_FLIGHT``, because the reading in hand may be older
    than a write another desk is making right now. Torn purse: the write must
    be done again (``REDO``).
    """
    card = visit.card
    if card.pending_action is None:
        return Settled.NONE
    if purse_shows(reading, card.pending_count, card.pending_amount):
        confirm_write(session, visit, at=at, write_back_clear=reading.write_back_cleared)
        visit.settled = Settled.CONFIRMED
    elif card.status is not CardStatus.ISSUING and purse_shows(
        reading, card.purchase_count, card.purse_amount
    ):
        if cancel:
            cancel_write(session, card)
            visit.settled = Settled.CANCELLED
        else:
            visit.settled = Settled.IN_FLIGHT
    else:
        visit.settled = Settled.REDO
    return visit.settled


def unsettled_error(visit: Visit) -> ConflictError:
    """The card has a write in flight or cut short: what the operator does about it."""
    card = visit.card
    what = f"sale {card.pending_sale_id}" if card.pending_sale_id else f"a {card.pending_action}"
    return ConflictError(
        f"card {card.serial} has {what} being written or cut short: repeat that request, or "
        "run `cardcenter sale recover` with the card in the reader; nothing else was written"
    )


CARDS = cast(Table, Card.__table__)
SALES = cast(Table, Sale.__table__)
CUSTOMERS = cast(Table, Customer.__table__)


# The sale path's statements, built once and run on the driver (core/prepared):
# through SQLAlchemy each would cost more than SQLite takes to run it.
_ANNOUNCE = Prepared(
    update(CARDS)
    .where(
        CARDS.c.id == bindparam("card_id"),
        CARDS.c.pending_action.is_(None),
        CARDS.c.purchase_count == bindparam("was_count"),
        CARDS.c.purse_amount == bindparam("was_amount"),
    )
    .values(
        pending_action=bindparam("new_pending_action"),
        pending_count=bindparam("new_pending_count"),
        pending_amount=bindparam("new_pending_amount"),
        pending_sale_id=bindparam("new_pending_sale_id"),
    )
)
_CONFIRM_UPDATE = (
    update(CARDS)
    .where(
        CARDS.c.id == bindparam("card_id"),
        CARDS.c.pending_action == bindparam("action"),
        CARDS.c.pending_count == bindparam("count"),
        CARDS.c.pending_amount == bindparam("amount"),
        CARDS.c.pending_sale_id.is_not_distinct_from(bindparam("sale_id", type_=Integer)),
    )
    .values(
        purchase_count=bindparam("count"),
        purse_amount=bindparam("amount"),
        pending_action=None,
        pending_count=None,
        pending_amount=None,
        pending_sale_id=None,
    )
)
_CONFIRM = Prepared(_CONFIRM_UPDATE)
_CONFIRM_ISSUE = Prepared(
    _CONFIRM_UPDATE.values(
        status=CardStatus.ACTIVE,
        status_changed_at=bindparam("at", type_=CARDS.c.status_changed_at.type),
    )
)
_WRITTEN = Prepared(
    update(SALES)
    .where(SALES.c.id == bindparam("sale_id"), SALES.c.status == SaleStatus.PENDING)
    .values(status=SaleStatus.WRITTEN, written_at=bindparam("at", type_=SALES.c.written_at.type))
)
_REVERSED = Prepared(
    update(SALES)
    .where(SALES.c.id == bindparam("sale_id"), SALES.c.status == SaleStatus.WRITTEN)
    .values(status=SaleStatus.REVERSED, reversed_at=bindparam("at", type_=SALES.c.reversed_at.type))
)
_PAID_THROUGH = Prepared(
    update(CUSTOMERS)
    .where(CUSTOMERS.c.id == bindparam("customer_id"))
    .values(fixed_paid_through=bindparam("month", type_=CUSTOMERS.c.fixed_paid_through.type))
)
_INSERT_SALE = Prepared(
    insert(SALES).returning(SALES.c.id),
    column_keys=[column.name for column in SALES.c if column.name != "id"],
)


def insert_sale(books: Session | Connection, row: dict[str, Any]) -> int:
    """Insert a sale's row (every column given but ``id``) with one statement; its id.

    Card sales and token vends both record their sale so: the unit of work
    would cost more than the sale's own statements.
    """
    sale_id: int = _INSERT_SALE.scalar(connection_of(books), row)
    return sale_id


def pay_fixed_through(books: Session | Connection, customer_id: int, month: str) -> None:
    """The customer's fixed charges are now paid through ``month`` (one UPDATE)."""
    _PAID_THROUGH.execute(connection_of(books), {"customer_id": customer_id, "month": month})


VISIT_OBJECTS = RowObjects(Card, Customer, Meter)
"""A card with its customer and its meter, from one row (:data:`CARD_ROW_OF_SERIAL`)."""

CARD_ROW_OF_SERIAL = (
    select(*VISIT_OBJECTS.columns)
    .join_from(Card, Customer, Customer.id == Card.customer_id)
    .join(Meter, Meter.id == Card.meter_id)
    .where(Card.serial == bindparam("serial"))
)
"""A card's row with its customer's and its meter's, by serial: :func:`identify`'s one
query, which the sale extends with the other things it looks up first."""
_CARD_OF_SERIAL = Prepared(CARD_ROW_OF_SERIAL)


def mirror(obj: object, **values: Any) -> None:
    """Set what a statement just wrote to the row on its loaded object, without a re-read.

    The sale path writes rows with plain UPDATEs (the unit of work costs more
    than the sale's own work); the objects the caller holds must then show
    the row as it is, and must not be flushed again.
    """
    for name, value in values.items():
        set_committed_value(obj, name, value)


def start_write(
    session: Session,
    card: Card,
    reading: CardReading,
    *,
    action: PendingAction,
    count: int,
    amount: int,
    sale: Sale | None = None,
) -> None:
    """Announce a purse write, atomically, if the card is still what the books last wrote.

    The conditional UPDATE is the lock: of two operators holding the same
    (stale) card, or two desks racing on one account, exactly one matches the
    row; the other gets a :class:`ConflictError` and writes nothing.
    """
    if card.status is not CardStatus.ISSUING and not purse_shows(
        reading, card.purchase_count, card.purse_amount
    ):
        shown = (
            f"count {reading.purse.purchase_count}, amount {format_money(reading.purse.amount)}"
            if reading.purse is not None
            else "a purse that cannot be read"
        )
        raise ConflictError(
            f"card {card.serial} shows {shown}, but the books last wrote count "
            f"{card.purchase_count}, amount {format_money(card.purse_amount)}: it is a stale "
            "copy or another desk just wrote it; nothing was written"
        )
    pending = {
        "pending_action": action.value,
        "pending_count": count,
        "pending_amount": amount,
        "pending_sale_id": sale.id if sale is not None else None,
    }
    announced = _ANNOUNCE.rowcount(
        session.connection(),
        {
            "card_id": card.id,
            "was_count": card.purchase_count,
            "was_amount": card.purse_amount,
            **{f"new_{name}": value for name, value in pending.items()},
        },
    )
    if announced != 1:
        raise ConflictError(
            f"another desk is writing card {card.serial} right now; nothing was written"
        )
    mirror(card, **pending)


PENDING_FIELDS = ("pending_action", "pending_count", "pending_amount", "pending_sale_id")
"""The card row's announced write (:func:`start_write`); all None when none is in flight."""
_AS_READ = ("status", "purchase_count", "purse_amount", *PENDING_FIELDS)


def change_card(session: Session, card: Card, busy: str, **values: Any) -> None:
    """Set ``values`` on the card's row if it is still as ``card`` was read; else a conflict.

    One conditional UPDATE, the lock of :func:`start_write` for the card's
    other changes (a write cancelled, the card retired or closed): of two
    desks acting on one card at once, the one whose reading went stale
    matches nothing, is told so in a sentence ending with ``busy``, and its
    transaction rolls back before anything reaches a card or the till.
    """
    session.flush()
    state = {name: getattr(card, name) for name in _AS_READ}
    statement = (
        update(CARDS)
        .where(
            CARDS.c.id == card.id,
            *(CARDS.c[name].is_not_distinct_from(value) for name, value in state.items()),
        )
        .values(**values)
    )
    if session.connection().execute(statement).rowcount != 1:
        raise ConflictError(f"another desk changed card {card.serial} meanwhile; {busy}")
    mirror(card, **values)


def commit_purse(
    session: Session | Connection,
    card_id: int,
    *,
    action: PendingAction,
    sale_id: int | None,
    count: int,
    amount: int,
    at: datetime,
    issuing: bool = False,
) -> dict[str, Any] | None:
    """Make the announced purse the card row's truth, if it is still the one announced.

    Conditional like :func:`start_write`: of two desks confirming the same
    write (a retried request racing a recovery), one does it and the other
    learns it is done. Returns the values written, or None when the row no
    longer announces this write. Runs statements only, so ``session`` may be
    a plain connection.
    """
    values: dict[str, Any] = {
        "purchase_count": count,
        "purse_amount": amount,
        "pending_action": None,
        "pending_count": None,
        "pending_amount": None,
        "pending_sale_id": None,
    }
    if issuing:
        values.update(status=CardStatus.ACTIVE, status_changed_at=at)
    matched = (_CONFIRM_ISSUE if issuing else _CONFIRM).rowcount(
        connection_of(session),
        {
            "card_id": card_id,
            "action": action.value,
            "count": count,
            "amount": amount,
            "sale_id": sale_id,
            "at": at,
        },
    )
    return values if matched == 1 else None


REVERSAL_PROOF = "reversal_proof"
"""In a sale's breakdown: its reversal was decided on a payment channel's reading, so it
stands only if the card's write-back is still clear when the reversal is confirmed."""


def confirm_write(session: Session, visit: Visit, *, at: datetime, write_back_clear: bool) -> None:
    """The card holds the announced purse: make it the books' truth and move the money.

    ``write_back_clear``: the card's write-back is cleared now, as read by a
    desk's own reader or proven by the card's MACed read-back. A reversal
    decided on a terminal's reading (:data:`REVERSAL_PROOF`) needs it: a
    write-back there means the meter has read the card since the centre last
    wrote it, and may have loaded the sale before the reversal reached the
    card (the meter then takes nothing from the smaller purse, whose count
    it has). Its money is then not given back; the sale stays written, and
    the write-back, read at a desk, shows where its credit went.
    """
    card = visit.card
    assert card.pending_action is not None
    assert card.pending_count is not None and card.pending_amount is not None
    action = PendingAction(card.pending_action)
    sale = session.get(Sale, card.pending_sale_id) if card.pending_sale_id else None
    written = commit_purse(
        session,
        card.id,
        action=action,
        sale_id=card.pending_sale_id,
        count=card.pending_count,
        amount=card.pending_amount,
        at=at,
        issuing=card.status is CardStatus.ISSUING,
    )
    if written is None:
        raise ConflictError(
            f"card {card.serial} was settled by another desk meanwhile; read it again"
        )
    mirror(card, **written)
    if (
        sale is not None
        and action is PendingAction.REVERSAL
        and sale.breakdown.get(REVERSAL_PROOF)
        and not write_back_clear
    ):
        sale.reversed_by = None
        sale.note = (
            "not reversed: the meter read the card between the terminal's reading and the "
            "reversal's write, so it may have loaded this sale"
        )
        sale.breakdown = {k: v for k, v in sale.breakdown.items() if k != REVERSAL_PROOF}
    elif sale is not None and action is PendingAction.REVERSAL:
        reverse_in_books(session, visit, sale, at=at)
    elif sale is not None and sale.status is SaleStatus.PENDING:
        take_payment(session, sale, at=at, customer=visit.customer)
    # carried sales of a replacement card travel on, still in transit


def cancel_write(session: Session, card: Card) -> None:
    """The card still holds the old purse: the announced write never happened.

    Conditional (:func:`change_card`): a replacement carrying the same write
    to a new card at this moment keeps it, and this cancel is refused.
    """
    sale = session.get(Sale, card.pending_sale_id) if card.pending_sale_id else None
    voids = sale is not None and card.pending_action == PendingAction.SALE
    change_card(session, card, "read it again", **dict.fromkeys(PENDING_FIELDS))
    if sale is not None and voids:
        sale.status = SaleStatus.VOID
        sale.note = "never reached the card"
        session.flush()


def take_payment(
    session: Session | Connection,
    sale: Sale,
    *,
    at: datetime,
    customer: Customer | None = None,
) -> None:
    """A sale is on the card: the money is taken and its credit is in transit.

    ``customer``, when the caller holds it loaded, is kept in step with the
    row (the months of fixed charge this sale paid). Runs statements only
    (``sale`` is updated to match), so ``session`` may be a plain connection.
    """
    connection = connection_of(session)
    if _WRITTEN.rowcount(connection, {"sale_id": sale.id, "at": at}) != 1:
        raise ConflictError(f"sale {sale.id} was settled by another desk meanwhile")
    mirror(sale, status=SaleStatus.WRITTEN, written_at=at)
    links: dict[str, int | None] = {
        "customer_id": sale.customer_id,
        "sale_id": sale.id,
        "operator_id": sale.operator_id,
    }
    transit = ledger.transit(sale.customer_id)
    if sale.kind is SaleKind.CARRY_OVER:
        # a meter swap: the old meter's credit travels to the new one on the card
        ledger.post(
            connection, ledger.meter(sale.customer_id), transit, sale.credit, "carry-over", **links
        )
        return
    till = ledger.till(sale.site)
    ledger.post_all(
        connection,
        [
            (till, transit, sale.credit, "credit"),
            (till, ledger.TAX, sale.tax, "tax"),
            (till, ledger.FIXED, sale.fixed_charge, "fixed charge"),
        ],
        **links,
    )
    months = sale.breakdown.get("months") or []
    if months:
        pay_fixed_through(connection, sale.customer_id, max(months))
        if customer is not None:
            mirror(customer, fixed_paid_through=max(months))


def reverse_in_books(session: Session, visit: Visit, sale: Sale, *, at: datetime) -> None:
    """A reversal is on the card: the sale's money goes back to the till.

    Conditional, as :func:`take_payment` is: a sale leaves ``written`` once,
    so its money goes back once, whichever desk confirms the reversal.
    """
    session.flush()  # the sale's own changes (who reversed it, why) go first
    if _REVERSED.rowcount(connection_of(session), {"sale_id": sale.id, "at": at}) != 1:
        raise ConflictError(f"sale {sale.id} was reversed or settled by another desk meanwhile")
    mirror(sale, status=SaleStatus.REVERSED, reversed_at=at)
    links: dict[str, int | None] = {
        "customer_id": sale.customer_id,
        "sale_id": sale.id,
        "operator_id": sale.reversed_by,
    }
    till = ledger.till(sale.site)
    ledger.post_all(
        session,
        [
            (ledger.transit(sale.customer_id), till, sale.credit, "reversal"),
            (ledger.TAX, till, sale.tax, "reversal: tax"),
            (ledger.FIXED, till, sale.fixed_charge, "reversal: fixed charge"),
        ],
        **links,
    )
    previous = sale.breakdown.get("paid_through_before")
    months = sale.breakdown.get("months") or []
    if months and visit.customer.fixed_paid_through == max(months):
        visit.customer.fixed_paid_through = previous


def in_transit(session: Session, meter: Meter) -> list[Sale]:
    """Sales on their way to ``meter``: written to a card, not yet proven loaded."""
    return list(
        session.scalars(
            select(Sale)
            .where(Sale.meter_id == meter.id, Sale.status == SaleStatus.WRITTEN)
            .order_by(Sale.id)
        )
    )


def sale_result(sale: Sale, visit: Visit | None = None, **extra: Any) -> dict[str, Any]:
    """A sale as the command line and the API report it (money as decimal strings)."""
    result: dict[str, Any] = {
        "sale": sale.id,
        "request_id": sale.request_id,
        "kind": sale.kind.value if hasattr(sale.kind, "value") else str(sale.kind),
        "status": str(sale.status),
        "purchase_count": sale.purchase_count,
        "tendered": format_money(sale.tendered),
        "fixed_charge": format_money(sale.fixed_charge),
        "tax": format_money(sale.tax),
        "credit": format_money(sale.credit),
        "card_amount": format_money(sale.card_amount),
        "added_to_pending": sale.card_amount != sale.credit,
        "created_at": sale.created_at.isoformat(),
        "breakdown": sale.breakdown,
    }
    if visit is not None:
        result.update(
            customer_no=visit.customer.customer_no,
            meter_no=visit.meter.meter_no,
            card_serial=visit.card.serial,
        )
    result.update(extra)
    return result
