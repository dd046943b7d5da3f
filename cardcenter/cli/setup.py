"""``cardcenter init`` and ``cardcenter tariff``: the database, the keys, the prices."""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from cardcenter.cli.context import add_common, config_of, emit, engine_of, money_arg, sessions_of
from cardcenter.core.db import session_factory, transaction, upgrade
from cardcenter.core.errors import InvalidInputError
from cardcenter.operators.services import ensure_operator
from cardcenter.tariffs import pricing, services
from cardcenter.tariffs.models import TariffKind
from cardlayout.codec.money import parse_decimal
from cardlayout.errors import FormatError
from cardlayout.security.keystore import init_master_keys, open_keystore

DEFAULT_CATEGORIES = {"residential": "Residential", "commercial": "Commercial"}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    init = sub.add_parser(
        "init",
        help="create the database and, if missing, the key store",
        description=(
            "Create (or upgrade) the centre's database and create the key store with every "
            "master key if it does not exist yet. Safe to run again."
        ),
    )
    add_common(init, keys=True)
    init.set_defaults(handler=run_init)

    tariff = sub.add_parser("tariff", help="tariffs: add a tariff or a version, list them")
    actions = tariff.add_subparsers(dest="tariff_command", required=True, metavar="ACTION")
    add = actions.add_parser(
        "add",
        help="add a tariff, or a new version of one",
        description=(
            "Add tariff NAME (or its next version). Prices are per unit (kWh, m3) with up to "
            "4 decimals. --flat PRICE; --tou PRICES with --periods; --tiers for stepped; "
            "--tou and --tiers together for TOU plus stepped."
        ),
    )
    add.add_argument("name")
    add.add_argument("--flat", metavar="PRICE", help="single rate price, e.g. 0.5283")
    add.add_argument("--tou", metavar="P1,P2,..", help="TOU rate prices, rate 1 first")
    add.add_argument(
        "--periods", metavar="HH:MM=R,..", help="TOU day periods: start time = rate number"
    )
    add.add_argument(
        "--tiers",
        metavar="T1:P1,..,PN",
        help="stepped: upper threshold (units) : price of each tier, then the last tier's price",
    )
    add.add_argument(
        "--settlement",
        metavar="MM-DD-HH|DD-HH",
        action="append",
        default=[],
        help="tier settlement date, yearly MM-DD-HH or monthly DD-HH (repeatable)",
    )
    add.add_argument("--category", help="make it the default tariff of this customer category")
    add.add_argument("--active-from", metavar="ISO", help="start (ISO 8601 with zone); default now")
    add.add_argument("--tax-rate", metavar="PERCENT", default="0", help="tax included, e.g. 13")
    add.add_argument(
        "--fixed-monthly", type=money_arg, default=0, metavar="AMOUNT", help="fixed charge a month"
    )
    add_common(add)
    add.set_defaults(handler=run_tariff_add)

    listing = actions.add_parser("list", help="list tariffs and their versions")
    add_common(listing)
    listing.set_defaults(handler=run_tariff_list)


def run_init(args: argparse.Namespace) -> int:
    config = config_of(args)
    engine = engine_of(config, must_exist=False)
    try:
        upgrade(engine)
        with transaction(session_factory(engine)) as session:
            for code, name in DEFAULT_CATEGORIES.items():
                services.get_or_create_category(session, code, name)
            ensure_operator(session, config.operator, site=config.site)
    finally:
        engine.dispose()
    created = False
    spec = config.keystore
    if not spec.startswith("pkcs11:"):
        Path(spec).parent.mkdir(parents=True, exist_ok=True)
        created = not Path(spec).exists()
    with open_keystore(spec, create=True) as store:
        if not store.list_keys():
            init_master_keys(store)
            created = True
        keys = [str(info) for info in store.list_keys()]
    result = {
        "database": engine.url.render_as_string(hide_password=True),
        "keystore": spec,
        "keystore_created": created,
        "master_keys": keys,
        "operator": config.operator,
        "site": config.site,
    }
    return emit(args, result)


_PERIOD = re.compile(r"^(\d{1,2}):(\d{2})=(\d{1,2})$")


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _quantity(text: str, field: str) -> int:
    try:
        return parse_decimal(text, 2, field=field)
    except FormatError as exc:
        raise InvalidInputError(field, str(exc)) from None


def tariff_structure(args: argparse.Namespace) -> tuple[TariffKind, dict[str, Any]]:
    """The kind and structure the options describe (validated by the tariff service)."""
    if args.flat and (args.tou or args.tiers):
        raise InvalidInputError("--flat", "a flat tariff has no TOU prices or tiers")
    structure: dict[str, Any] = {}
    if args.flat:
        structure["rate_prices"] = [pricing.parse_price(args.flat, "--flat")]
        return TariffKind.FLAT, structure
    if args.tou:
        structure["rate_prices"] = [pricing.parse_price(p, "--tou") for p in _split(args.tou)]
        periods = []
        for item in _split(args.periods or ""):
            match = _PERIOD.match(item)
            if not match:
                raise InvalidInputError("--periods", f"{item!r} is not HH:MM=RATE")
            periods.append([int(g) for g in match.groups()])
        structure["periods"] = periods
    if args.tiers:
        *steps, last = _split(args.tiers)
        thresholds, prices = [], []
        for step in steps:
            if ":" not in step:
                raise InvalidInputError("--tiers", f"{step!r} is not THRESHOLD:PRICE")
            threshold, price = step.split(":", 1)
            thresholds.append(_quantity(threshold, "--tiers"))
            prices.append(pricing.parse_price(price, "--tiers"))
        structure["tier_thresholds"] = thresholds
        structure["tier_prices"] = [*prices, pricing.parse_price(last, "--tiers")]
        dates = []
        for text in args.settlement:
            parts = text.split("-")
            if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts):
                raise InvalidInputError("--settlement", f"{text!r} is not MM-DD-HH or DD-HH")
            numbers = [int(p) for p in parts]
            dates.append(numbers if len(numbers) == 3 else [None, *numbers])
        if dates:
            structure["settlement_dates"] = dates
    if args.tou and args.tiers:
        return TariffKind.TOU_STEPPED, structure
    if args.tou:
        return TariffKind.TOU, structure
    if args.tiers:
        return TariffKind.STEPPED, structure
    raise InvalidInputError("tariff", "give --flat, --tou (with --periods) or --tiers")


def _tax_rate(text: str) -> int:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise InvalidInputError("--tax-rate", f"{text!r} is not a percentage") from None
    basis_points = value * 100
    if basis_points != basis_points.to_integral_value():
        raise InvalidInputError("--tax-rate", "give at most two decimals (13.25)")
    return int(basis_points)


def _when(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInputError("--active-from", f"{text!r} is not an ISO 8601 time") from None
    if at.tzinfo is None:
        raise InvalidInputError("--active-from", "give a time zone (2027-01-01T00:00+08:00)")
    return at.astimezone(UTC)


def run_tariff_add(args: argparse.Namespace) -> int:
    kind, structure = tariff_structure(args)
    with sessions_of(args) as sessions, transaction(sessions) as session:
        version = services.add_tariff(
            session,
            args.name,
            kind,
            structure,
            category=args.category,
            active_from=_when(args.active_from),
            tax_rate=_tax_rate(args.tax_rate),
            fixed_monthly=args.fixed_monthly,
        )
        result = services.describe(version)
    return emit(args, result)


def run_tariff_list(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from cardcenter.tariffs.models import TariffVersion

    with sessions_of(args) as sessions, sessions() as session:
        versions = session.scalars(
            select(TariffVersion).order_by(TariffVersion.tariff_id, TariffVersion.version)
        ).all()
        result = [services.describe(v) for v in versions]
    return emit(
        args,
        result,
        lambda rows: (
            "\n".join(
                f"{r['name']} v{r['version']} {r['kind']} from {r['active_from']}" for r in rows
            )
            or "no tariffs yet"
        ),
    )
