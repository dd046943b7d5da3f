"""The service-hall desk: one operator, one reader, every card flow end to end.

Each flow is the same three steps, each its own transaction:

1. read the card, settle any write left in flight, reconcile the write-back,
   decide the write and record it pending (commit);
2. write the card (the purse last) and read it back;
3. confirm from the read-back (commit).

A crash or a pulled card between the steps leaves a pending write that the
next reading of the card settles (:func:`cardcenter.sales.services.settle_pending`);
retrying a sale with its request id finishes it, and a finished request id
returns its first result. ``checkpoint`` is called between the steps so the
tests can crash the desk exactly there.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from cardcenter.cards.models import Card, CardStatus
from cardcenter.cards.reading import CardReading, read_card
from cardcenter.core.db import connection_transaction, transaction, utcnow
from cardcenter.core.errors import (
    CardRefusedError,
    ConflictError,
    InvalidInputError,
    SaleInterruptedError,
)
from cardcenter.core.loaded import as_loaded
from cardcenter.core.prepared import Prepared
from cardcenter.customers.models import Customer, Meter
from cardcenter.customers.services import ensure_active
from cardcenter.operators.models import Operator, Role
from cardcenter.operators.services import ensure_operator, require_role
from cardcenter.reconciliation.models import WriteBackSource
from cardcenter.reconciliation.services import ReconcileSettings
from cardcenter.sales import planning
from cardcenter.sales.models import Sale, SaleKind, SaleStatus
from cardcenter.sales.services import (
    CARD_ROW_OF_SERIAL,
    REVERSAL_PROOF,
    SALES,
    VISIT_OBJECTS,
    PendingAction,
    Settled,
    Visit,
    commit_purse,
    confirm_write,
    identify,
    in_transit,
    insert_sale,
    learn,
    purse_shows,
    sale_result,
    settle_pending,
    start_write,
    take_payment,
    unsettled_error,
    visit_of,
)
from cardcenter.tariffs import pricing
from cardlayout.card.operations import (
    CardStateError,
    PurchaseWrite,
    personalise,
    write_purchase,
)
from cardlayout.card.snapshot import CardSnapshot, read_snapshot
from cardlayout.errors import CardLayoutError
from cardlayout.files import CardType
from cardlayout.security.diversify import CardKeys
from cardlayout.transport.channel import CardChannel

MAX_REQUEST_ID = 64
_SALE_OF_REQUEST = select(SALES.c.id).where(SALES.c.request_id == bindparam("request_id"))
_SALE_VISIT = Prepared(
    CARD_ROW_OF_SERIAL.add_columns(
        _SALE_OF_REQUEST.scalar_subquery().label("known_sale"),
        planning.TARIFF_IN_FORCE,
        planning.TARIFF_SCHEDULED,
    )
)


class _SaleVisit(NamedTuple):
    """What a sale looks up first, in one statement (:meth:`Desk._look_up`)."""

    card: Card
    customer: Customer
    meter: Meter
    known_sale: int | None
    tariff_in_force: int | None
    tariff_scheduled: int | None


def _no_checkpoint(step: str) -> None:
    return None


@dataclass(frozen=True)
class SaleStart:
    """A sale recorded pending: the card write to make, and what was learnt reading it."""

    card_id: int
    sale: Sale
    write: PurchaseWrite
    learnt: dict[str, Any]
    """What the result reports besides the sale: the account and the reconciliation."""
    resumed: bool = False
    """The request id was recorded already (its sale still pending): this is that sale's
    write again, not a new sale."""

    @property
    def sale_id(self) -> int:
        return self.sale.id


@dataclass
class Desk:
    """Who is selling, where, with which keys and books."""

    sessions: sessionmaker[Session]
    keys: CardKeys
    operator: str = "admin"
    site: str = "HQ"
    settings: ReconcileSettings = field(default_factory=ReconcileSettings)
    clock: Callable[[], datetime] = utcnow
    checkpoint: Callable[[str], None] = _no_checkpoint
    _operators: dict[str, Operator] = field(default_factory=dict, init=False, repr=False)
    tariff_cache: planning.TariffCache = field(default_factory=dict, init=False, repr=False)

    def operator_row(self, session: Session, role: Role | None = None) -> Operator:
        """The operator at the desk (created on a fresh install).

        Looked up once per desk: a desk lives for one command, or one request
        of the web application, so a role changed meanwhile counts from the
        next one. An operator created in a transaction that then rolled back
        is looked up again.
        """
        operator = self._operators.get(self.operator)
        if operator is None or not planning.still_loaded(operator):
            operator = ensure_operator(session, self.operator, site=self.site)
            self._operators[self.operator] = operator
        if role is not None:
            require_role(operator, role)
        return operator

    # -- selling -------------------------------------------------------------------

    def sell(
        self,
        channel: CardChannel,
        tendered: int,
        request_id: str | None = None,
        *,
        quoted_credit: int | None = None,
    ) -> dict[str, Any]:
        """Sell ``tendered`` (minor units) to the card in the reader.

        ``quoted_credit``: the credit a quote showed the customer; a new sale
        that would credit anything else (a tariff version or the fixed charges
        owed changed since) is refused and nothing is recorded.
        """
        request_id = check_request_id(request_id)
        if tendered <= 0:
            raise InvalidInputError("amount", "give an amount above 0")
        reading = read_card(channel, self.keys)
        started = self.begin_sale(reading, tendered, request_id, quoted_credit=quoted_credit)
        if isinstance(started, dict):
            return started
        self.checkpoint("pending")
        self._write(channel, reading.snapshot, started.write, started.sale_id, request_id)
        self.checkpoint("written")
        return self.finish_sale(started)

    def begin_sale(
        self,
        reading: CardReading,
        tendered: int,
        request_id: str,
        *,
        quoted_credit: int | None = None,
    ) -> SaleStart | dict[str, Any]:
        """Step 1 of a sale (no card I/O): settle, reconcile, price, record pending.

        Returns the write to make, or the result when the request id is done
        already (or the card shows the pending sale has arrived).
        """
        at = self.clock()
        with self._books() as session:
            looked = self._look_up(session, reading, request_id, at)
            known = (
                looked.known_sale
                if looked is not None
                else session.connection().scalar(_SALE_OF_REQUEST, {"request_id": request_id})
            )
            existing = session.get(Sale, known) if known is not None else None
            if existing is not None:
                same_request(existing, tendered)
            if existing is not None and existing.status is not SaleStatus.PENDING:
                return sale_result(existing, replayed=True)
            visit = visit_of(looked, reading)
            assert looked is not None
            visit.tariff_choice = (looked.tariff_in_force, looked.tariff_scheduled)
            operator = self.operator_row(session)
            if existing is not None:
                replay = self._resume(session, visit, reading, existing, tendered, at)
                if replay is not None:
                    return replay
                sale = existing
            else:
                sale = self._plan_sale(session, visit, reading, operator, tendered, request_id, at)
                if quoted_credit is not None and sale.credit != quoted_credit:
                    raise ConflictError(
                        f"the price changed since the quote: {pricing.format_money(tendered)} "
                        f"now buys a credit of {pricing.format_money(sale.credit)}, not the "
                        f"{pricing.format_money(quoted_credit)} quoted; quote again. Nothing "
                        "was sold"
                    )
            write = planning.build_write(
                session,
                customer=visit.customer,
                meter=visit.meter,
                card=visit.card,
                count=sale.purchase_count,
                amount=sale.card_amount,
                at=at,
                tariffs=visit.tariffs
                or self.tariffs_at(session, visit.customer, at, visit.tariff_choice),
            )
            learnt = {**who(visit), **self._learnt(visit)}
            return SaleStart(visit.card.id, sale, write, learnt, resumed=existing is not None)

    def finish_sale(self, started: SaleStart) -> dict[str, Any]:
        """Step 3 of a sale: the card holds the purchase; confirm it and take the money.

        Nothing is loaded: the card row is confirmed by a conditional UPDATE
        (it must still announce exactly this write) and the sale recorded in
        step 1 is carried in ``started``.
        """
        sale, purse = started.sale, started.write.purse
        at = self.clock()
        # Not waiting for the disk: were this lost in a power cut, the card's
        # purse still proves the write, and its next reading confirms it.
        with self._ledger(durable=False) as connection:
            confirmed = commit_purse(
                connection,
                started.card_id,
                action=PendingAction.SALE,
                sale_id=sale.id,
                count=purse.purchase_count,
                amount=purse.amount,
                at=at,
            )
            if confirmed is None:
                raise ConflictError(
                    f"card {started.learnt['card_serial']} was settled by another desk "
                    f"meanwhile; repeat the request {sale.request_id} to see how it ended"
                )
            take_payment(connection, sale, at=at)
            return sale_result(sale, **started.learnt)

    @staticmethod
    def _look_up(
        session: Session, reading: CardReading, request_id: str, at: datetime
    ) -> _SaleVisit | None:
        """The card's row (as :func:`identify` finds it) with the sale's other first questions.

        One statement instead of three: whether ``request_id`` is known
        already (``known_sale``), and which tariff versions are in force at
        ``at`` and next (``tariff_in_force``, ``tariff_scheduled``). None for
        a blank or unknown card, which :func:`visit_of` then refuses. Run on
        the driver, its objects made from the row (:class:`RowObjects`).
        """
        if reading.blank:
            return None
        loaded = VISIT_OBJECTS.load(
            session, _SALE_VISIT, {"serial": reading.serial, "request_id": request_id, "at": at}
        )
        if loaded is None:
            return None
        (card, customer, meter), asked = loaded
        return _SaleVisit(card, customer, meter, *asked)

    def tariffs_at(
        self,
        session: Session,
        customer: Customer,
        at: datetime,
        choice: tuple[int | None, int | None] | None = None,
    ) -> planning.Tariffs:
        """The customer's tariff in force and the next one, from this desk's cache of versions."""
        return planning.tariffs_at(session, customer, at, self.tariff_cache, choice)

    def _resume(
        self,
        session: Session,
        visit: Visit,
        reading: CardReading,
        sale: Sale,
        tendered: int,
        at: datetime,
    ) -> dict[str, Any] | None:
        """A pending sale asked for again: confirm it if the card has it, else write again."""
        if visit.card.pending_sale_id != sale.id:
            raise ConflictError(
                f"request {sale.request_id} was sold to another card than {visit.card.serial}: "
                "insert the card it was sold to"
            )
        if purse_shows(reading, sale.purchase_count, sale.card_amount):
            settle_pending(session, visit, reading, at=at)
            return sale_result(sale, visit, resumed=True)
        return None

    def _plan_sale(
        self,
        session: Session,
        visit: Visit,
        reading: CardReading,
        operator: Operator,
        tendered: int,
        request_id: str,
        at: datetime,
    ) -> Sale:
        """Settle, reconcile, price and record a new sale as pending."""
        ensure_active(visit.customer)
        settled = settle_pending(session, visit, reading, at=at)
        if settled in (Settled.REDO, Settled.IN_FLIGHT):
            raise unsettled_error(visit)
        self.learn(session, visit, reading, operator, WriteBackSource.SALE)
        sale = new_sale(
            session,
            visit,
            operator,
            tendered,
            request_id,
            at,
            site=self.site,
            tariff_cache=self.tariff_cache,
            shown_count=reading.write_back.purchase_count if reading.write_back else 0,
        )
        start_write(
            session,
            visit.card,
            reading,
            action=PendingAction.SALE,
            count=sale.purchase_count,
            amount=sale.card_amount,
            sale=sale,
        )
        return sale

    def quote(self, channel: CardChannel, tendered: int) -> dict[str, Any]:
        """What a sale of ``tendered`` would give, changing nothing (a trial)."""
        if tendered <= 0:
            raise InvalidInputError("amount", "give an amount above 0")
        reading = read_card(channel, self.keys)
        at = self.clock()
        with self.sessions() as session:
            try:
                visit = identify(session, reading)
                operator = self.operator_row(session)
                settle_pending(session, visit, reading, at=at)
                self.learn(session, visit, reading, operator, WriteBackSource.READ)
                sale = new_sale(
                    session,
                    visit,
                    operator,
                    tendered,
                    "quote",
                    at,
                    site=self.site,
                    tariff_cache=self.tariff_cache,
                    shown_count=reading.write_back.purchase_count if reading.write_back else 0,
                )
                result = sale_result(sale, visit, trial=True, **self._learnt(visit))
                result["status"] = "quote"
                return result
            finally:
                session.rollback()

    # -- reading and recovery ----------------------------------------------------------

    def read(self, channel: CardChannel) -> dict[str, Any]:
        """Read the card: who it belongs to, what it carries, the write-back reconciled."""
        reading = read_card(channel, self.keys)
        at = self.clock()
        with transaction(self.sessions) as session:
            visit = identify(session, reading, issuing_ok=True)
            operator = self.operator_row(session)
            settled = settle_pending(session, visit, reading, at=at)
            if settled not in (Settled.REDO, Settled.IN_FLIGHT):
                self.learn(session, visit, reading, operator, WriteBackSource.READ)
            return describe_visit(session, visit, reading)

    def recover(self, channel: CardChannel) -> dict[str, Any]:
        """Finish whatever write the card was pulled in: confirm, cancel or write again."""
        reading = read_card(channel, self.keys)
        at = self.clock()
        with transaction(self.sessions) as session:
            visit = identify(session, reading, issuing_ok=True)
            action = visit.card.pending_action
            settled = settle_pending(session, visit, reading, at=at, cancel=True)
            if settled is not Settled.REDO:
                return {"card_serial": visit.card.serial, "pending": action, "settled": settled}
            card = visit.card
            assert card.pending_count is not None and card.pending_amount is not None
            issuing = card.status is CardStatus.ISSUING
            write = planning.build_write(
                session,
                customer=visit.customer,
                meter=visit.meter,
                card=card,
                count=card.pending_count,
                amount=card.pending_amount,
                at=at,
                card_type=CardType(card.write_type) if issuing else None,
                bind_meter=issuing,
            )
            card_id, sale_id = card.id, card.pending_sale_id
        snapshot = reading.snapshot
        if issuing:
            snapshot = personalise_if_needed(self, channel, snapshot)
        self._write(channel, snapshot, write, sale_id, None)
        with transaction(self.sessions) as session:
            visit = self._confirm(session, card_id, write)
            return {"card_serial": visit.card.serial, "pending": action, "settled": "rewritten"}

    # -- reversal ----------------------------------------------------------------------

    def reverse(
        self,
        channel: CardChannel,
        sale_id: int,
        reason: str = "",
        *,
        proven_later: bool = False,
    ) -> dict[str, Any]:
        """Take back a sale whose credit provably has not reached the meter.

        Proof: the sale's card is in the reader, its purse still carries the
        sale, and its write-back is either cleared (the card has not been in
        the meter since) or verified and shows the meter did not load it. The
        card is then written with the purse minus this sale, under the same
        count, so a meter that holds that count half-loaded settles it with
        the smaller amount (docs/meter.md 5).

        ``proven_later``: the files were read by someone else's terminal (the
        vending API), so they prove nothing about the card as it is now: a
        terminal may send a reading from before the card went into the meter.
        Then the write-back must be cleared, the write leaves it so, and the
        money goes back only once the card itself proves, at the confirmation,
        that it is still cleared (:data:`REVERSAL_PROOF` on the sale).
        """
        reading = read_card(channel, self.keys)
        at = self.clock()
        with transaction(self.sessions) as session:
            visit = identify(session, reading)
            operator = self.operator_row(session, Role.SUPERVISOR)
            sale = session.get(Sale, sale_id)
            if sale is None:
                raise InvalidInputError("sale", f"there is no sale {sale_id}")
            if sale.customer_id != visit.customer.id or sale.meter_id != visit.meter.id:
                raise CardRefusedError(
                    f"sale {sale_id} was not sold to the account of card {visit.card.serial}"
                )
            if sale.site != self.site:
                raise ConflictError(
                    f"sale {sale_id} was sold at {sale.site}, whose till took its cash: "
                    "reverse it there"
                )
            if sale.kind is SaleKind.CARRY_OVER:
                raise ConflictError(
                    f"sale {sale_id} carries the credit of a removed meter, not money paid at "
                    "a till: it cannot be reversed (close the account to refund it)"
                )
            was_reversing = (
                visit.card.pending_action == PendingAction.REVERSAL.value
                and visit.card.pending_sale_id == sale_id
            )
            settled = settle_pending(session, visit, reading, at=at)
            if settled in (Settled.REDO, Settled.IN_FLIGHT):
                raise unsettled_error(visit)
            if settled is Settled.CONFIRMED and was_reversing:
                # This reversal asked again: its card write had finished, and
                # confirming it just now took the sale back (once).
                return sale_result(sale, visit)
            if reading.write_back is None and not reading.write_back_cleared:
                raise ConflictError(
                    f"the write-back on card {visit.card.serial} is torn: the meter may have "
                    f"started loading sale {sale_id}, so it cannot be reversed"
                )
            self.learn(session, visit, reading, operator, WriteBackSource.SALE)
            # What settling and reconciling changed is written before the sale is
            # read again (a refresh drops changes not yet flushed).
            session.flush()
            session.refresh(sale)
            if sale.status is SaleStatus.DELIVERED:
                raise ConflictError(
                    f"the credit of sale {sale_id} reached the meter"
                    f"{f' on {sale.delivered_at:%Y-%m-%d}' if sale.delivered_at else ''}: "
                    "it cannot be reversed"
                )
            if sale.status is not SaleStatus.WRITTEN:
                raise ConflictError(f"sale {sale_id} is {sale.status.value}: it cannot be reversed")
            card = visit.card
            if card.generation > 1 and not card.registered and sale.card_id != card.id:
                # Sold on the card this one replaced, which carries the same
                # purchase: taking it off this card leaves it on that one, which
                # may still reach the meter (as for a sale: planning.next_purchase).
                raise ConflictError(
                    f"card {card.serial} is a replacement that has not been in the meter yet: "
                    f"the card it replaced carries sale {sale_id} too and could still load it, "
                    "so it cannot be reversed"
                )
            shown = reading.write_back.purchase_count if reading.write_back else 0
            if sale.purchase_count != card.purchase_count or max(
                visit.meter.loaded_count, shown
            ) >= (sale.purchase_count):
                raise ConflictError(
                    f"the credit of sale {sale_id} has reached the meter (or a later purchase "
                    "was written over it): it cannot be reversed"
                )
            amount = card.purse_amount - sale.credit
            if amount < 0:
                raise ConflictError(f"card {card.serial} does not carry sale {sale_id}")
            months = sale.breakdown.get("months") or []
            paid_through = visit.customer.fixed_paid_through
            if months and paid_through is not None and paid_through > max(months):
                # The books hold one "paid through" month: months refunded before
                # months another sale paid would be a gap nobody charges again.
                raise ConflictError(
                    f"sale {sale_id} paid the fixed charges of {', '.join(months)}, and a later "
                    f"sale paid the months after them (through {paid_through}): reverse "
                    "that sale first"
                )
            if proven_later and not reading.write_back_cleared:
                raise ConflictError(
                    f"card {card.serial} carries a write-back its meter wrote: a terminal's "
                    f"reading cannot show that the meter did not load sale {sale_id} since; "
                    "reverse it at a service-hall desk"
                )
            breakdown = {k: v for k, v in sale.breakdown.items() if k != REVERSAL_PROOF}
            if proven_later:
                breakdown[REVERSAL_PROOF] = "write-back clear"
            sale.breakdown = breakdown
            sale.note = reason[:400]
            sale.reversed_by = operator.id
            start_write(
                session,
                card,
                reading,
                action=PendingAction.REVERSAL,
                count=card.purchase_count,
                amount=amount,
                sale=sale,
            )
            write = planning.build_write(
                session,
                customer=visit.customer,
                meter=visit.meter,
                card=card,
                count=card.purchase_count,
                amount=amount,
                at=at,
                clear_write_back=not proven_later,
            )
            card_id = card.id
        self.checkpoint("pending")
        self._write(channel, reading.snapshot, write, sale_id, None)
        self.checkpoint("written")
        with transaction(self.sessions) as session:
            visit = self._confirm(session, card_id, write)
            return sale_result(session.get_one(Sale, sale_id), visit)

    # -- shared steps --------------------------------------------------------------------

    def learn(
        self,
        session: Session,
        visit: Visit,
        reading: CardReading,
        operator: Operator,
        source: WriteBackSource = WriteBackSource.SALE,
    ) -> None:
        """Reconcile the card's write-back under this desk's settings."""
        learn(
            session,
            visit,
            reading,
            source=source,
            operator_id=operator.id,
            settings=self.settings,
        )

    @contextmanager
    def _books(self, *, durable: bool = True) -> Iterator[Session]:
        """A transaction whose lost races (a unique key another desk took) are conflicts."""
        with lost_races_are_conflicts(), transaction(self.sessions, durable=durable) as session:
            yield session

    @contextmanager
    def _ledger(self, *, durable: bool = True) -> Iterator[Connection]:
        """:meth:`_books` on a plain connection, for a step that loads nothing."""
        with (
            lost_races_are_conflicts(),
            connection_transaction(self.sessions, durable=durable) as connection,
        ):
            yield connection

    def _write(
        self,
        channel: CardChannel,
        snapshot: CardSnapshot,
        write: PurchaseWrite,
        sale_id: int | None,
        request_id: str | None,
    ) -> CardSnapshot:
        try:
            after = write_purchase(channel, self.keys, snapshot, write)
        except CardLayoutError as exc:
            again = (
                f"repeat the sale with --request-id {request_id}"
                if request_id
                else "run `cardcenter sale recover`"
            )
            raise SaleInterruptedError(
                f"the card write did not finish ({exc}); the write is recorded as pending and "
                f"nothing is lost: put the card back and {again}",
                sale_id or 0,
            ) from exc
        purse = after.purse
        if purse is None or (purse.purchase_count, purse.amount) != (
            write.purse.purchase_count,
            write.purse.amount,
        ):
            raise SaleInterruptedError(
                "the card did not keep the purse it was written with; put it back and run "
                "`cardcenter sale recover`",
                sale_id or 0,
            )
        return after

    def _confirm(self, session: Session, card_id: int, write: PurchaseWrite) -> Visit:
        card, customer, meter = session.execute(
            select(Card, Customer, Meter)
            .join(Customer, Customer.id == Card.customer_id)
            .join(Meter, Meter.id == Card.meter_id)
            .where(Card.id == card_id)
        ).one()
        visit = Visit(card, customer, meter)
        if (card.pending_count, card.pending_amount) != (
            write.purse.purchase_count,
            write.purse.amount,
        ):
            raise ConflictError(
                f"card {card.serial} was settled by another desk meanwhile; read it again"
            )
        # This desk has just written the card (a reversal clears its write-back).
        confirm_write(session, visit, at=self.clock(), write_back_clear=True)
        return visit

    @staticmethod
    def _learnt(visit: Visit) -> dict[str, Any]:
        rec = visit.reconciled
        if rec is None or rec.reconciliation is None:
            return {"reconciliation": None}
        r = rec.reconciliation
        return {
            "reconciliation": {
                "id": r.id,
                "energy": r.energy,
                "consumed": pricing.format_money(r.consumed),
                "delivered": pricing.format_money(r.delivered),
                "findings": [f.detail for f in rec.findings],
            }
        }


@contextmanager
def lost_races_are_conflicts() -> Iterator[None]:
    """A unique key another desk took first (at a statement or the commit) is a conflict."""
    try:
        yield
    except IntegrityError as exc:
        raise ConflictError(
            "another desk changed this account at the same moment; read the card again "
            f"({type(exc.orig).__name__ if exc.orig else 'conflict'})"
        ) from None


def same_request(sale: Sale, tendered: int) -> None:
    """A request id repeated with another amount is a mistake, not a retry."""
    if sale.tendered != tendered:
        raise ConflictError(
            f"request {sale.request_id} was a sale of {pricing.format_money(sale.tendered)}, "
            f"not {pricing.format_money(tendered)}: use a new request id for a new sale"
        )


def check_request_id(request_id: str | None) -> str:
    """A client's request id (printable, at most 64 characters), or a fresh one."""
    if request_id is None:
        return uuid.uuid4().hex
    request_id = request_id.strip()
    if not request_id or len(request_id) > MAX_REQUEST_ID or not request_id.isprintable():
        raise InvalidInputError("request id", "give 1 to 64 printable characters")
    return request_id


def new_sale(
    session: Session,
    visit: Visit,
    operator: Operator,
    tendered: int,
    request_id: str,
    at: datetime,
    *,
    site: str,
    shown_count: int = 0,
    kind: SaleKind = SaleKind.SALE,
    tariff_cache: planning.TariffCache | None = None,
) -> Sale:
    """Price a sale by the tariff in force and record it as pending (not yet on the card).

    ``tendered`` 0 is only for an opening card issued without credit: it
    carries purchase 1 with nothing in it, and no charge is collected.
    The row is inserted directly and the returned sale attached to
    ``session`` as loaded, so later changes to it are flushed as usual.
    """
    customer, meter, card = visit.customer, visit.meter, visit.card
    nxt = planning.next_purchase(card, meter, shown_count)
    if visit.tariffs is None:
        visit.tariffs = planning.tariffs_at(
            session, customer, at, tariff_cache, visit.tariff_choice
        )
    version = visit.tariffs[0]
    if tendered == 0 and kind is SaleKind.OPENING:
        quote = pricing.Quote(
            tendered=0, fixed_charge=0, months=(), tax=0, credit=0, tax_rate=version.tax_rate
        )
    else:
        months = pricing.months_due(customer.fixed_paid_through, customer.opened_at, at)
        quote = pricing.quote(version, tendered, months)
    if customer.hoarding_limit is not None:
        transit = sum(s.credit for s in in_transit(session, meter))
        planning.check_hoarding(customer, meter, transit, quote.credit)
    breakdown = quote.as_dict()
    breakdown["paid_through_before"] = customer.fixed_paid_through
    breakdown["tariff"] = f"{version.tariff.name} v{version.version}"
    row: dict[str, Any] = {
        "request_id": request_id,
        "kind": kind,
        "status": SaleStatus.PENDING,
        "customer_id": customer.id,
        "meter_id": meter.id,
        "card_id": card.id,
        "operator_id": operator.id,
        "site": site,
        "tariff_version_id": version.id,
        "purchase_count": nxt.count,
        "tendered": quote.tendered,
        "fixed_charge": quote.fixed_charge,
        "tax": quote.tax,
        "credit": quote.credit,
        "card_amount": nxt.carried + quote.credit,
        "parameter_version": customer.parameter_version,
        "breakdown": breakdown,
        "created_at": at,
        "written_at": None,
        "delivered_at": None,
        "reversed_at": None,
        "reversed_by": None,
        "note": "",
    }
    sale_id = insert_sale(session, row)
    return as_loaded(session, Sale, id=sale_id, **row)


def who(visit: Visit) -> dict[str, Any]:
    """The account a result is about, as the command line and the API name it."""
    return {
        "customer_no": visit.customer.customer_no,
        "meter_no": visit.meter.meter_no,
        "card_serial": visit.card.serial,
    }


def describe_visit(session: Session, visit: Visit, reading: CardReading) -> dict[str, Any]:
    """The card and the account as an operator sees them at the desk."""
    meter, card = visit.meter, visit.card
    transit = in_transit(session, meter)
    wb = reading.write_back
    return {
        "card_serial": card.serial,
        "card_status": str(card.status),
        "generation": card.generation,
        "customer_no": visit.customer.customer_no,
        "customer": visit.customer.name,
        "meter_no": meter.meter_no,
        "purse": {
            "purchase_count": reading.purse.purchase_count,
            "amount": pricing.format_money(reading.purse.amount),
        }
        if reading.purse
        else None,
        "write_back": {
            "purchase_count": wb.purchase_count,
            "remaining": pricing.format_money(wb.remaining_amount),
            "overdraft_used": pricing.format_money(wb.overdraft_used),
            "illegal_card_count": wb.illegal_card_count,
            "result": wb.insertion_result.name.lower(),
            "written_at": wb.written_at.isoformat(),
        }
        if wb
        else str(reading.write_back_status),
        "meter_balance": pricing.format_money(meter.balance),
        "in_transit": pricing.format_money(sum(s.credit for s in transit)),
        "settled": str(visit.settled),
        **Desk._learnt(visit),
    }


def personalise_if_needed(desk: Desk, channel: CardChannel, snapshot: CardSnapshot) -> CardSnapshot:
    """Personalise the card unless a previous run finished that already; read it again."""
    try:
        personalise(channel, desk.keys)
    except CardStateError:
        if not snapshot.personalised:
            raise
    return read_snapshot(channel)
