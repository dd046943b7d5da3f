"""Tariffs in the books: categories, tariffs and their versions, who pays what when.

A tariff is a name; what it charges is a list of versions, each in force
from its ``active_from`` until the next one's. A version is never edited or
backdated once it exists: meters have charged by it and the centre must be
able to say, for any past instant, what prices a meter had
(:func:`version_at`). A change is a new version with a later activation
time; a version scheduled for the future goes to the card as the backup
tariff set with that switch time (:func:`next_version`), so the meter
changes prices on time even if the customer does not buy again before.

A customer pays their own tariff (``Customer.tariff_id``) or else the
default tariff of their category (``Tariff.category_id``) for the utility.
A category has at most one default per utility; moving it is an explicit
act (:func:`set_category_default`), never a side effect of adding a tariff,
because it changes the prices of every customer of the category.

Every function takes the caller's session and flushes; none commits.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from cardcenter.core.db import utcnow
from cardcenter.core.errors import ConflictError, InvalidInputError, NotFoundError
from cardcenter.customers.models import AccountStatus, Category, Customer
from cardcenter.tariffs.models import Tariff, TariffKind, TariffVersion
from cardcenter.tariffs.pricing import (
    MAX_TAX_RATE,
    format_money,
    format_price,
    format_quantity,
    user_type,
    validate_structure,
)

__all__ = [
    "UTILITIES",
    "add_tariff",
    "customers_reached",
    "describe",
    "find_tariff",
    "get_or_create_category",
    "next_version",
    "reach_counts",
    "set_category_default",
    "tariff_of",
    "version_at",
]

UTILITIES = ("electricity", "water", "gas")
"""The utilities a tariff can be for (one DF per utility on the card)."""

_CATEGORY_CODE = re.compile(r"^[a-z0-9_-]{1,32}$")
_NAME_LIMIT = 64
_CATEGORY_NAME_LIMIT = 200


def _iso(at: datetime) -> str:
    """An instant as ISO 8601 text in UTC, to the second."""
    return at.astimezone(UTC).isoformat(timespec="seconds")


def _aware(at: datetime, field: str) -> datetime:
    if not isinstance(at, datetime):
        raise InvalidInputError(field, f"{at!r} is not a time")
    if at.tzinfo is None or at.utcoffset() is None:
        raise InvalidInputError(
            field,
            f"{at.isoformat()} has no time zone: give one, e.g. 2026-01-01T00:00+08:00",
        )
    return at


# ---------------------------------------------------------------- categories


def _category_code(code: str) -> str:
    """``code`` stripped, or an error saying what a category code looks like."""
    text = code.strip() if isinstance(code, str) else ""
    if not _CATEGORY_CODE.match(text):
        hint = f" (e.g. {text.lower()!r})" if _CATEGORY_CODE.match(text.lower()) else ""
        raise InvalidInputError(
            "category",
            f"{code!r} is not a category code: use 1 to 32 lower-case letters, digits, "
            f"'_' or '-'{hint}",
        )
    return text


def get_or_create_category(session: Session, code: str, name: str | None = None) -> Category:
    """The category ``code``, created (named ``name``, else the code) if it is new.

    An existing category keeps its name: renaming is not this function's job.
    Codes are lower-case letters, digits, ``_`` and ``-`` (1 to 32), so they
    can be typed on a command line and used in file names.
    """
    text = _category_code(code)
    category = session.scalar(select(Category).where(Category.code == text))
    if category is not None:
        return category
    label = text if name is None else name.strip()
    if not label or len(label) > _CATEGORY_NAME_LIMIT:
        raise InvalidInputError(
            "name", f"give the category a name of 1 to {_CATEGORY_NAME_LIMIT} characters"
        )
    category = Category(code=text, name=label)
    session.add(category)
    session.flush()
    return category


def _category_default(session: Session, category_id: int, utility: str) -> Tariff | None:
    """The default tariff of a category for a utility (the oldest, should rows disagree)."""
    return session.scalar(
        select(Tariff)
        .where(Tariff.category_id == category_id, Tariff.utility == utility)
        .order_by(Tariff.id)
        .limit(1)
    )


def set_category_default(session: Session, tariff: Tariff, category: str) -> Tariff | None:
    """Make ``tariff`` the default of ``category`` (created if new); return the one it replaces.

    This is the explicit way to move a default, which :func:`add_tariff`
    refuses to do on the side. The replaced tariff (the category's default
    for the same utility until now) stops being a default; if ``tariff`` was
    the default of another category, that category is left without one for
    this utility, and its customers without a tariff of their own need one
    before their next sale.
    """
    target = get_or_create_category(session, category)
    previous = _category_default(session, target.id, tariff.utility)
    if previous is not None and previous.id == tariff.id:
        return None
    if previous is not None:
        previous.category_id = None
    tariff.category_id = target.id
    session.flush()
    return previous


# ---------------------------------------------------------------- tariffs and versions


def find_tariff(session: Session, name: str) -> Tariff:
    """The tariff called ``name``; the error lists the names there are."""
    tariff = session.scalar(select(Tariff).where(Tariff.name == name.strip()))
    if tariff is not None:
        return tariff
    names = list(session.scalars(select(Tariff.name).order_by(Tariff.name)))
    if not names:
        raise NotFoundError(f"no tariff is named {name!r}: there are no tariffs yet, add one first")
    raise NotFoundError(
        f"no tariff is named {name!r}: the tariffs are {', '.join(map(repr, names))}"
    )


def add_tariff(
    session: Session,
    name: str,
    kind: TariffKind,
    structure: dict[str, Any],
    *,
    category: str | None = None,
    active_from: datetime | None = None,
    tax_rate: int = 0,
    fixed_monthly: int = 0,
    now: datetime | None = None,
    utility: str = "electricity",
) -> TariffVersion:
    """Add a version of tariff ``name`` (the tariff is created if the name is new).

    Versions are numbered 1, 2, ... and each starts at ``active_from``
    (default ``now``, itself defaulting to the clock). The rules:

    - the structure must suit the kind (:func:`pricing.validate_structure`;
      it is stored normalised); ``tax_rate`` is 0 to 10000 basis points,
      ``fixed_monthly`` 0 or more minor units;
    - a new version of an existing tariff starts strictly after the newest
      version (two versions never start at one instant, so
      :func:`version_at` has one answer) and not before ``now``: meters have
      been charging the older prices, and a backdated version would make
      the books say otherwise. The first version of a new tariff may start
      in the past, since no customer can have paid by it yet;
    - ``category``: the tariff becomes (or stays) that category's default,
      the category being created if new. If the category already has
      another default for this utility, or this tariff is already the
      default of another category, it is a :class:`ConflictError`: moving a
      default changes many customers' prices and is done explicitly with
      :func:`set_category_default`.

    Everything is checked before anything is written, so a refusal adds
    nothing (not even the category).
    """
    clock = utcnow() if now is None else _aware(now, "now")
    start = clock if active_from is None else _aware(active_from, "active_from")
    title = name.strip() if isinstance(name, str) else ""
    if not title or len(title) > _NAME_LIMIT:
        raise InvalidInputError("name", f"give the tariff a name of 1 to {_NAME_LIMIT} characters")
    normalised = validate_structure(kind, structure)  # checks the kind too
    tariff_kind = TariffKind(kind)
    code = None if category is None else _category_code(category)
    if isinstance(tax_rate, bool) or not isinstance(tax_rate, int):
        raise InvalidInputError("tax_rate", f"{tax_rate!r} is not a whole number of basis points")
    if not 0 <= tax_rate <= MAX_TAX_RATE:
        raise InvalidInputError(
            "tax_rate",
            f"{tax_rate} basis points is out of range: give 0 to {MAX_TAX_RATE} (1300 is 13 %)",
        )
    if isinstance(fixed_monthly, bool) or not isinstance(fixed_monthly, int) or fixed_monthly < 0:
        raise InvalidInputError(
            "fixed_monthly", f"{fixed_monthly!r} is not an amount: give 0 or more minor units"
        )
    if utility not in UTILITIES:
        raise InvalidInputError(
            "utility", f"{utility!r} is not a utility: use one of {', '.join(UTILITIES)}"
        )

    tariff = session.scalar(select(Tariff).where(Tariff.name == title))
    number = 1
    if tariff is not None:
        if tariff.utility != utility:
            raise InvalidInputError(
                "utility",
                f"tariff {title!r} is for {tariff.utility}, not {utility}: "
                f"give the {utility} tariff another name",
            )
        newest = session.scalar(
            select(TariffVersion)
            .where(TariffVersion.tariff_id == tariff.id)
            .order_by(TariffVersion.active_from.desc(), TariffVersion.version.desc())
            .limit(1)
        )
        if newest is not None:
            if start <= newest.active_from:
                raise InvalidInputError(
                    "active_from",
                    f"tariff {title!r} version {newest.version} starts at "
                    f"{_iso(newest.active_from)}: a new version must start after it, "
                    f"not at {_iso(start)}",
                )
            if start < clock:
                raise InvalidInputError(
                    "active_from",
                    f"{_iso(start)} is in the past: meters have charged tariff {title!r} "
                    f"version {newest.version} since then, so a change cannot be backdated; "
                    f"give a time from now ({_iso(clock)}) on",
                )
        number = (
            session.scalar(
                select(func.max(TariffVersion.version)).where(TariffVersion.tariff_id == tariff.id)
            )
            or 0
        ) + 1

    target: Category | None = None
    if code is not None:
        target = session.scalar(select(Category).where(Category.code == code))
        if target is not None:
            current = _category_default(session, target.id, utility)
            if current is not None and (tariff is None or current.id != tariff.id):
                raise ConflictError(
                    f"category {target.code!r} already has tariff {current.name!r} as its "
                    f"{utility} default: add {title!r} without a category, or move the "
                    f"default with set_category_default"
                )
        if (
            tariff is not None
            and tariff.category_id is not None
            and (target is None or tariff.category_id != target.id)
        ):
            other = session.get(Category, tariff.category_id)
            other_code = other.code if other is not None else tariff.category_id
            raise ConflictError(
                f"tariff {title!r} is the default of category {other_code!r}; a tariff is "
                f"the default of one category at most: move it with set_category_default"
            )
        if target is None:
            target = get_or_create_category(session, code)

    if tariff is None:
        tariff = Tariff(name=title, utility=utility, created_at=clock)
        session.add(tariff)
    if target is not None:
        tariff.category_id = target.id
    version = TariffVersion(
        tariff=tariff,
        version=number,
        kind=tariff_kind,
        active_from=start,
        structure=normalised,
        tax_rate=tax_rate,
        fixed_monthly=fixed_monthly,
        created_at=clock,
    )
    session.add(version)
    session.flush()
    return version


def version_at(session: Session, tariff: Tariff, at: datetime) -> TariffVersion:
    """The version of ``tariff`` in force at ``at``: the latest that started at or before it.

    At the very instant a version starts, it is the one in force (the meter
    switches at the first interval starting at or after the switch time).
    """
    when = _aware(at, "at")
    version = session.scalar(
        select(TariffVersion)
        .where(TariffVersion.tariff_id == tariff.id, TariffVersion.active_from <= when)
        .order_by(TariffVersion.active_from.desc(), TariffVersion.version.desc())
        .limit(1)
    )
    if version is not None:
        return version
    first = next_version(session, tariff, when)
    if first is None:
        raise NotFoundError(f"tariff {tariff.name!r} has no versions: add one")
    raise NotFoundError(
        f"tariff {tariff.name!r} is not in force at {_iso(when)}: its first version starts "
        f"at {_iso(first.active_from)}"
    )


def next_version(session: Session, tariff: Tariff, at: datetime) -> TariffVersion | None:
    """The earliest version starting strictly after ``at``: a scheduled change, or None.

    The sale writes it to the card as the backup tariff set with its
    ``active_from`` as the switch time, so the meter changes prices on time.
    """
    when = _aware(at, "at")
    return session.scalar(
        select(TariffVersion)
        .where(TariffVersion.tariff_id == tariff.id, TariffVersion.active_from > when)
        .order_by(TariffVersion.active_from, TariffVersion.version)
        .limit(1)
    )


# ---------------------------------------------------------------- customers


def tariff_of(session: Session, customer: Customer, *, utility: str = "electricity") -> Tariff:
    """The tariff ``customer`` pays: their own, else their category's default for ``utility``."""
    if customer.tariff_id is not None:
        own = session.get(Tariff, customer.tariff_id)
        if own is not None:
            return own
    default = _category_default(session, customer.category_id, utility)
    if default is not None:
        return default
    raise NotFoundError(
        f"customer {customer.customer_no} has no tariff: give one with --tariff "
        f"or make a default for category {customer.category.code}"
    )


def customers_reached(
    session: Session, tariff: Tariff, *, limit: int | None = None
) -> list[Customer]:
    """The customers who pay ``tariff`` (as :func:`tariff_of` decides), by id.

    Its own customers, and, if it is a category's default, the customers of
    that category who have no tariff of their own. Closed accounts are
    included: the caller decides whether they matter. ``limit`` keeps the
    first ones (a page lists a few of what may be 100 000).
    """
    query = select(Customer).where(_reaches(session, tariff)).order_by(Customer.id).limit(limit)
    return list(session.scalars(query))


def reach_counts(session: Session, tariff: Tariff) -> tuple[int, int]:
    """How many customers pay ``tariff``, and how many of them have an active account."""
    total, active = session.execute(
        select(
            func.count(),
            func.count().filter(Customer.status == AccountStatus.ACTIVE),
        ).where(_reaches(session, tariff))
    ).one()
    return int(total), int(active)


def _reaches(session: Session, tariff: Tariff) -> ColumnElement[bool]:
    """Whether a customer pays ``tariff``: :func:`customers_reached`'s condition."""
    reached = Customer.tariff_id == tariff.id
    if tariff.category_id is not None:
        default = _category_default(session, tariff.category_id, tariff.utility)
        if default is not None and default.id == tariff.id:
            reached = or_(
                reached,
                (Customer.tariff_id.is_(None)) & (Customer.category_id == tariff.category_id),
            )
    return reached


# ---------------------------------------------------------------- reports


def _settlement_text(date: list[int | None]) -> str:
    month, day, hour = date
    if month is None:
        return f"monthly on day {day} at {hour:02d}:00"
    return f"yearly on {month:02d}-{day:02d} at {hour:02d}:00"


def describe(version: TariffVersion) -> dict[str, Any]:
    """A JSON-safe description of ``version`` for the command line and reports.

    Prices and amounts are decimal text (``"0.5283"`` per unit, ``"5.00"``
    a month), thresholds in units (``"2400.00"``), the tax rate both in basis
    points and as a percentage, times in ISO 8601 UTC.
    """
    kind = TariffKind(version.kind)
    s = validate_structure(kind, version.structure)
    rates: list[int] = s["rate_prices"]
    return {
        "name": version.tariff.name,
        "utility": version.tariff.utility,
        "version": version.version,
        "kind": kind.value,
        "user_type": int(user_type(kind)),
        "active_from": _iso(version.active_from),
        "rate_prices": [format_price(p) for p in rates],
        "periods": [
            {"from": f"{h:02d}:{m:02d}", "rate": r, "price": format_price(rates[r - 1])}
            for h, m, r in s["periods"]
        ],
        "tier_thresholds": [format_quantity(t) for t in s["tier_thresholds"]],
        "tier_prices": [format_price(p) for p in s["tier_prices"]],
        "settlement_dates": [_settlement_text(d) for d in s["settlement_dates"]],
        "tax_rate": version.tax_rate,
        "tax_percent": f"{version.tax_rate // 100}.{version.tax_rate % 100:02d}",
        "fixed_monthly": format_money(version.fixed_monthly),
    }
