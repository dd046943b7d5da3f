"""``cardcenter customer``: open accounts, look them up, change card parameters."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cardcenter.cards.models import Card
from cardcenter.cli.context import add_common, emit, money_arg, sessions_of
from cardcenter.core.config import Config
from cardcenter.core.db import transaction
from cardcenter.core.errors import InvalidInputError
from cardcenter.customers import services
from cardcenter.customers.models import Customer, Meter, MeterKind
from cardcenter.sales.models import Sale
from cardcenter.tariffs import pricing
from cardcenter.tariffs.services import find_tariff, get_or_create_category, tariff_of


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    customer = sub.add_parser("customer", help="customers: add, show, change card parameters")
    actions = customer.add_subparsers(dest="customer_command", required=True, metavar="ACTION")

    add = actions.add_parser(
        "add",
        help="open an account with its meter",
        description="Open a customer account and register its meter (the card comes with "
        "`cardcenter card issue`).",
    )
    add.add_argument("--name", required=True)
    add.add_argument(
        "--meter-no",
        help="the meter's 12-digit number (required for a card meter; a keypad meter's "
        "defaults to the last 12 digits of its PAN)",
    )
    add.add_argument("--tariff", help="tariff name (default: the category's default tariff)")
    add.add_argument("--category", default="residential", help="customer category")
    add.add_argument("--customer-no", help="12 digits (default: the next free number)")
    add.add_argument("--address", default="")
    add.add_argument("--phone", default="")
    add.add_argument("--ct", type=int, default=1, help="CT ratio of the meter (default 1)")
    add.add_argument("--pt", type=int, default=1, help="PT ratio of the meter (default 1)")
    add.add_argument("--keypad", action="store_true", help="a keypad (STS token) meter")
    sts = add.add_argument_group("keypad meter (with --keypad): the STS identity the meter holds")
    sts.add_argument("--pan", help="18 digits: IIN, DRN, check digit")
    sts.add_argument("--sgc", help="supply group code, 6 digits")
    sts.add_argument("--ti", help="tariff index, 0 to 99")
    sts.add_argument("--krn", help="key revision number, 1 to 9")
    sts.add_argument("--kt", help="key type, 0 to 3")
    sts.add_argument("--base-date", help="1993, 2014 (default) or 2035")
    sts.add_argument("--ea", help="encryption algorithm 07 (default), 09 or 11")
    sts.add_argument("--dkga", help="decoder key generation 02 or 04 (default)")
    add_common(add)
    add.set_defaults(handler=run_add)

    show = actions.add_parser("show", help="an account: meters, cards, recent sales")
    show.add_argument("customer", help="id, customer number or meter number")
    add_common(show)
    show.set_defaults(handler=run_show)

    change = actions.add_parser(
        "set",
        help="change card parameters (they reach the meter with the next card)",
        description="Change the customer's card parameters; the next sale writes them to "
        "the card with the parameter update flag until the meter confirms them.",
    )
    change.add_argument("customer", help="id, customer number or meter number")
    change.add_argument("--alarm1", type=money_arg, metavar="AMOUNT")
    change.add_argument("--alarm2", type=money_arg, metavar="AMOUNT")
    change.add_argument("--overdraft", type=money_arg, metavar="AMOUNT")
    change.add_argument("--hoarding", metavar="AMOUNT|none", help="hoarding limit, or none")
    change.add_argument("--close-allow", type=money_arg, metavar="AMOUNT")
    change.add_argument("--load-limit", metavar="WATTS|none", help="load limit, or none")
    change.add_argument("--friendly", metavar="HH-HH", help="friendly hours, e.g. 22-06; 0-0 none")
    change.add_argument(
        "--friendly-days", metavar="sat,sun,holidays", help="days with no disconnection"
    )
    add_common(change)
    change.set_defaults(handler=run_set)

    swap = actions.add_parser(
        "swap-meter",
        help="replace the meter of the card in the reader, carrying its credit over",
        description="The card must come fresh from the old meter (its write-back is the final "
        "reading). The new meter is registered and the card rewritten as its opening card, "
        "carrying the old meter's credit and any credit in transit.",
    )
    swap.add_argument("--meter-no", required=True, help="the new meter's 12-digit number")
    swap.add_argument("--request-id")
    add_common(swap, keys=True, reader=True)
    swap.set_defaults(handler=run_swap)

    close = actions.add_parser(
        "close",
        help="close the account of the card in the reader and refund the meter's credit",
    )
    close.add_argument("--reason", default="", help="why (kept with the card)")
    add_common(close, keys=True, reader=True)
    close.set_defaults(handler=run_close)


STS_OPTIONS = ("pan", "sgc", "ti", "krn", "kt", "base_date", "ea", "dkga")


def run_add(args: argparse.Namespace) -> int:
    config = Config.from_env()
    given = [name for name in STS_OPTIONS if getattr(args, name) is not None]
    if args.keypad:
        return run_add_keypad(args, config)
    if given:
        option = "--" + given[0].replace("_", "-")
        raise InvalidInputError(option, "is for keypad meters: add --keypad")
    if args.meter_no is None:
        raise InvalidInputError("meter number", "give the card meter's 12 digits with --meter-no")
    return _open_account(
        args,
        config,
        services.open_account,
        meter_no=args.meter_no,
        kind=MeterKind.CARD,
        ct_ratio=args.ct,
        pt_ratio=args.pt,
    )


def _open_account(
    args: argparse.Namespace,
    config: Config,
    opener: Callable[..., Customer],
    *,
    describe: Callable[[Session, Customer, dict[str, Any]], None] | None = None,
    **meter: Any,
) -> int:
    """Open an account with the options every kind of meter shares, and print it."""
    with sessions_of(args) as sessions, transaction(sessions) as session:
        category = get_or_create_category(session, args.category)
        tariff = find_tariff(session, args.tariff) if args.tariff else None
        customer = opener(
            session,
            name=args.name,
            category_id=category.id,
            tariff=tariff,
            customer_no=args.customer_no,
            address=args.address,
            phone=args.phone,
            site=config.site,
            **meter,
        )
        tariff_of(session, customer)  # refuse an account nothing can be sold to
        result = account(session, customer)
        if describe is not None:
            describe(session, customer, result)
    return emit(args, result)


def run_add_keypad(args: argparse.Namespace, config: Config) -> int:
    """``customer add --keypad``: the account and the STS identity its meter holds."""
    from cardcenter.tokens.config import configured_tables
    from cardcenter.tokens.identity import describe_identity

    for name in ("pan", "sgc", "ti", "krn", "kt"):
        if getattr(args, name) is None:
            raise InvalidInputError(
                f"--{name}",
                "a keypad meter needs its STS identity: give --pan, --sgc, --ti, --krn and --kt",
            )

    def identity(session: Session, customer: Customer, result: dict[str, Any]) -> None:
        meter = services.active_meter(session, customer, MeterKind.KEYPAD)
        result["sts"] = describe_identity(meter)

    return _open_account(
        args,
        config,
        services.open_keypad_account,
        describe=identity,
        pan=args.pan,
        sgc=args.sgc,
        ti=args.ti,
        krn=args.krn,
        kt=args.kt,
        base_date=args.base_date,
        ea=args.ea,
        dkga=args.dkga,
        tables=configured_tables(),
        meter_no=args.meter_no,
    )


def run_show(args: argparse.Namespace) -> int:
    with sessions_of(args) as sessions, sessions() as session:
        result = account(session, services.find_customer(session, args.customer))
    return emit(args, result)


def _limit(text: str | None, field: str, money: bool) -> tuple[bool, int | None]:
    if text is None:
        return False, None
    if text.strip().lower() == "none":
        return True, None
    if money:
        try:
            return True, money_arg(text)
        except argparse.ArgumentTypeError as exc:
            raise InvalidInputError(field, str(exc)) from None
    if not text.isdigit():
        raise InvalidInputError(field, f"{text!r} is not a whole number of watts or none")
    return True, int(text)


DAYS = {"sat": 1, "sun": 2, "holidays": 4}


def parameter_changes(args: argparse.Namespace) -> dict[str, int | None]:
    """The card parameters the options change."""
    changes: dict[str, int | None] = {}
    for option, field in (
        ("alarm1", "alarm1"),
        ("alarm2", "alarm2"),
        ("overdraft", "overdraft_limit"),
        ("close_allow", "close_allow_threshold"),
    ):
        if getattr(args, option) is not None:
            changes[field] = getattr(args, option)
    for option, field, money in (
        ("hoarding", "hoarding_limit", True),
        ("load_limit", "load_limit", False),
    ):
        given, value = _limit(getattr(args, option), f"--{option.replace('_', '-')}", money)
        if given:
            changes[field] = value
    if args.friendly is not None:
        parts = args.friendly.split("-")
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise InvalidInputError("--friendly", f"{args.friendly!r} is not HH-HH")
        changes["friendly_start_hour"], changes["friendly_end_hour"] = map(int, parts)
    if args.friendly_days is not None:
        flags = 0
        for day in filter(None, (d.strip().lower() for d in args.friendly_days.split(","))):
            if day not in DAYS and day != "none":
                raise InvalidInputError("--friendly-days", f"{day!r} is not sat, sun or holidays")
            flags |= DAYS.get(day, 0)
        changes["friendly_days"] = flags
    if not changes:
        raise InvalidInputError("parameters", "give at least one parameter to change")
    return changes


def run_set(args: argparse.Namespace) -> int:
    changes = parameter_changes(args)
    with sessions_of(args) as sessions, transaction(sessions) as session:
        customer = services.find_customer(session, args.customer)
        services.change_parameters(session, customer, **changes)
        result = account(session, customer)
    return emit(args, result)


def account(session: Any, customer: Customer) -> dict[str, Any]:
    """An account as one JSON-safe dict (money as decimal text)."""
    meters = session.scalars(select(Meter).where(Meter.customer_id == customer.id)).all()
    cards = session.scalars(select(Card).where(Card.customer_id == customer.id)).all()
    sales = session.scalars(
        select(Sale).where(Sale.customer_id == customer.id).order_by(Sale.id.desc()).limit(10)
    ).all()
    money = pricing.format_money
    return {
        "id": customer.id,
        "customer_no": customer.customer_no,
        "name": customer.name,
        "category": customer.category.code,
        "status": str(customer.status),
        "parameters": {
            "version": customer.parameter_version,
            "alarm1": money(customer.alarm1),
            "alarm2": money(customer.alarm2),
            "overdraft_limit": money(customer.overdraft_limit),
            "hoarding_limit": None
            if customer.hoarding_limit is None
            else money(customer.hoarding_limit),
            "load_limit": customer.load_limit,
            "friendly_hours": f"{customer.friendly_start_hour}-{customer.friendly_end_hour}",
        },
        "meters": [
            f"{m.meter_no} {m.kind} {m.status} balance {money(m.balance)} loaded #{m.loaded_count}"
            for m in meters
        ],
        "cards": [
            f"{c.serial} gen {c.generation} {c.status} purse #{c.purchase_count} "
            f"{money(c.purse_amount)}"
            for c in cards
        ],
        "recent_sales": [
            f"#{s.id} {s.created_at:%Y-%m-%d %H:%M} {s.kind} {s.status} count {s.purchase_count} "
            f"paid {money(s.tendered)} credit {money(s.credit)}"
            for s in sales
        ],
    }


def run_swap(args: argparse.Namespace) -> int:
    from cardcenter.cli.context import channel_of, desk_of
    from cardcenter.customers.lifecycle import swap_meter

    with desk_of(args) as desk:
        result = swap_meter(desk, channel_of(args), args.meter_no, request_id=args.request_id)
    return emit(args, result)


def run_close(args: argparse.Namespace) -> int:
    from cardcenter.cli.context import channel_of, desk_of
    from cardcenter.customers.lifecycle import close_account

    with desk_of(args) as desk:
        result = close_account(desk, channel_of(args), args.reason)
    return emit(args, result)
