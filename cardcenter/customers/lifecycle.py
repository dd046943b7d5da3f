"""The end of a meter's or an account's life: swapping the meter, closing the account.

Both start from the customer's card fresh from the meter: its write-back is
the final reading the books settle with, since the centre knows the meter
only through what it writes back.

- A meter swap carries the old meter's credit (as last read) and any credit
  still in transit to the new meter: the card is rewritten as an opening
  card of the new meter (purchase 1), so the new meter binds to it and loads
  the lot once.
- Closing refunds the meter's credit as last read. Credit still in transit
  on the card is reversed first (``sale reverse``), which rewrites the card,
  so no refunded credit can reach a meter afterwards.
"""

from __future__ import annotations

from typing import Any

from cardcenter.cards.models import CardStatus
from cardcenter.cards.reading import CardReading, read_card
from cardcenter.core.errors import ConflictError
from cardcenter.customers.models import AccountStatus, MeterKind, MeterStatus
from cardcenter.customers.services import ensure_active, register_meter
from cardcenter.operators.models import Role
from cardcenter.reconciliation.models import WriteBackSource
from cardcenter.sales import ledger, planning
from cardcenter.sales.desk import Desk, check_request_id
from cardcenter.sales.models import Sale, SaleKind
from cardcenter.sales.services import (
    PendingAction,
    Settled,
    Visit,
    change_card,
    identify,
    in_transit,
    learn,
    sale_result,
    settle_pending,
    unsettled_error,
)
from cardcenter.tariffs.pricing import format_money
from cardlayout.files import CardType
from cardlayout.transport.channel import CardChannel


def _final_visit(desk: Desk, session: Any, reading: CardReading, operator_id: int) -> Visit:
    """The card fresh from the meter, settled and its final write-back reconciled."""
    visit = identify(session, reading)
    ensure_active(visit.customer)
    if settle_pending(session, visit, reading, at=desk.clock()) in (
        Settled.REDO,
        Settled.IN_FLIGHT,
    ):
        raise unsettled_error(visit)
    if reading.write_back is None:
        raise ConflictError(
            f"card {visit.card.serial} carries no write-back: insert it into meter "
            f"{visit.meter.meter_no} first, so the meter writes its final state to it"
        )
    learn(
        session,
        visit,
        reading,
        source=WriteBackSource.READ,
        operator_id=operator_id,
        settings=desk.settings,
    )
    return visit


def swap_meter(
    desk: Desk,
    channel: CardChannel,
    new_meter_no: str,
    *,
    request_id: str | None = None,
    ct_ratio: int | None = None,
    pt_ratio: int | None = None,
) -> dict[str, Any]:
    """Replace the customer's meter; its credit moves to the new meter on the card."""
    request_id = check_request_id(request_id)
    reading = read_card(channel, desk.keys)
    at = desk.clock()
    with desk._books() as session:
        operator = desk.operator_row(session, Role.SUPERVISOR)
        visit = _final_visit(desk, session, reading, operator.id)
        old, card, customer = visit.meter, visit.card, visit.customer
        new = register_meter(
            session,
            new_meter_no,
            customer=customer,
            kind=MeterKind.CARD,
            utility=old.utility,
            ct_ratio=ct_ratio or old.ct_ratio,
            pt_ratio=pt_ratio or old.pt_ratio,
            now=at,
        )
        carried_sales = in_transit(session, old)
        transit = sum(s.credit for s in carried_sales)
        balance = old.balance
        for sale in carried_sales:  # they now travel to the new meter, as purchase 1
            sale.meter_id = new.id
            sale.purchase_count = 1
            sale.note = f"carried from meter {old.meter_no}"
        tariffs = planning.tariffs_at(session, customer, at)
        version = tariffs[0]
        carry = Sale(
            request_id=request_id,
            kind=SaleKind.CARRY_OVER,
            customer_id=customer.id,
            meter_id=new.id,
            card_id=card.id,
            operator_id=operator.id,
            site=desk.site,
            tariff_version_id=version.id,
            purchase_count=1,
            tendered=0,
            credit=max(balance, 0),
            card_amount=max(balance, 0) + transit,
            parameter_version=customer.parameter_version,
            breakdown={"from_meter": old.meter_no, "balance": balance, "in_transit": transit},
            created_at=at,
        )
        session.add(carry)
        session.flush()
        if balance < 0:
            # overdraft on the old meter: the customer owes it; it is not carried
            ledger.post(
                session,
                ledger.till(desk.site),
                ledger.meter(customer.id),
                -balance,
                "overdraft debt of the removed meter",
                customer_id=customer.id,
                operator_id=operator.id,  # collected into this operator's drawer
            )
        old.status = MeterStatus.REMOVED
        old.removed_at = at
        # Re-issued for the new meter (an opening card binds it), and only as it
        # was read: of two desks swapping this meter at once, one is refused.
        change_card(
            session,
            card,
            "read the card again",
            meter_id=new.id,
            status=CardStatus.ISSUING,
            write_type=int(CardType.OPENING),
            registered=False,
            pending_action=PendingAction.ISSUE.value,
            pending_count=1,
            pending_amount=carry.card_amount,
            pending_sale_id=carry.id,
        )
        write = planning.build_write(
            session,
            customer=customer,
            meter=new,
            card=card,
            count=1,
            amount=carry.card_amount,
            at=at,
            card_type=CardType.OPENING,
            bind_meter=True,
            tariffs=tariffs,
        )
        card_id, sale_id = card.id, carry.id
    desk.checkpoint("pending")
    desk._write(channel, reading.snapshot, write, sale_id, None)
    desk.checkpoint("written")
    with desk._books() as session:
        visit = desk._confirm(session, card_id, write)
        result = sale_result(session.get_one(Sale, sale_id), visit)
        result["old_meter_no"] = old.meter_no
        return result


def close_account(desk: Desk, channel: CardChannel, reason: str = "") -> dict[str, Any]:
    """Close the account of the card in the reader and refund the meter's credit."""
    reading = read_card(channel, desk.keys)
    at = desk.clock()
    with desk._books() as session:
        operator = desk.operator_row(session, Role.SUPERVISOR)
        visit = _final_visit(desk, session, reading, operator.id)
        meter, card, customer = visit.meter, visit.card, visit.customer
        waiting = in_transit(session, meter)
        if waiting:
            ids = ", ".join(str(s.id) for s in waiting)
            raise ConflictError(
                f"sale {ids} has not reached the meter: reverse it first "
                "(`cardcenter sale reverse`), then close the account"
            )
        # The card is closed first, and only as it was read: of two desks closing
        # one account at once (a form sent twice), one refunds and the other is
        # refused here.
        change_card(
            session,
            card,
            "the account may be closed already: read the card again",
            status=CardStatus.CLOSED,
            status_changed_at=at,
            status_reason=reason[:200] or "account closed",
        )
        refund = meter.balance
        links: dict[str, int | None] = {"customer_id": customer.id, "operator_id": operator.id}
        ledger.post(
            session,
            ledger.meter(customer.id),
            ledger.till(desk.site),
            refund,
            "refund at account closing",
            **links,
        )
        meter.status = MeterStatus.REMOVED
        meter.removed_at = at
        meter.remaining = meter.overdraft_used = 0
        customer.status = AccountStatus.CLOSED
        customer.closed_at = at
        return {
            "customer_no": customer.customer_no,
            "meter_no": meter.meter_no,
            "card_serial": card.serial,
            "refund": format_money(max(refund, 0)),
            "owed_by_customer": format_money(max(-refund, 0)),
            "closed_at": at.isoformat(),
        }
