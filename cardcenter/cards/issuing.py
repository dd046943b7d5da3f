"""Issuing a customer's opening card and a replacement for a lost or broken one.

Both start from a blank card in the reader. The card row is recorded (status
``issuing``, with the purse it is about to get) and committed before the card
is personalised, so a card pulled or a desk crashed half way is always a card
the books know; repeating the command with the same card finishes it.

A replacement carries the old card's purse (its purchase count and amount):
if that purchase never reached the meter, whichever card reaches the meter
first loads it and the other then loads nothing (same count), so the credit
arrives exactly once. Inserted once, the replacement registers its serial in
the meter and the old card is refused from then on (DESIGN.md 3).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cardcenter.cards.models import Card, CardStatus
from cardcenter.core.db import transaction
from cardcenter.core.errors import CardRefusedError, ConflictError, InvalidInputError
from cardcenter.customers.models import Customer, Meter, MeterKind
from cardcenter.customers.services import active_meter, ensure_active, find_customer
from cardcenter.operators.models import Role
from cardcenter.sales import planning
from cardcenter.sales.desk import (
    Desk,
    check_request_id,
    new_sale,
    personalise_if_needed,
    same_request,
)
from cardcenter.sales.models import Sale, SaleKind, SaleStatus
from cardcenter.sales.services import (
    PENDING_FIELDS,
    PendingAction,
    Visit,
    change_card,
    sale_result,
)
from cardcenter.tariffs import pricing
from cardlayout.card.operations import PurchaseWrite
from cardlayout.card.snapshot import CardSnapshot, read_snapshot
from cardlayout.files import CardType
from cardlayout.transport.channel import CardChannel


def _card_in_reader(session: Session, snapshot: CardSnapshot, customer: Customer) -> Card | None:
    """The card row to resume, or None for a blank card; refuse anything else."""
    serial = snapshot.serial.hex().upper()
    card = session.scalar(select(Card).where(Card.serial == serial))
    if card is not None:
        if card.status is CardStatus.ISSUING and card.customer_id == customer.id:
            return card
        raise CardRefusedError(
            f"card {serial} is already a customer's card ({card.status.value}); "
            "put a blank card in the reader"
        )
    if snapshot.personalised:
        raise CardRefusedError(
            f"card {serial} is personalised but unknown to this centre: put a blank card in "
            "the reader"
        )
    return None


def _abandon_other_issues(session: Session, customer: Customer, serial: str, desk: Desk) -> None:
    """A card that was being issued and was given up (another blank used instead)."""
    for other in session.scalars(
        select(Card).where(
            Card.customer_id == customer.id,
            Card.status == CardStatus.ISSUING,
            Card.serial != serial,
        )
    ):
        other.status = CardStatus.CLOSED
        other.status_reason = "issue abandoned"
        other.status_changed_at = desk.clock()
        if other.pending_sale_id:
            sale = session.get_one(Sale, other.pending_sale_id)
            if sale.status is SaleStatus.PENDING and sale.kind is SaleKind.OPENING:
                sale.status = SaleStatus.VOID
                sale.note = "issue abandoned"
        other.pending_action = None


def _at_the_desk(
    session: Session, desk: Desk, customer_ref: str | int, snapshot: CardSnapshot
) -> tuple[Customer, Meter, Card | None, Card | None]:
    """The account, its card meter, the card row to resume (None for a blank card)
    and the customer's card in use (None if none).

    A blank card starts a new issue: any other issue of this customer left
    unfinished (another blank tried first) is abandoned.
    """
    customer = find_customer(session, customer_ref)
    ensure_active(customer)
    meter = active_meter(session, customer, MeterKind.CARD)
    card = _card_in_reader(session, snapshot, customer)
    if card is None:
        _abandon_other_issues(session, customer, snapshot.serial.hex().upper(), desk)
    in_use = session.scalar(
        select(Card).where(Card.customer_id == customer.id, Card.status == CardStatus.ACTIVE)
    )
    return customer, meter, card, in_use


def issue_card(
    desk: Desk,
    channel: CardChannel,
    customer_ref: str | int,
    tendered: int | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """Personalise the blank card in the reader as the customer's opening card.

    With ``tendered`` the opening card also carries a first purchase, priced
    like any sale. Without it the card carries purchase 1 with no credit: it
    opens the meter and binds it to the customer and this card.
    """
    if tendered is not None and tendered <= 0:
        raise InvalidInputError("amount", "give an amount above 0, or none")
    request_id = check_request_id(request_id)
    snapshot = channel_snapshot(channel)
    serial = snapshot.serial.hex().upper()
    at = desk.clock()
    with transaction(desk.sessions) as session:
        existing = session.scalar(select(Sale).where(Sale.request_id == request_id))
        if existing is not None:
            same_request(existing, tendered or 0)
        if existing is not None and existing.status is not SaleStatus.PENDING:
            return sale_result(existing, replayed=True)
        operator = desk.operator_row(session)
        customer, meter, card, holder = _at_the_desk(session, desk, customer_ref, snapshot)
        tariffs = None  # a resumed issue looks them up for its write
        if card is None:
            if holder is not None:
                raise ConflictError(
                    f"customer {customer.customer_no} has card {holder.serial} already: use "
                    "`card replace` for a lost or broken card"
                )
            card = Card(
                serial=serial,
                customer_id=customer.id,
                meter_id=meter.id,
                generation=1,
                status=CardStatus.ISSUING,
                write_type=int(CardType.OPENING),
                issued_at=at,
            )
            session.add(card)
            session.flush()
            visit = Visit(card, customer, meter)
            sale = new_sale(
                session,
                visit,
                operator,
                tendered or 0,
                request_id,
                at,
                site=desk.site,
                kind=SaleKind.OPENING,
                tariff_cache=desk.tariff_cache,
            )
            card.pending_action = PendingAction.ISSUE.value
            card.pending_count, card.pending_amount = 1, sale.card_amount
            card.pending_sale_id = sale.id
            tariffs = visit.tariffs  # looked up by new_sale: not again
        write = planning.build_write(
            session,
            customer=customer,
            meter=meter,
            card=card,
            count=card.pending_count or 1,
            amount=card.pending_amount or 0,
            at=at,
            card_type=CardType.OPENING,
            bind_meter=True,
            tariffs=tariffs,
        )
        card_id, sale_id = card.id, card.pending_sale_id
    return _write_new_card(
        desk,
        channel,
        snapshot,
        write,
        card_id,
        sale_id,
        request_id,
        lambda session, visit: sale_result(session.get_one(Sale, sale_id), visit),
    )


def replace_card(
    desk: Desk,
    channel: CardChannel,
    customer_ref: str | int,
    reason: str = "lost",
) -> dict[str, Any]:
    """Issue the blank card in the reader in place of the customer's lost or broken card."""
    if reason not in ("lost", "broken"):
        raise InvalidInputError("reason", "give lost or broken")
    snapshot = channel_snapshot(channel)
    serial = snapshot.serial.hex().upper()
    at = desk.clock()
    with transaction(desk.sessions) as session:
        desk.operator_row(session, Role.SUPERVISOR)
        customer, meter, card, old = _at_the_desk(session, desk, customer_ref, snapshot)
        if card is None:
            if old is None:
                raise ConflictError(
                    f"customer {customer.customer_no} has no card in use: use `card issue`"
                )
            card = _replacement_of(session, old, meter, serial, reason, desk)
        write = planning.build_write(
            session,
            customer=customer,
            meter=meter,
            card=card,
            count=card.pending_count or 0,
            amount=card.pending_amount or 0,
            at=at,
            card_type=CardType(card.write_type),
            bind_meter=True,
        )
        card_id, sale_id = card.id, card.pending_sale_id
    return _write_new_card(
        desk, channel, snapshot, write, card_id, sale_id, None, _replacement_result
    )


def _replacement_result(session: Session, visit: Visit) -> dict[str, Any]:
    return {
        "card_serial": visit.card.serial,
        "generation": visit.card.generation,
        "customer_no": visit.customer.customer_no,
        "meter_no": visit.meter.meter_no,
        "card_type": CardType(visit.card.write_type).name.lower(),
        "purchase_count": visit.card.purchase_count,
        "carried": pricing.format_money(visit.card.purse_amount),
    }


def _write_new_card(
    desk: Desk,
    channel: CardChannel,
    snapshot: CardSnapshot,
    write: PurchaseWrite,
    card_id: int,
    sale_id: int | None,
    request_id: str | None,
    describe: Callable[[Session, Visit], dict[str, Any]],
) -> dict[str, Any]:
    """Steps 2 and 3 for a card being issued: personalise, write, confirm."""
    desk.checkpoint("pending")
    snapshot = personalise_if_needed(desk, channel, snapshot)
    desk.checkpoint("personalised")
    desk._write(channel, snapshot, write, sale_id, request_id)
    desk.checkpoint("written")
    with transaction(desk.sessions) as session:
        visit = desk._confirm(session, card_id, write)
        result: dict[str, Any] = describe(session, visit)
        return result


def _replacement_of(
    session: Session, old: Card, meter: Meter, serial: str, reason: str, desk: Desk
) -> Card:
    """Retire ``old`` and record its replacement, carrying the old card's purse."""
    count, amount = old.purchase_count, old.purse_amount
    sale_id: int | None = None
    if old.pending_action == PendingAction.SALE.value:
        # A sale was being written when the card went missing: the lost card
        # holds either purse, so the replacement carries the newer one and the
        # sale stands (its money was taken at the desk).
        assert old.pending_count is not None and old.pending_amount is not None
        count, amount = old.pending_count, old.pending_amount
        sale_id = old.pending_sale_id
    # Retired only as it was read: a recovery cancelling its pending sale, or
    # another desk's write, at this moment makes this replacement the one refused.
    change_card(
        session,
        old,
        "read the customer again and replace the card then",
        **dict.fromkeys(PENDING_FIELDS),
        status=CardStatus.LOST if reason == "lost" else CardStatus.REPLACED,
        status_changed_at=desk.clock(),
    )
    card = Card(
        serial=serial,
        customer_id=old.customer_id,
        meter_id=old.meter_id,
        generation=old.generation + 1,
        status=CardStatus.ISSUING,
        # A meter that has never written back may not be opened yet: only an
        # opening card opens it (a replacement would be refused).
        write_type=int(
            CardType.REPLACEMENT if meter.last_write_back_at is not None else CardType.OPENING
        ),
        issued_at=desk.clock(),
        pending_action=PendingAction.ISSUE.value,
        pending_count=count,
        pending_amount=amount,
        pending_sale_id=sale_id,
    )
    session.add(card)
    session.flush()
    old.status_reason = f"{reason}; replaced by card {serial}"
    return card


def channel_snapshot(channel: CardChannel) -> CardSnapshot:
    if not channel.atr:
        channel.connect()
    return read_snapshot(channel)
