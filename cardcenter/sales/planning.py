"""What the next card write carries: parameters, tariff sets, purse.

The rule of DESIGN.md 3 lives here: a purchase goes out under count N + 1
only when a write-back has proved purchase N loaded; otherwise it is added to
purchase N, whose amount the card already carries. Update flags ask the
meter to take the parameter file and tariff sets only while the meter has not
confirmed (through a write-back) the versions the books hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Integer, ScalarSelect, Table, bindparam, func, inspect, select
from sqlalchemy.orm import Session

from cardcenter.cards.models import Card
from cardcenter.core.errors import ConflictError, InvalidInputError, NotFoundError
from cardcenter.core.loaded import RowObjects
from cardcenter.core.prepared import Prepared
from cardcenter.customers.models import Customer, Meter
from cardcenter.tariffs import pricing
from cardcenter.tariffs.models import Tariff, TariffVersion
from cardcenter.tariffs.services import next_version, tariff_of, version_at
from cardlayout.card.operations import PurchaseWrite
from cardlayout.files import CardType, FriendlyDays, Parameters, Purse, UpdateFlags


@dataclass(frozen=True)
class NextPurchase:
    """Where new credit goes on this card: its count and the purse amount before it."""

    count: int
    carried: int
    """Credit of the undelivered purchase the new one is added to (0 for a new count)."""

    @property
    def adds_to_pending(self) -> bool:
        return self.carried > 0


def next_purchase(card: Card, meter: Meter, shown_count: int = 0) -> NextPurchase:
    """Count N + 1 if the meter proved loading N, else add to N (DESIGN.md 3).

    ``shown_count`` is the purchase count of the verified write-back on the
    card in the reader: proof by itself, whatever the books made of it.
    """
    loaded = max(meter.loaded_count, shown_count)
    if card.purchase_count == 0 or loaded >= card.purchase_count:
        return NextPurchase(card.purchase_count + 1, 0)
    if card.generation > 1 and not card.registered:
        # The lost card carries the same purchase count: whichever card reaches
        # the meter first loads it, and the other then loads nothing. Money
        # added now could land on the card that loads nothing.
        raise ConflictError(
            f"card {card.serial} is a replacement that has not been in the meter yet, and "
            f"purchase {card.purchase_count} it carries is not confirmed: insert the card into "
            "the meter once, then buy"
        )
    return NextPurchase(card.purchase_count, card.purse_amount)


def card_type_for(card: Card) -> CardType:
    """Opening or replacement until the meter has registered the card, then purchase."""
    return CardType.PURCHASE if card.registered else CardType(card.write_type)


Tariffs = tuple[TariffVersion, TariffVersion | None]
TariffCache = dict[int, TariffVersion]
"""Tariff versions by id, as a desk has loaded them."""

_TARIFFS = cast(Table, Tariff.__table__)
_VERSIONS = cast(Table, TariffVersion.__table__)
_CUSTOMERS = cast(Table, Customer.__table__)


def _version_pick(
    tariff_id: ColumnElement[Any], category_id: ColumnElement[Any], *, in_force: bool
) -> ScalarSelect[Any]:
    """The id of the version in force at ``:at`` (or the next one after it) of a tariff.

    The tariff is the customer's own (``tariff_id``), else the first
    electricity tariff of their category (``category_id``), as
    :func:`~cardcenter.tariffs.services.tariff_of` decides; in force is the
    latest start at or before ``:at``, next is the earliest start after it
    (ties by version, then id). Given customer columns, the pick is
    correlated to the customer row of the enclosing statement.
    """
    default = (
        select(_TARIFFS.c.id)
        .where(_TARIFFS.c.category_id == category_id, _TARIFFS.c.utility == "electricity")
        .order_by(_TARIFFS.c.id)
        .limit(1)
        .correlate_except(_TARIFFS)
        .scalar_subquery()
    )
    at = bindparam("at", type_=_VERSIONS.c.active_from.type)
    starts = (_VERSIONS.c.active_from, _VERSIONS.c.version, _VERSIONS.c.id)
    pick = select(_VERSIONS.c.id).where(_VERSIONS.c.tariff_id == func.coalesce(tariff_id, default))
    if in_force:
        pick = pick.where(_VERSIONS.c.active_from <= at).order_by(*(c.desc() for c in starts))
    else:
        pick = pick.where(_VERSIONS.c.active_from > at).order_by(*starts)
    return pick.limit(1).correlate_except(_VERSIONS).scalar_subquery()


TARIFF_IN_FORCE = _version_pick(
    _CUSTOMERS.c.tariff_id, _CUSTOMERS.c.category_id, in_force=True
).label("tariff_in_force")
TARIFF_SCHEDULED = _version_pick(
    _CUSTOMERS.c.tariff_id, _CUSTOMERS.c.category_id, in_force=False
).label("tariff_scheduled")
"""The two picks as columns of a statement that selects the customer (the sale's first)."""

_TARIFF_CHOICE = Prepared(
    select(
        *(
            _version_pick(
                bindparam("tariff_id", type_=Integer),
                bindparam("category_id", type_=Integer),
                in_force=in_force,
            )
            for in_force in (True, False)
        )
    )
)


def still_loaded(obj: object) -> bool:
    """Whether an object kept from an earlier transaction can still be read.

    A rollback expires what its session had loaded (and unmakes what it had
    created), so an object a desk kept from a refused request must be loaded
    again rather than read.
    """
    state = inspect(obj)
    return not state.transient and not state.expired_attributes


_VERSION_OBJECTS = RowObjects(TariffVersion, Tariff, links=((0, "tariff", 1),))
_VERSION_OF_ID = Prepared(
    select(*_VERSION_OBJECTS.columns)
    .join_from(TariffVersion, Tariff, Tariff.id == TariffVersion.tariff_id)
    .where(TariffVersion.id == bindparam("version_id"))
)
"""A tariff version with its tariff, as the ORM's ``get`` loads it, on the driver."""


def tariffs_at(
    session: Session,
    customer: Customer,
    at: datetime,
    cache: TariffCache | None = None,
    choice: tuple[int | None, int | None] | None = None,
) -> Tariffs:
    """The customer's tariff version in force at ``at`` and the next scheduled one.

    One query picks the ids of both (:func:`_version_pick`); ``choice``, the
    ids a statement of the caller already picked for this ``at`` (with
    :data:`TARIFF_IN_FORCE` and :data:`TARIFF_SCHEDULED`), saves even that.
    A version is never changed once written (a change is a new version), so
    ``cache`` can keep the loaded ones for as long as its owner likes; which
    version is in force is asked of the database every time.
    """
    if choice is None:
        row = _TARIFF_CHOICE.first(
            session.connection(),
            {"tariff_id": customer.tariff_id, "category_id": customer.category_id, "at": at},
        )
        assert row is not None  # (a row of two scalar subqueries)
        choice = (row[0], row[1])
    in_force, scheduled = choice
    if in_force is None:
        # no tariff, or none in force yet: the slow path says which, in a sentence
        tariff = tariff_of(session, customer)
        return version_at(session, tariff, at), next_version(session, tariff, at)
    cache = {} if cache is None else cache

    def load(version_id: int) -> TariffVersion:
        version = cache.get(version_id)
        if version is None or not still_loaded(version):
            loaded = _VERSION_OBJECTS.load(session, _VERSION_OF_ID, {"version_id": version_id})
            if loaded is None:
                raise NotFoundError(f"tariff version {version_id} is not in the books")
            version = cache[version_id] = loaded[0][0]
        return version

    return load(in_force), load(scheduled) if scheduled is not None else None


def build_write(
    session: Session,
    *,
    customer: Customer,
    meter: Meter,
    card: Card,
    count: int,
    amount: int,
    at: datetime,
    card_type: CardType | None = None,
    bind_meter: bool = False,
    tariffs: Tariffs | None = None,
    clear_write_back: bool = True,
) -> PurchaseWrite:
    """The files one write puts on the card, from the books as they are now.

    ``tariffs`` (from :func:`tariffs_at`) saves looking the tariff up again.
    ``clear_write_back`` False leaves the write-back as it is (a payment
    channel's reversal: the card proves afterwards that it is still clear).
    """
    current, scheduled = tariffs or tariffs_at(session, customer, at)
    kind = pricing.user_type(current.kind)
    flags = UpdateFlags(0)
    if customer.parameter_version != meter.parameter_version:
        flags |= UpdateFlags.PARAMETERS
    set1 = set2 = None
    if current.id != meter.tariff_version_id:
        # The parameters go too: they carry the user type, by which the meter reads
        # the set (a version of another kind priced as the old kind would be wrong).
        flags |= UpdateFlags.CURRENT_TOU | UpdateFlags.CURRENT_TIER | UpdateFlags.PARAMETERS
        set1 = pricing.to_tariff_set(current)
    if scheduled is not None and pricing.user_type(scheduled.kind) is not kind:
        # The meter switches sets at the switch time but keeps its user type, which
        # one card holds for both: a version of another kind reaches the meter as the
        # current set, with the first card written after it starts.
        scheduled = None
    if scheduled is not None:
        flags |= UpdateFlags.BACKUP_TOU | UpdateFlags.BACKUP_TIER
        set2 = pricing.to_tariff_set(scheduled, switch_time=scheduled.active_from)
    params = Parameters(
        user_type=kind,
        card_type=card_type or card_type_for(card),
        meter_no=meter.meter_no,
        customer_no=customer.customer_no,
        update_flags=flags,
        parameter_version=customer.parameter_version % 256,
        # In whole minutes, as the backup set's own switch time (the card holds minutes).
        tariff_switch_time=(
            pricing.card_minute(scheduled.active_from) if scheduled is not None else None
        ),
        alarm1=customer.alarm1,
        alarm2=customer.alarm2,
        ct_ratio=meter.ct_ratio,
        pt_ratio=meter.pt_ratio,
        overdraft_limit=customer.overdraft_limit,
        hoarding_limit=customer.hoarding_limit,
        close_allow_threshold=customer.close_allow_threshold,
        load_limit=customer.load_limit,
        friendly_start_hour=customer.friendly_start_hour,
        friendly_end_hour=customer.friendly_end_hour,
        friendly_days=FriendlyDays(customer.friendly_days),
    )
    return PurchaseWrite(
        parameters=params,
        purse=Purse(amount=amount, purchase_count=count),
        tariff_set_1=set1,
        tariff_set_2=set2,
        clear_write_back=clear_write_back,
        bind_meter=bind_meter,
    )


def check_hoarding(customer: Customer, meter: Meter, in_transit: int, credit: int) -> None:
    """Refuse a sale the meter would refuse for passing its hoarding limit."""
    limit = customer.hoarding_limit
    if limit is None:
        return
    room = limit - meter.balance - in_transit
    if credit > room:
        raise InvalidInputError(
            "amount",
            f"a credit of {pricing.format_money(credit)} would pass the hoarding limit of "
            f"{pricing.format_money(limit)}: at most {pricing.format_money(max(room, 0))} "
            "of credit can be bought now",
        )
