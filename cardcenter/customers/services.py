"""Opening accounts, registering and finding meters, changing card parameters.

Numbers on the card are 12 BCD digits; they are checked here, where an
operator types them, so a bad number never reaches a card.
"""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cardcenter.core.db import utcnow
from cardcenter.core.errors import ConflictError, InvalidInputError, NotFoundError
from cardcenter.customers.models import (
    AccountStatus,
    Customer,
    Meter,
    MeterKind,
    MeterStatus,
)
from cardcenter.tariffs.models import Tariff
from cardcenter.tokens import identity as sts
from cardcenter.tokens.config import tables_of
from cardlayout.sts.identity import EncryptionAlgorithm

NUMBER = re.compile(r"\d{12}")
FIRST_CUSTOMER_NO = 100_000_000_001

PARAMETER_FIELDS = (
    "alarm1",
    "alarm2",
    "overdraft_limit",
    "hoarding_limit",
    "close_allow_threshold",
    "load_limit",
    "friendly_start_hour",
    "friendly_end_hour",
    "friendly_days",
)
"""The customer's card parameters an operator may change (docs/card.md 3.1)."""


def check_number(value: str, field: str) -> str:
    """A 12-digit meter or customer number, as the card holds it in BCD."""
    value = value.strip()
    if not NUMBER.fullmatch(value):
        raise InvalidInputError(field, f"{value!r} is not 12 digits")
    return value


def find_customer(session: Session, ref: str | int) -> Customer:
    """A customer by id, 12-digit customer number, or meter number."""
    text = str(ref).strip()
    customer: Customer | None = None
    if NUMBER.fullmatch(text):
        customer = session.scalar(select(Customer).where(Customer.customer_no == text))
        if customer is None:
            meter = session.scalar(select(Meter).where(Meter.meter_no == text))
            customer = meter.customer if meter is not None else None
    elif text.isdigit():
        customer = session.get(Customer, int(text))
    if customer is None:
        raise NotFoundError(f"no customer {text} (give an id, a customer number or a meter number)")
    return customer


def active_meter(session: Session, customer: Customer, kind: MeterKind | None = None) -> Meter:
    """The customer's meter in service (of ``kind`` if given)."""
    query = select(Meter).where(
        Meter.customer_id == customer.id, Meter.status == MeterStatus.ACTIVE
    )
    if kind is not None:
        query = query.where(Meter.kind == kind)
    meter = session.scalars(query.order_by(Meter.id.desc())).first()
    if meter is None:
        raise NotFoundError(f"customer {customer.customer_no} has no meter in service")
    return meter


def register_meter(
    session: Session,
    meter_no: str,
    *,
    customer: Customer | None = None,
    kind: MeterKind = MeterKind.CARD,
    utility: str = "electricity",
    ct_ratio: int = 1,
    pt_ratio: int = 1,
    now: datetime | None = None,
) -> Meter:
    """Register a meter, optionally at a customer's premises.

    A meter number is unique for ever: a meter that was removed from one
    customer is not silently moved to another.
    """
    meter_no = check_number(meter_no, "meter number")
    if meter_no == "0" * 12:
        raise InvalidInputError("meter number", "000000000000 is reserved for tool cards")
    for name, ratio in (("CT ratio", ct_ratio), ("PT ratio", pt_ratio)):
        if not 1 <= ratio <= 9999:
            raise InvalidInputError(name, f"{ratio} is not between 1 and 9999")
    existing = session.scalar(select(Meter).where(Meter.meter_no == meter_no))
    if existing is not None:
        owner = f" (customer {existing.customer.customer_no})" if existing.customer else ""
        raise ConflictError(f"meter {meter_no} is registered already{owner}")
    meter = Meter(
        meter_no=meter_no,
        kind=kind,
        utility=utility,
        customer=customer,
        ct_ratio=ct_ratio,
        pt_ratio=pt_ratio,
        installed_at=now or utcnow(),
        # A meter is registered new from the factory: its registers start at 0,
        # so the first write-back is reconciled against that.
        cumulative_quantity=0,
        cumulative_used=0,
    )
    session.add(meter)
    session.flush()
    return meter


def open_account(
    session: Session,
    *,
    name: str,
    meter_no: str,
    category_id: int,
    tariff: Tariff | None = None,
    customer_no: str | None = None,
    address: str = "",
    phone: str = "",
    site: str = "HQ",
    kind: MeterKind = MeterKind.CARD,
    ct_ratio: int = 1,
    pt_ratio: int = 1,
    now: datetime | None = None,
) -> Customer:
    """Open an account with its meter; the card is issued separately.

    Without ``customer_no`` the next free number from 100000000001 on is
    given (numbers are never reused, so the maximum is the next one).
    """
    name = " ".join(name.split())
    if not name or len(name) > 200:
        raise InvalidInputError("name", "give the customer's name (1 to 200 characters)")
    if customer_no is None:
        highest = session.scalar(select(func.max(Customer.customer_no)))
        customer_no = f"{max(int(highest or 0) + 1, FIRST_CUSTOMER_NO):012d}"
    customer_no = check_number(customer_no, "customer number")
    if session.scalar(select(Customer.id).where(Customer.customer_no == customer_no)):
        raise ConflictError(f"customer number {customer_no} is taken")
    when = now or utcnow()
    customer = Customer(
        customer_no=customer_no,
        name=name,
        address=address,
        phone=phone,
        category_id=category_id,
        tariff_id=tariff.id if tariff is not None else None,
        site=site,
        opened_at=when,
    )
    session.add(customer)
    session.flush()
    register_meter(
        session,
        meter_no,
        customer=customer,
        kind=kind,
        ct_ratio=ct_ratio,
        pt_ratio=pt_ratio,
        now=when,
    )
    return customer


def open_keypad_account(
    session: Session,
    *,
    name: str,
    category_id: int,
    pan: str,
    sgc: str,
    ti: int | str,
    krn: int | str,
    kt: int | str,
    base_date: int | str | None = None,
    ea: str | int | None = None,
    dkga: str | int | None = None,
    tables: str | None = None,
    meter_no: str | None = None,
    tariff: Tariff | None = None,
    customer_no: str | None = None,
    address: str = "",
    phone: str = "",
    site: str = "HQ",
    now: datetime | None = None,
) -> Customer:
    """Open an account with a keypad (STS) meter and record the identity the meter holds.

    The identity is checked before anything is written (an error names the
    field: PAN, SGC, TI, KRN, KT, base date, EA, DKGA). The meter number
    defaults to the PAN's last 12 digits (DRN and check digit), the number
    printed on the meter. ``tables`` is the STA production tables file
    (``CARDCENTER_STS_TABLES``) kept for an EA07 meter; None means the
    standard's sample tables. Tokens start with the first vend
    (``cardcenter token vend``).
    """
    identity = sts.make_identity(
        pan=pan,
        sgc=sgc,
        ti=ti,
        krn=krn,
        kt=kt,
        base_date=sts.DEFAULT_BASE_DATE if base_date is None else base_date,
        ea=sts.DEFAULT_EA if ea is None else ea,
        dkga=sts.DEFAULT_DKGA if dkga is None else dkga,
    )
    if session.scalar(select(Meter.id).where(Meter.sts_pan == identity.pan)) is not None:
        raise ConflictError(f"a meter with PAN {identity.pan} is registered already")
    kept = tables if identity.ea is EncryptionAlgorithm.EA07 else None
    tables_of(kept)  # a tables file that cannot be read is refused now, not at the first vend
    customer = open_account(
        session,
        name=name,
        meter_no=identity.pan[-12:] if meter_no is None else meter_no,
        category_id=category_id,
        tariff=tariff,
        customer_no=customer_no,
        address=address,
        phone=phone,
        site=site,
        kind=MeterKind.KEYPAD,
        now=now,
    )
    meter = active_meter(session, customer, MeterKind.KEYPAD)
    sts.store_identity(meter, identity)
    meter.sts_tables = kept
    session.flush()
    return customer


def change_parameters(session: Session, customer: Customer, **changes: int | None) -> Customer:
    """Change card parameters; they reach the meter with the next card.

    The parameter version goes up once per change, and the next sale writes
    the parameter file with its update flag until a write-back proves the
    meter took that version.
    """
    unknown = set(changes) - set(PARAMETER_FIELDS)
    if unknown:
        raise InvalidInputError(", ".join(sorted(unknown)), "is not a card parameter")
    for field, value in changes.items():
        if field in ("hoarding_limit", "load_limit"):
            if value is not None and value <= 0:
                raise InvalidInputError(field, "give a positive limit, or none for no limit")
        elif value is None or value < 0:
            raise InvalidInputError(field, "must be 0 or more")
        if (
            field in ("friendly_start_hour", "friendly_end_hour")
            and value is not None
            and value > 23
        ):
            raise InvalidInputError(field, f"{value} is not an hour (0 to 23)")
        if field == "friendly_days" and value is not None and value > 7:
            raise InvalidInputError(field, "is a set of flags 1 Saturday, 2 Sunday, 4 holidays")
    alarm1 = changes.get("alarm1", customer.alarm1)
    alarm2 = changes.get("alarm2", customer.alarm2)
    if alarm1 is not None and alarm2 is not None and alarm2 > alarm1:
        raise InvalidInputError(
            "alarm2", "must not be above alarm 1 (alarm 2 trips the relay later)"
        )
    changed = {k: v for k, v in changes.items() if getattr(customer, k) != v}
    if changed:
        for field, value in changed.items():
            setattr(customer, field, value)
        customer.parameter_version += 1
    session.flush()
    return customer


def ensure_active(customer: Customer) -> None:
    """Refuse any card or sale on a closed account."""
    if customer.status != AccountStatus.ACTIVE:
        raise ConflictError(f"the account of customer {customer.customer_no} is closed")
