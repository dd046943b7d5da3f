"""Issuing STS tokens at the centre: credit for keypad meters, engineering tokens, reprints.

A keypad meter never reports back, so a token is *delivered* the moment it
is handed over: a vend is one transaction that prices the payment, turns the
credit into energy (:mod:`cardcenter.tokens.energy`), makes the tokens,
records them with the sale and moves the money (``till -> meter:N``, tax and
fixed charges as for cards). Nothing is half done: a crash before the commit
issued nothing, and after it the request id gives back exactly the digits
that were issued (a token cannot be made twice: a second one would be a
second credit).

Every token a meter is given is made in a batch:

1. if the meter's base date has run out (the 1993 base ended 2024-11-24
   20:15 UTC), a rollover key change to the newest base date that has
   started; if a change of SGC, TI, KRN or KT was recorded
   (:func:`record_identity_change`), that change (both together make one key
   change). Its sections are encrypted under the OLD key, the only one the
   meter has;
2. then the token asked for, under the meter's (new) key, with the next TID:
   ``max(minutes since the base date now, last TID issued + 1)``, so two
   tokens in one minute still differ and a meter, which refuses a TID it
   has seen or an older one, takes them in the order issued.

The meter's identity and last TID move on in the same transaction, and
``(meter, base date, TID)`` is unique in the token table, so two desks
racing on one meter cannot issue one TID twice.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, case, func, insert, or_, select, union_all, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from cardcenter.core.db import transaction
from cardcenter.core.errors import ConflictError, InvalidInputError, NotFoundError
from cardcenter.core.loaded import RowObjects, as_written
from cardcenter.core.prepared import Prepared
from cardcenter.customers.models import Customer, Meter, MeterKind, MeterStatus
from cardcenter.customers.services import ensure_active
from cardcenter.operators.models import Operator, Role
from cardcenter.operators.services import ensure_operator, require_role
from cardcenter.sales import ledger, planning
from cardcenter.sales.desk import Desk, check_request_id
from cardcenter.sales.models import Sale, SaleKind, SaleStatus
from cardcenter.sales.services import SALES, insert_sale, pay_fixed_through
from cardcenter.tariffs import pricing
from cardcenter.tokens.config import describe_tables, tables_of, warn_if_sample
from cardcenter.tokens.energy import vend_energy
from cardcenter.tokens.identity import (
    IDENTITY_COLUMNS,
    check_pan,
    describe_identity,
    identity_columns,
    identity_of,
    next_base,
    record_change,
    recorded_identity,
    store_identity,
)
from cardcenter.tokens.models import TokenKind, TokenRecord
from cardlayout.errors import FormatError
from cardlayout.security.keystore import KeyStore
from cardlayout.sts.codec import encode_token
from cardlayout.sts.identity import MeterIdentity
from cardlayout.sts.tables import StaTables
from cardlayout.sts.tid import TID_LIMIT, last_minute_of, tid_of
from cardlayout.sts.tokens import (
    ManagementSubclass,
    ManagementToken,
    Token,
    TokenClass,
    TransferSubclass,
    TransferToken,
    key_change_tokens,
)
from cardlayout.sts.vending import store_decoder_key

CLEAR_ALL_REGISTERS = 0xFFFF
"""A clear-credit token's value for every credit register."""

TRANSFER_OF_UTILITY = {
    "electricity": TransferSubclass.ELECTRICITY,
    "water": TransferSubclass.WATER,
    "gas": TransferSubclass.GAS,
}


@dataclass(frozen=True)
class EngineeringKind:
    """An engineering token an operator may ask for, and what its value means."""

    subclass: ManagementSubclass
    default: int | None
    """The value when none is given (None: a value must be given)."""
    takes_value: bool
    words: str


ENGINEERING: dict[str, EngineeringKind] = {
    "clear-credit": EngineeringKind(
        ManagementSubclass.CLEAR_CREDIT,
        CLEAR_ALL_REGISTERS,
        True,
        "clear credit (register in --value, default 65535: all registers)",
    ),
    "clear-tamper": EngineeringKind(
        ManagementSubclass.CLEAR_TAMPER, 0, False, "clear the tamper condition"
    ),
    "set-power-limit": EngineeringKind(
        ManagementSubclass.SET_MAX_POWER, None, True, "set the maximum power limit (W, --value)"
    ),
}
"""The management tokens of ``cardcenter token engineering``, by the name typed."""


@dataclass(frozen=True)
class Issued:
    """A token made for the meter, not yet recorded."""

    kind: TokenKind
    token: Token
    digits: str
    base_date: int
    tid: int | None
    amount_field: int | None
    tenths: int | None


# ---------------------------------------------------------------- finding the meter


_KEYPAD_OBJECTS = RowObjects(Meter, Customer, links=((0, "customer", 1),))
_METER_OF_PAN = (
    select(*_KEYPAD_OBJECTS.columns)
    .join_from(Meter, Customer, Customer.id == Meter.customer_id, isouter=True)
    .where(Meter.sts_pan == bindparam("pan"))
)
_METER = Prepared(_METER_OF_PAN)
_METER_LOCKED = Prepared(_METER_OF_PAN.with_for_update(of=Meter))
_TARIFF_PICKS = (planning.TARIFF_IN_FORCE, planning.TARIFF_SCHEDULED)
_METER_TO_PRICE = Prepared(_METER_OF_PAN.add_columns(*_TARIFF_PICKS))
"""The meter with the ids of its customer's tariff versions in force at ``at`` and next."""
_METER_TO_SELL = Prepared(
    select(*_KEYPAD_OBJECTS.columns)
    .join_from(Meter, Customer, Customer.id == Meter.customer_id)
    .where(Meter.sts_pan == bindparam("pan"))
    .add_columns(*_TARIFF_PICKS)
    .with_for_update(of=(Meter, Customer))
)
""":data:`_METER_TO_PRICE` for a vend, the meter's row and its customer's locked.

The customer's too: a vend may pay the customer's fixed charges, and on
PostgreSQL a vend that waited for another one's lock on the meter would
otherwise read the customer as it was before that vend paid them, and
charge them again. (An inner join: PostgreSQL locks no row of an outer
join's nullable side; a meter without a customer sells nothing anyway.)
"""


def find_keypad_meter(session: Session, pan: str, *, lock: bool = False) -> Meter:
    """The keypad meter in service with ``pan``; ``lock`` holds its row to the commit.

    Locking (PostgreSQL ``FOR UPDATE`` of the meter's row; SQLite
    transactions hold the write lock from their start anyway) makes two
    desks vending to one meter take turns, so each computes its TID from the
    other's. The customer comes in the same query: every caller reads it.
    """
    return _keypad_meter(session, _METER_LOCKED if lock else _METER, {"pan": check_pan(pan)})[0]


def _keypad_meter(
    session: Session, statement: Prepared, params: dict[str, Any]
) -> tuple[Meter, Sequence[Any]]:
    """As :func:`find_keypad_meter`, by ``statement``: the meter and the row's other columns."""
    return _in_service(_KEYPAD_OBJECTS.load(session, statement, params), params["pan"])


def _meter_to_sell(session: Session, params: dict[str, Any]) -> tuple[Meter, Sequence[Any]]:
    """:data:`_METER_TO_SELL`'s meter (locked, with its customer) and tariff picks.

    Its inner join finds no row for a meter without a customer, nor for an
    unknown PAN; the unlocked look-up then says which, in a sentence.
    """
    loaded = _KEYPAD_OBJECTS.load(session, _METER_TO_SELL, params)
    if loaded is None:
        _keypad_meter(session, _METER_TO_PRICE, params)  # raises, saying why
        raise ConflictError(
            f"meter {params['pan']} was given a customer while this vend looked it up: "
            "nothing was issued, repeat the request"
        )
    return _in_service(loaded, params["pan"])


def _in_service(
    loaded: tuple[list[Any], Sequence[Any]] | None, pan: str
) -> tuple[Meter, Sequence[Any]]:
    """The keypad meter of a looked-up row, if it is in service, and the row's other columns."""
    meter: Meter | None = loaded[0][0] if loaded is not None else None
    if loaded is None or meter is None or meter.kind != MeterKind.KEYPAD:
        raise NotFoundError(f"no keypad meter has PAN {pan}")
    if meter.status != MeterStatus.ACTIVE or meter.customer is None:
        raise ConflictError(f"meter {pan} is no longer in service: no tokens are issued for it")
    ensure_active(meter.customer)
    return meter, loaded[1]


def operator_at(session: Session, desk: Desk, role: Role | None = None) -> Operator:
    """The desk's operator, loaded in ``session`` (created on a fresh install), with ``role``.

    Looked up in each transaction rather than kept by the desk: a token
    request refused after the lookup rolls back, which would leave a kept
    row expired and detached for the desk's next request.
    """
    operator = ensure_operator(session, desk.operator, site=desk.site)
    if role is not None:
        require_role(operator, role)
    return operator


# ---------------------------------------------------------------- making a batch


def _minutes(at: datetime, identity: MeterIdentity) -> int | None:
    """Minutes since the identity's base date, or None when that base date has run out."""
    if at < identity.base_date.start:
        raise ConflictError(
            f"meter {identity.pan} counts from base date {int(identity.base_date)}, which has "
            f"not started yet at {at:%Y-%m-%d %H:%M} UTC: correct its base date"
        )
    try:
        return tid_of(at, identity.base_date)
    except FormatError:
        return None


@dataclass(frozen=True)
class BatchPlan:
    """What a meter's next batch will be, decided before any token is made."""

    current: MeterIdentity
    """The identity the meter holds: its key encrypts the key change sections."""
    target: MeterIdentity
    """The identity it holds after the batch (``current`` when no key change is due)."""
    rollover: bool
    tid: int
    tables: StaTables
    key: bytes
    """The decoder key of ``current``."""
    new_key: bytes | None
    """The decoder key of ``target`` when a key change is due."""

    def key_change(self) -> list[Token]:
        """The key change sections (none when the meter keeps its key)."""
        if self.new_key is None:
            return []
        return list(
            key_change_tokens(self.current, self.target, self.new_key, rollover=self.rollover)
        )


def plan_batch(store: KeyStore, meter: Meter, at: datetime) -> BatchPlan:
    """The key change and TID of the meter's next batch (see the module); changes nothing.

    Every refusal of a batch is made here, so a trial that only plans
    refuses what the vend would.
    """
    current = identity_of(meter)
    target = recorded_identity(meter)
    last = meter.sts_last_tid
    minutes = _minutes(at, target)
    rollover = minutes is None or (last is not None and last + 1 >= TID_LIMIT)
    if rollover:
        base = next_base(target.base_date, at)
        if base is None:
            raise ConflictError(
                f"meter {current.pan}'s base date {int(target.base_date)} ran out on "
                f"{last_minute_of(target.base_date):%Y-%m-%d %H:%M} UTC and no later base "
                "date has started: it can take no more tokens"
            )
        # The meter keeps the TIDs it holds, counted from the new base date (the same
        # minutes): the new TID must still come after the last one issued, which may
        # be ahead of the clock (tokens vended in one minute take the next ones).
        shift = (base.start - target.base_date.start) // timedelta(minutes=1)
        target = dataclasses.replace(target, base_date=base)
        last = None if last is None else last - shift
        minutes = _minutes(at, target)
        if minutes is None:
            raise ConflictError(
                f"meter {current.pan}'s next base date {int(base)} has run out as well: one "
                "rollover key change moves a meter one base date on; re-key it by hand"
            )
    assert minutes is not None  # a run-out base date is a rollover, above
    tid = minutes if last is None else max(minutes, last + 1)
    tables = tables_of(meter.sts_tables)
    warn_if_sample(current.ea.value, meter.sts_tables)
    key = store_decoder_key(store, current)
    new_key: bytes | None = None
    if target != current:
        new_key = store_decoder_key(store, target)
        if new_key == key:
            raise ConflictError(
                f"meter {current.pan}'s base date {int(current.base_date)} has run out and its "
                f"DKGA{current.dkga.value} key does not depend on the base date, so a rollover "
                "would bring the same key, which the meter refuses: record a new key revision "
                "first (`cardcenter meter sts-set --meter PAN --krn N`)"
            )
    return BatchPlan(current, target, rollover, tid, tables, key, new_key)


def issue_batch(
    store: KeyStore,
    meter: Meter,
    at: datetime,
    kind: TokenKind,
    make: Callable[[int, int], Token],
    *,
    tenths: int | None = None,
) -> list[Issued]:
    """The key change sections the meter needs, then ``make(rnd, tid)`` (see the module).

    Moves the meter row on (identity, last TID); the caller records the
    tokens in the same transaction.
    """
    plan = plan_batch(store, meter, at)
    issued = make_batch(plan, kind, make, tenths=tenths)
    store_identity(meter, plan.target)
    meter.sts_last_tid = plan.tid
    return issued


def make_batch(
    plan: BatchPlan,
    kind: TokenKind,
    make: Callable[[int, int], Token],
    *,
    tenths: int | None = None,
) -> list[Issued]:
    """The batch of ``plan``: its key change sections, then ``make(rnd, tid)``, encrypted."""
    current, target = plan.current, plan.target
    issued = [
        Issued(
            TokenKind.KEY_CHANGE,
            section,
            encode_token(section, plan.key, current.ea, plan.tables),
            int(current.base_date),
            None,
            None,
            None,
        )
        for section in plan.key_change()
    ]
    key = plan.key if plan.new_key is None else plan.new_key
    token = make(secrets.randbelow(16), plan.tid)
    value: int | None = None
    if isinstance(token, TransferToken):
        value = token.amount
    elif isinstance(token, ManagementToken):
        value = token.value
    issued.append(
        Issued(
            kind,
            token,
            encode_token(token, key, target.ea, plan.tables),
            int(target.base_date),
            plan.tid,
            value,
            tenths,
        )
    )
    return issued


def _move_meter_on(session: Session, meter: Meter, plan: BatchPlan) -> None:
    """The meter row now holds the plan's identity and TID (one UPDATE, nothing tracked).

    As :func:`issue_batch` moves it on, for a caller that leaves ``meter``
    as it was loaded: its PAN, algorithm and tables, all a result shows of
    it, never change with a batch.
    """
    _MOVE_METER_ON.execute(
        session.connection(),
        {"meter_id": meter.id, **identity_columns(plan.target), "sts_last_tid": plan.tid},
    )


def record_batch(
    session: Session,
    issued: Sequence[Issued],
    *,
    request_id: str,
    meter: Meter,
    operator_id: int,
    at: datetime,
    sale_id: int | None = None,
) -> list[TokenRecord]:
    """Store the batch in entry order (positions from 1); the rows as stored.

    One INSERT of plain rows rather than the unit of work's: a token is
    written once and never changed, so the rows are returned unattached to
    ``session`` (nothing tracks them), with every column but ``id``.
    """
    assert meter.customer_id is not None
    rows = [
        {
            "request_id": request_id,
            "position": position,
            "meter_id": meter.id,
            "customer_id": meter.customer_id,
            "sale_id": sale_id,
            "kind": item.kind,
            "token_class": int(item.token.token_class),
            "subclass": int(item.token.subclass),
            "tid": item.tid,
            "digits": item.digits,
            "base_date": item.base_date,
            "amount_field": item.amount_field,
            "tenths": item.tenths,
            "issued_at": at,
            "operator_id": operator_id,
        }
        for position, item in enumerate(issued, start=1)
    ]
    _INSERT_TOKENS.execute_many(session.connection(), rows)
    return [as_written(TokenRecord, **row) for row in rows]


TOKENS = cast(Table, TokenRecord.__table__)
METERS = cast(Table, Meter.__table__)
# The vend's statements, run on the driver (core/prepared), as the card sale's.
_MOVE_METER_ON = Prepared(
    update(METERS).where(METERS.c.id == bindparam("meter_id")),
    column_keys=[*IDENTITY_COLUMNS, "sts_last_tid"],
)
_TOKEN_COLUMNS = tuple(column.name for column in TOKENS.columns if column.name != "id")
_INSERT_TOKENS = Prepared(insert(TOKENS), column_keys=_TOKEN_COLUMNS)
_VENDED_SINCE = Prepared(
    select(func.coalesce(func.sum(TOKENS.c.tenths), 0)).where(
        TOKENS.c.meter_id == bindparam("meter_id"),
        TOKENS.c.kind == TokenKind.CREDIT,
        TOKENS.c.issued_at >= bindparam("start"),
    )
)
_REQUEST_USED = Prepared(
    union_all(
        select(TOKENS.c.id).where(TOKENS.c.request_id == bindparam("request_id")),
        select(SALES.c.id).where(SALES.c.request_id == bindparam("request_id")),
    ).limit(1)
)
"""Any row a request id left: a token batch, or a sale (a card sale's, or a vend's)."""


# ---------------------------------------------------------------- requests


def batch_of(session: Session, request_id: str) -> list[TokenRecord]:
    """The tokens issued for ``request_id``, in entry order (empty if none)."""
    return list(
        session.scalars(
            select(TokenRecord)
            .where(TokenRecord.request_id == request_id)
            .order_by(TokenRecord.position)
        )
    )


Issue = Callable[[Session], dict[str, Any]]
"""Makes and records a request's batch in the session given; its description."""


def _once(
    desk: Desk,
    request_id: str,
    same: Callable[[Session, list[TokenRecord]], None],
    issue: Issue,
) -> dict[str, Any]:
    """Issue a batch for ``request_id`` once; a repeated request gives the first result.

    ``same`` refuses a repeated id that asks for something else. Of two desks
    racing on one request id, the one that commits second hits the unique
    ``(request_id, position)`` and returns the first one's result instead.
    A new request id (the usual case) costs one look-up: the batch and a
    card sale are looked for only once it is known to be used.
    """
    try:
        with transaction(desk.sessions) as session:
            if _REQUEST_USED.first(session.connection(), {"request_id": request_id}) is None:
                return issue(session)
            done = batch_of(session, request_id)
            if done:
                same(session, done)
                return describe_batch(session, done, replayed=True)
            raise ConflictError(
                f"request {request_id} was a card sale: use a new request id for a token"
            )
    except IntegrityError:
        with desk.sessions() as session:
            done = batch_of(session, request_id)
            if done:
                same(session, done)
                return describe_batch(session, done, replayed=True)
        raise ConflictError(
            "another desk issued a token to this meter at the same moment; nothing was issued "
            "here: repeat the request"
        ) from None


def _meter_of(session: Session, rows: list[TokenRecord]) -> Meter:
    return session.get_one(Meter, rows[0].meter_id)


_JOURNAL = cast(Table, ledger.JournalEntry.__table__)
_UNVENDED = Prepared(
    select(
        func.sum(
            case(
                (_JOURNAL.c.destination == bindparam("account"), _JOURNAL.c.amount),
                else_=-_JOURNAL.c.amount,
            )
        )
    ).where(
        or_(
            _JOURNAL.c.destination == bindparam("account"),
            _JOURNAL.c.source == bindparam("account"),
        )
    )
)
"""What a customer's ``unvended:N`` holds, in one statement on the driver (a vend asks it
every time, and :func:`ledger.balance` takes two through the ORM)."""


@dataclass(frozen=True)
class VendQuote:
    """What a payment buys a keypad meter now: the sale's figures, before anything is made."""

    meter: Meter
    customer: Customer
    version_id: int
    quote: pricing.Quote
    energy_field: int
    """The credit token's 16-bit amount field."""
    vended: int
    """Energy the token credits, tenths of a kWh."""
    breakdown: dict[str, Any]
    """As the sale keeps it: the quote, the tariff and the energy."""
    carried: int = 0
    """Money earlier vends could not put on a token (:func:`ledger.unvended`), added here."""
    unvended: int = 0
    """Money of this vend and the carried that this token cannot carry: kept for the next."""


def quote_vend(
    session: Session, pan: str, tendered: int, at: datetime, *, lock: bool = False
) -> VendQuote:
    """Price ``tendered`` for keypad meter ``pan`` at ``at`` as a vend does (no writes).

    By the tariff in force (fixed charges first, then tax included,
    :func:`cardcenter.tariffs.pricing.quote`), the credit made energy with
    this month's earlier tokens counted (:mod:`cardcenter.tokens.energy`).
    ``lock`` holds the meter's row and its customer's for the vend that follows.
    """
    # The meter's look-up also picks the tariff versions in force and next (one
    # statement instead of two).
    params = {"pan": check_pan(pan), "at": at}
    if lock:
        meter, (in_force, scheduled) = _meter_to_sell(session, params)
    else:
        meter, (in_force, scheduled) = _keypad_meter(session, _METER_TO_PRICE, params)
    customer = meter.customer
    assert customer is not None
    # (not the desk's tariff cache: a vend refused after loading a version rolls
    # back, which would leave the cached version expired and detached)
    version = planning.tariffs_at(session, customer, at, choice=(in_force, scheduled))[0]
    months = pricing.months_due(customer.fixed_paid_through, customer.opened_at, at)
    quote = pricing.quote(version, tendered, months)
    before = vended_this_month(session, meter, at)
    # What earlier tokens could not carry (less than one step's worth) goes on this one.
    carried = int(
        _UNVENDED.scalar(session.connection(), {"account": ledger.unvended(customer.id)}) or 0
    )
    energy = vend_energy(version, quote.credit + carried, before)
    breakdown = quote.as_dict()
    breakdown["paid_through_before"] = customer.fixed_paid_through
    breakdown["tariff"] = f"{version.tariff.name} v{version.version}"
    breakdown["energy"] = {
        "bought_tenths": energy.bought,
        "vended_tenths": energy.vended,
        "month_before_tenths": before,
        "carried": carried,
        "unvended": energy.unvended,
        "basis": energy.basis,
    }
    return VendQuote(
        meter,
        customer,
        version.id,
        quote,
        energy.field,
        energy.vended,
        breakdown,
        carried=carried,
        unvended=energy.unvended,
    )


def trial_vend(
    sessions: sessionmaker[Session], store: KeyStore, pan: str, tendered: int, at: datetime
) -> dict[str, Any]:
    """What :func:`vend` would answer now, less the tokens: nothing is made or written.

    The same pricing and the same batch plan (a key change due, and every
    refusal a vend would give), read in a transaction that writes nothing.
    """
    pan = check_pan(pan)
    _check_tendered(tendered)
    # Ended by a COMMIT, which writes nothing here: a ROLLBACK would make
    # psycopg forget the statements it prepared on the connection (PostgreSQL).
    with transaction(sessions) as session:
        priced = quote_vend(session, pan, tendered, at)
        sections = len(plan_batch(store, priced.meter, at).key_change())
        meter = priced.meter
        assert meter.sts_ea is not None
        return {
            "meter": meter.sts_pan,
            "meter_no": meter.meter_no,
            "customer_no": priced.customer.customer_no,
            "tables": describe_tables(meter.sts_ea, meter.sts_tables),
            "key_change": sections > 0,
            "tokens": sections + 1,
            "sale": _sale_entry(None, SaleStatus.DELIVERED, priced.breakdown, priced.quote),
            "energy": _energy_entry(priced.breakdown),
        }


def _record_sale(
    session: Session, priced: VendQuote, request_id: str, operator_id: int, site: str, at: datetime
) -> int:
    """Insert the vend's sale, delivered at once; its id (one INSERT, nothing tracked)."""
    quote = priced.quote
    row = {
        "request_id": request_id,
        "kind": SaleKind.TOKEN,
        "status": SaleStatus.DELIVERED,
        "customer_id": priced.customer.id,
        "meter_id": priced.meter.id,
        "card_id": None,
        "operator_id": operator_id,
        "site": site,
        "tariff_version_id": priced.version_id,
        "purchase_count": 0,
        "tendered": quote.tendered,
        "fixed_charge": quote.fixed_charge,
        "tax": quote.tax,
        "credit": quote.credit,
        "card_amount": quote.credit,
        "parameter_version": priced.customer.parameter_version,
        "breakdown": priced.breakdown,
        "created_at": at,
        "written_at": at,
        "delivered_at": at,
        "reversed_at": None,
        "reversed_by": None,
        "note": "",
    }
    return insert_sale(session, row)


def _check_tendered(tendered: int) -> None:
    if not isinstance(tendered, int) or isinstance(tendered, bool) or tendered <= 0:
        raise InvalidInputError("amount", f"{tendered!r} is not an amount: give 0.01 or more")


Recorder = Callable[[Session, dict[str, Any]], None]
"""Something to write in a vend's own transaction with its result (an audit entry)."""


def vend(
    desk: Desk,
    pan: str,
    tendered: int,
    request_id: str | None = None,
    *,
    operator_id: int | None = None,
    record: Recorder | None = None,
) -> dict[str, Any]:
    """Sell ``tendered`` (minor units) to the keypad meter ``pan`` as a credit token.

    Priced by :func:`quote_vend`; any key change the meter needs comes first
    in the batch. The money moves at once (the credit straight to
    ``meter:N``): a token is delivered when handed over. ``operator_id`` is
    the desk operator's row when the caller knows it (the API made it), saving
    its look-up; ``record`` writes what the caller keeps of a new vend (its
    audit entry) in the vend's own transaction, so both commit together and
    the one durable commit covers them. A replayed request records nothing.
    """
    request_id = check_request_id(request_id)
    pan = check_pan(pan)
    _check_tendered(tendered)

    def same(session: Session, rows: list[TokenRecord]) -> None:
        sale = session.get(Sale, rows[-1].sale_id) if rows[-1].sale_id else None
        meter = _meter_of(session, rows)
        if sale is None or meter.sts_pan != pan or sale.tendered != tendered:
            was = (
                f"a sale of {pricing.format_money(sale.tendered)}"
                if sale is not None
                else "an engineering token"
            )
            raise ConflictError(
                f"request {request_id} was {was} to meter {meter.sts_pan}, not a sale of "
                f"{pricing.format_money(tendered)} to meter {pan}: use a new request id"
            )

    def issue(session: Session) -> dict[str, Any]:
        at = desk.clock()
        priced = quote_vend(session, pan, tendered, at, lock=True)
        meter, customer, quote = priced.meter, priced.customer, priced.quote
        if operator_id is None:
            operator = desk.operator_row(session)
            seller, seller_name = operator.id, operator.username
        else:
            seller, seller_name = operator_id, desk.operator
        sale_id = _record_sale(session, priced, request_id, seller, desk.site, at)
        subclass = TRANSFER_OF_UTILITY.get(meter.utility, TransferSubclass.ELECTRICITY)
        plan = plan_batch(desk.keys.store, meter, at)
        issued = make_batch(
            plan,
            TokenKind.CREDIT,
            lambda rnd, tid: TransferToken(subclass, rnd, tid, priced.energy_field),
            tenths=priced.vended,
        )
        _move_meter_on(session, meter, plan)
        rows = record_batch(
            session,
            issued,
            request_id=request_id,
            meter=meter,
            operator_id=seller,
            at=at,
            sale_id=sale_id,
        )
        till = ledger.till(desk.site)
        ledger.post_all(
            session,
            [
                (till, ledger.meter(customer.id), quote.credit, "token credit"),
                (till, ledger.TAX, quote.tax, "tax"),
                (till, ledger.FIXED, quote.fixed_charge, "fixed charge"),
                # meter:N holds what the meter was given: the token's worth, the money
                # earlier tokens could not carry included, this token's leftover not
                (
                    ledger.unvended(customer.id),
                    ledger.meter(customer.id),
                    priced.carried,
                    "carried from earlier tokens",
                ),
                (
                    ledger.meter(customer.id),
                    ledger.unvended(customer.id),
                    priced.unvended,
                    "too little for this token: kept for the next",
                ),
            ],
            customer_id=customer.id,
            sale_id=sale_id,
            operator_id=seller,
        )
        if quote.months:
            pay_fixed_through(session, customer.id, max(quote.months))
        result = _described(
            rows,
            replayed=False,
            meter=meter,
            customer_no=customer.customer_no,
            operator=seller_name,
            sale=_sale_entry(sale_id, SaleStatus.DELIVERED, priced.breakdown, quote),
            energy=_energy_entry(priced.breakdown),
        )
        if record is not None:
            record(session, result)
        return result

    return _once(desk, request_id, same, issue)


def vended_this_month(session: Session, meter: Meter, at: datetime) -> int:
    """Energy (tenths) of the credit tokens issued to ``meter`` in ``at``'s month (UTC).

    Tokens are written straight to their table (:func:`record_batch`), never
    left pending in a session, so this reads the table without a flush.
    """
    start = at.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    total = _VENDED_SINCE.scalar(session.connection(), {"meter_id": meter.id, "start": start})
    return int(total or 0)


def engineering_token(
    desk: Desk,
    pan: str,
    kind: str,
    value: int | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """An engineering (management) token for an authorised operator (supervisor and up)."""
    request_id = check_request_id(request_id)
    pan = check_pan(pan)
    spec = ENGINEERING.get(kind)
    if spec is None:
        raise InvalidInputError(
            "kind", f"{kind!r} is not an engineering token: use {', '.join(ENGINEERING)}"
        )
    if value is not None and not spec.takes_value:
        raise InvalidInputError("value", f"a {kind} token takes no value")
    if value is None:
        if spec.default is None:
            raise InvalidInputError("value", f"a {kind} token needs a value: give --value N")
        value = spec.default
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFF:
        raise InvalidInputError("value", f"{value!r} is not a number from 0 to 65535")
    wanted = value

    def same(session: Session, rows: list[TokenRecord]) -> None:
        last = rows[-1]
        meter = _meter_of(session, rows)
        if (
            meter.sts_pan != pan
            or last.kind is not TokenKind.ENGINEERING
            or (last.subclass, last.amount_field) != (int(spec.subclass), wanted)
        ):
            raise ConflictError(
                f"request {request_id} issued another token (to meter {meter.sts_pan}), not a "
                f"{kind} token of value {wanted} to meter {pan}: use a new request id"
            )

    def issue(session: Session) -> dict[str, Any]:
        operator = operator_at(session, desk, Role.SUPERVISOR)
        at = desk.clock()
        meter = find_keypad_meter(session, pan, lock=True)
        issued = issue_batch(
            desk.keys.store,
            meter,
            at,
            TokenKind.ENGINEERING,
            lambda rnd, tid: ManagementToken(spec.subclass, rnd, tid, wanted),
        )
        rows = record_batch(
            session, issued, request_id=request_id, meter=meter, operator_id=operator.id, at=at
        )
        return describe_batch(session, rows, replayed=False)

    return _once(desk, request_id, same, issue)


def record_identity_change(
    session: Session,
    operator: Operator,
    pan: str,
    *,
    sgc: str | None = None,
    ti: int | str | None = None,
    krn: int | str | None = None,
    kt: int | str | None = None,
) -> dict[str, Any]:
    """Record a change of SGC, TI, KRN or KT (supervisor): the next token brings its key change."""
    require_role(operator, Role.SUPERVISOR)
    meter = find_keypad_meter(session, pan, lock=True)
    record_change(meter, sgc=sgc, ti=ti, krn=krn, kt=kt)
    session.flush()
    return describe_identity(meter)


# ---------------------------------------------------------------- reading back


def reprint(
    sessions: sessionmaker[Session], *, sale_id: int | None = None, request_id: str | None = None
) -> dict[str, Any]:
    """The tokens of a sale or a request exactly as they were issued."""
    if (sale_id is None) == (request_id is None):
        raise InvalidInputError("reprint", "give either a sale id or a request id")
    with transaction(sessions) as session:  # a COMMIT, as the trial's (trial_vend)
        if sale_id is not None:
            request = session.scalar(
                select(TokenRecord.request_id).where(TokenRecord.sale_id == sale_id).limit(1)
            )
            if request is None:
                raise NotFoundError(f"sale {sale_id} issued no token")
        else:
            request = request_id
        assert request is not None
        rows = batch_of(session, request)
        if not rows:
            raise NotFoundError(f"request {request} issued no token")
        return describe_batch(session, rows, replayed=True)


def meter_tokens(session: Session, pan: str, limit: int = 20) -> dict[str, Any]:
    """The meter's STS identity and its newest tokens (newest first)."""
    pan = check_pan(pan)
    meter = session.scalar(select(Meter).where(Meter.sts_pan == pan))
    if meter is None:
        raise NotFoundError(f"no keypad meter has PAN {pan}")
    rows = session.scalars(
        select(TokenRecord)
        .where(TokenRecord.meter_id == meter.id)
        .order_by(TokenRecord.id.desc())
        .limit(limit)
    ).all()
    return {
        "meter": describe_identity(meter),
        "tokens": [
            {"request_id": row.request_id, "issued_at": row.issued_at.isoformat(), **entry(row)}
            for row in rows
        ],
    }


def group_digits(digits: str) -> str:
    """20 digits as printed on a receipt: five groups of four."""
    return " ".join(digits[i : i + 4] for i in range(0, len(digits), 4))


def tenths_text(tenths: int) -> str:
    return f"{tenths // 10}.{tenths % 10}"


def what(row: TokenRecord, sections: int = 0) -> str:
    """A token in words, for receipts."""
    if row.kind is TokenKind.KEY_CHANGE:
        section = ManagementSubclass(row.subclass).section
        return f"key change, section {section} of {sections}"
    if row.kind is TokenKind.CREDIT:
        return f"credit {tenths_text(row.tenths or 0)} kWh"
    subclass = ManagementSubclass(row.subclass)
    if subclass is ManagementSubclass.CLEAR_CREDIT:
        target = (
            "all registers"
            if row.amount_field == CLEAR_ALL_REGISTERS
            else f"register {row.amount_field}"
        )
        return f"clear credit ({target})"
    if subclass is ManagementSubclass.CLEAR_TAMPER:
        return "clear tamper condition"
    if subclass is ManagementSubclass.SET_MAX_POWER:
        return f"set maximum power limit {row.amount_field} W"
    return f"management subclass {row.subclass} value {row.amount_field}"


def entry(row: TokenRecord, sections: int = 0) -> dict[str, Any]:
    """One token of a result."""
    return {
        "position": row.position,
        "kind": row.kind.value,
        "what": what(row, sections),
        "class": TokenClass(row.token_class).name.lower(),
        "subclass": row.subclass,
        "tid": row.tid,
        "base_date": row.base_date,
        "digits": row.digits,
        "display": group_digits(row.digits),
    }


def describe_batch(session: Session, rows: list[TokenRecord], *, replayed: bool) -> dict[str, Any]:
    """A batch as the command line prints it and the API returns it, the same every time."""
    meter = _meter_of(session, rows)
    customer = session.get_one(Customer, rows[0].customer_id)
    operator = session.get_one(Operator, rows[0].operator_id)
    sale_id = rows[-1].sale_id
    sale: dict[str, Any] | None = None
    energy: dict[str, Any] | None = None
    if sale_id is not None:
        found = session.get_one(Sale, sale_id)
        sale = _sale_entry(found.id, found.status, found.breakdown, found)
        energy = _energy_entry(found.breakdown)
    return _described(
        rows,
        replayed=replayed,
        meter=meter,
        customer_no=customer.customer_no,
        operator=operator.username,
        sale=sale,
        energy=energy,
    )


def _described(
    rows: Sequence[TokenRecord],
    *,
    replayed: bool,
    meter: Meter,
    customer_no: str,
    operator: str,
    sale: dict[str, Any] | None,
    energy: dict[str, Any] | None,
) -> dict[str, Any]:
    """The description of a batch from what is known of it (read back, or just written)."""
    sections = sum(1 for row in rows if row.kind is TokenKind.KEY_CHANGE)
    assert meter.sts_ea is not None
    result: dict[str, Any] = {
        "request_id": rows[0].request_id,
        "replayed": replayed,
        "meter": meter.sts_pan,
        "meter_no": meter.meter_no,
        "customer_no": customer_no,
        "issued_at": rows[0].issued_at.isoformat(),
        "operator": operator,
        "tables": describe_tables(meter.sts_ea, meter.sts_tables),
        "key_change": sections > 0,
        "tokens": [entry(row, sections) for row in rows],
    }
    if sale is not None and energy is not None:
        result["sale"] = sale
        result["energy"] = energy
    return result


def _sale_entry(
    sale_id: int | None,
    status: SaleStatus,
    breakdown: dict[str, Any],
    amounts: Sale | pricing.Quote,
) -> dict[str, Any]:
    """A result's ``sale``: the money as text (a stored sale's, or a quote's), the tariff and
    months from the breakdown."""
    money = pricing.format_money
    return {
        "id": sale_id,
        "status": str(status),
        "tariff": breakdown.get("tariff"),
        "tendered": money(amounts.tendered),
        "fixed_charge": money(amounts.fixed_charge),
        "months": breakdown.get("months") or [],
        "tax": money(amounts.tax),
        "credit": money(amounts.credit),
    }


def _energy_entry(breakdown: dict[str, Any]) -> dict[str, Any]:
    """A result's ``energy`` from the breakdown a sale keeps."""
    energy = breakdown.get("energy") or {}
    money = pricing.format_money
    return {
        "kwh": tenths_text(int(energy.get("vended_tenths", 0))),
        "bought_kwh": tenths_text(int(energy.get("bought_tenths", 0))),
        "month_before_kwh": tenths_text(int(energy.get("month_before_tenths", 0))),
        "unvended": money(int(energy.get("unvended", 0))),
        "basis": energy.get("basis"),
    }
