"""``cardcenter card`` and ``cardcenter sale``: everything done with a card in the reader."""

from __future__ import annotations

import argparse

from sqlalchemy import select

from cardcenter.cards.issuing import issue_card, replace_card
from cardcenter.cli.context import add_common, channel_of, desk_of, emit, money_arg, sessions_of
from cardcenter.core.errors import NotFoundError
from cardcenter.sales.models import Sale
from cardcenter.sales.services import sale_result


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    card = sub.add_parser("card", help="cards: issue, purchase, quote, read, replace")
    actions = card.add_subparsers(dest="card_command", required=True, metavar="ACTION")

    issue = actions.add_parser(
        "issue",
        help="personalise the blank card in the reader as a customer's opening card",
    )
    issue.add_argument("--customer", required=True, help="id, customer number or meter number")
    issue.add_argument("--amount", type=money_arg, help="a first purchase (amount paid)")
    issue.add_argument("--request-id", help="retrying with the same id finishes, never repeats")
    add_common(issue, keys=True, reader=True)
    issue.set_defaults(handler=run_issue)

    purchase = actions.add_parser(
        "purchase",
        help="sell credit to the card in the reader",
        description="Read the card, reconcile its write-back, price the amount paid by the "
        "tariff in force, and write the purchase. Repeating a --request-id returns the first "
        "result (or finishes a sale a pulled card interrupted).",
    )
    purchase.add_argument("--amount", type=money_arg, required=True, help="amount paid")
    purchase.add_argument("--request-id")
    add_common(purchase, keys=True, reader=True)
    purchase.set_defaults(handler=run_purchase)

    quote = actions.add_parser("quote", help="what a purchase would give (changes nothing)")
    quote.add_argument("--amount", type=money_arg, required=True, help="amount paid")
    add_common(quote, keys=True, reader=True)
    quote.set_defaults(handler=run_quote)

    read = actions.add_parser("read", help="read the card: account, purse, write-back (reconciled)")
    add_common(read, keys=True, reader=True)
    read.set_defaults(handler=run_read)

    replace = actions.add_parser(
        "replace",
        help="issue the blank card in the reader in place of a lost or broken card",
    )
    replace.add_argument("--customer", required=True, help="id, customer number or meter number")
    replace.add_argument("--reason", choices=("lost", "broken"), default="lost")
    add_common(replace, keys=True, reader=True)
    replace.set_defaults(handler=run_replace)

    sale = sub.add_parser("sale", help="sales: show, reverse, recover an interrupted write")
    sale_actions = sale.add_subparsers(dest="sale_command", required=True, metavar="ACTION")
    reverse = sale_actions.add_parser(
        "reverse",
        help="reverse a sale whose credit has provably not reached the meter",
        description="Reverse sale ID: its card must be in the reader, still carrying the sale "
        "and not having been in the meter since (or refused there). The card is rewritten "
        "and the amount paid goes back to the till.",
    )
    reverse.add_argument("sale", type=int, metavar="ID")
    reverse.add_argument("--reason", default="", help="why (kept with the sale)")
    add_common(reverse, keys=True, reader=True)
    reverse.set_defaults(handler=run_reverse)

    recover = sale_actions.add_parser(
        "recover", help="settle a write a pulled card or a crash left unfinished"
    )
    add_common(recover, keys=True, reader=True)
    recover.set_defaults(handler=run_recover)

    show = sale_actions.add_parser("show", help="one sale")
    show.add_argument("sale", type=int, metavar="ID")
    add_common(show)
    show.set_defaults(handler=run_show)


def run_issue(args: argparse.Namespace) -> int:
    with desk_of(args) as desk:
        result = issue_card(desk, channel_of(args), args.customer, args.amount, args.request_id)
    return emit(args, result)


def run_purchase(args: argparse.Namespace) -> int:
    with desk_of(args) as desk:
        result = desk.sell(channel_of(args), args.amount, args.request_id)
    return emit(args, result)


def run_quote(args: argparse.Namespace) -> int:
    with desk_of(args) as desk:
        result = desk.quote(channel_of(args), args.amount)
    return emit(args, result)


def run_read(args: argparse.Namespace) -> int:
    with desk_of(args) as desk:
        result = desk.read(channel_of(args))
    return emit(args, result)


def run_replace(args: argparse.Namespace) -> int:
    with desk_of(args) as desk:
        result = replace_card(desk, channel_of(args), args.customer, args.reason)
    return emit(args, result)


def run_reverse(args: argparse.Namespace) -> int:
    with desk_of(args) as desk:
        result = desk.reverse(channel_of(args), args.sale, args.reason)
    return emit(args, result)


def run_recover(args: argparse.Namespace) -> int:
    with desk_of(args) as desk:
        result = desk.recover(channel_of(args))
    return emit(args, result)


def run_show(args: argparse.Namespace) -> int:
    with sessions_of(args) as sessions, sessions() as session:
        sale = session.scalar(select(Sale).where(Sale.id == args.sale))
        if sale is None:
            raise NotFoundError(f"there is no sale {args.sale}")
        result = sale_result(sale)
    return emit(args, result)
