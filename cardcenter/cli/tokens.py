"""``cardcenter token`` and ``cardcenter meter``: STS tokens for keypad meters.

``token vend`` sells credit as a 20-digit token, ``token engineering``
issues a management token (supervisors), ``token reprint`` gives back the
digits of a sale or request, ``token list`` a meter's tokens; ``meter
sts-set`` records a change of supply group, tariff index, key revision or key
type that the next token carries as key change tokens.
"""

from __future__ import annotations

import argparse
from typing import Any

from cardcenter.cli.context import add_common, config_of, desk_of, emit, money_arg, sessions_of
from cardcenter.core.db import transaction
from cardcenter.core.errors import InvalidInputError
from cardcenter.operators.services import ensure_operator
from cardcenter.tokens import services


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    token = sub.add_parser("token", help="STS tokens for keypad meters: vend, engineering, reprint")
    actions = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")

    vend = actions.add_parser(
        "vend",
        help="sell credit to a keypad meter as a 20-digit token",
        description="Price the amount paid by the tariff in force (fixed charges and tax as for "
        "cards), turn the credit into energy (rounded down to 0.1 kWh, and down to an amount a "
        "token carries) and issue the token; key change tokens the meter needs come first. "
        "Repeating a --request-id prints the first result, never a second token.",
    )
    vend.add_argument("--meter", required=True, metavar="PAN", help="the meter's 18-digit PAN")
    vend.add_argument("--amount", required=True, help="amount paid, e.g. 100 or 100.50")
    vend.add_argument("--request-id", help="retrying with the same id returns the first result")
    add_common(vend, keys=True)
    vend.set_defaults(handler=run_vend)

    engineering = actions.add_parser(
        "engineering",
        help="an engineering token (clear credit, clear tamper, power limit); supervisors",
    )
    engineering.add_argument("--meter", required=True, metavar="PAN")
    engineering.add_argument("--kind", required=True, choices=sorted(services.ENGINEERING))
    engineering.add_argument(
        "--value",
        help="clear-credit: the register (default 65535, all); set-power-limit: watts",
    )
    engineering.add_argument("--request-id")
    add_common(engineering, keys=True)
    engineering.set_defaults(handler=run_engineering)

    reprint = actions.add_parser("reprint", help="the tokens of a sale or request, as issued")
    which = reprint.add_mutually_exclusive_group(required=True)
    which.add_argument("--sale", type=int, metavar="ID")
    which.add_argument("--request-id")
    add_common(reprint)
    reprint.set_defaults(handler=run_reprint)

    listing = actions.add_parser("list", help="a keypad meter's STS identity and newest tokens")
    listing.add_argument("--meter", required=True, metavar="PAN")
    listing.add_argument("--limit", type=int, default=20)
    add_common(listing)
    listing.set_defaults(handler=run_list)

    meter = sub.add_parser("meter", help="keypad meters: record a change of STS identity")
    meter_actions = meter.add_subparsers(dest="meter_command", required=True, metavar="ACTION")
    sts_set = meter_actions.add_parser(
        "sts-set",
        help="record a new SGC, TI, KRN or KT (supervisors); the next token sends the key change",
    )
    sts_set.add_argument("--meter", required=True, metavar="PAN")
    sts_set.add_argument("--sgc", help="supply group code, 6 digits")
    sts_set.add_argument("--ti", help="tariff index, 0 to 99")
    sts_set.add_argument("--krn", help="key revision number, 1 to 9")
    sts_set.add_argument("--kt", help="key type, 0 to 3")
    add_common(sts_set)
    sts_set.set_defaults(handler=run_sts_set)


def _amount(text: str) -> int:
    try:
        return money_arg(text)
    except argparse.ArgumentTypeError as exc:
        raise InvalidInputError("amount", str(exc)) from None


def _value(text: str | None) -> int | None:
    if text is None:
        return None
    if not text.strip().isdigit():
        raise InvalidInputError("value", f"{text!r} is not a number from 0 to 65535")
    return int(text)


def run_vend(args: argparse.Namespace) -> int:
    amount = _amount(args.amount)
    with desk_of(args) as desk:
        result = services.vend(desk, args.meter, amount, args.request_id)
    return emit(args, result, receipt)


def run_engineering(args: argparse.Namespace) -> int:
    value = _value(args.value)
    with desk_of(args) as desk:
        result = services.engineering_token(desk, args.meter, args.kind, value, args.request_id)
    return emit(args, result, receipt)


def run_reprint(args: argparse.Namespace) -> int:
    with sessions_of(args) as sessions:
        result = services.reprint(sessions, sale_id=args.sale, request_id=args.request_id)
    return emit(args, result, receipt)


def run_list(args: argparse.Namespace) -> int:
    with sessions_of(args) as sessions, sessions() as session:
        result = services.meter_tokens(session, args.meter, max(1, args.limit))
    return emit(args, result)


def run_sts_set(args: argparse.Namespace) -> int:
    config = config_of(args)
    with sessions_of(args) as sessions, transaction(sessions) as session:
        operator = ensure_operator(session, config.operator, site=config.site)
        result = services.record_identity_change(
            session, operator, args.meter, sgc=args.sgc, ti=args.ti, krn=args.krn, kt=args.kt
        )
    return emit(args, result)


def receipt(result: dict[str, Any]) -> str:
    """A batch as printed for the customer: who, what was paid, then the tokens in entry order."""
    lines = [f"meter {result['meter']}  customer {result['customer_no']}"]
    sale, energy = result.get("sale"), result.get("energy")
    if sale is not None and energy is not None:
        lines.append(
            f"sale {sale['id']}: paid {sale['tendered']} (fixed {sale['fixed_charge']}, "
            f"tax {sale['tax']}), credit {sale['credit']} = {energy['kwh']} kWh "
            f"({energy['basis']})"
        )
        if energy["unvended"] != "0.00":
            lines.append(
                f"  paid below the token's resolution, kept for the next token: "
                f"{energy['unvended']}"
            )
    if result.get("tables"):
        lines.append(f"STA tables: {result['tables']}")
    if result.get("key_change"):
        lines.append("enter the tokens in this order:")
    for token in result["tokens"]:
        lines.append(f"  {token['position']}. {token['display']}   {token['what']}")
    if result.get("replayed"):
        lines.append(f"(request {result['request_id']} was issued before: the same tokens)")
    return "\n".join(lines)
