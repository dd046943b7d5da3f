"""A vend's trial, its one transaction and its answer (both databases).

The trial (:func:`services.trial_vend`) prices and plans exactly as the vend
does and writes nothing; the vend records what its caller keeps (the API's
audit entry) in its own transaction, and answers a new request exactly as a
replay of it later does, though the one is built from what was just written
and the other read back.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from centre_support import Database
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session
from test_tokens import PAN, PRICE, Keypad

from cardcenter.core.db import transaction
from cardcenter.core.errors import ConflictError, InvalidInputError, NotFoundError
from cardcenter.customers.models import Customer, Meter
from cardcenter.operators.services import ensure_operator
from cardcenter.sales.ledger import JournalEntry
from cardcenter.sales.models import Sale
from cardcenter.tariffs.models import TariffKind
from cardcenter.tariffs.services import add_tariff
from cardcenter.tokens import services
from cardcenter.tokens.models import TokenRecord
from cardlayout.security.diversify import CardKeys


@pytest.fixture
def keypad(db: Database, keys: CardKeys) -> Keypad:
    return Keypad(db, keys)


def books(keypad: Keypad) -> tuple[int, int, int, int | None]:
    """What a vend writes: sales, tokens, journal entries, and the meter's last TID."""
    with keypad.db.sessions() as session:
        last = session.scalar(select(Meter.sts_last_tid).where(Meter.sts_pan == PAN))
        counts = [
            int(session.scalar(select(func.count()).select_from(model)) or 0)
            for model in (Sale, TokenRecord, JournalEntry)
        ]
    return counts[0], counts[1], counts[2], last


def trial(keypad: Keypad, amount: int) -> dict[str, Any]:
    return services.trial_vend(keypad.db.sessions, keypad.keys.store, PAN, amount, keypad.now)


def test_a_trial_prices_and_plans_as_the_vend_does_and_writes_nothing(keypad: Keypad) -> None:
    before = books(keypad)
    quoted = trial(keypad, 10000)  # the 1993 base date has run out: a rollover first
    assert books(keypad) == before
    sold = keypad.vend(10000, "trial-1")
    assert quoted["key_change"] and quoted["tokens"] == len(sold["tokens"]) == 3
    assert quoted["sale"] == {**sold["sale"], "id": None}
    assert quoted["energy"] == sold["energy"]
    for field in ("meter", "meter_no", "customer_no", "tables"):
        assert quoted[field] == sold[field]

    # No key change due now; this month's first vend counts toward the next one's energy.
    again = trial(keypad, 5000)
    assert not again["key_change"] and again["tokens"] == 1
    assert again["energy"]["month_before_kwh"] == sold["energy"]["kwh"]
    assert again["energy"] == keypad.vend(5000, "trial-2")["energy"]


def test_a_trial_refuses_what_the_vend_refuses(db: Database, keys: CardKeys) -> None:
    keypad = Keypad(db, keys, base_date=1993, dkga="02")
    with pytest.raises(ConflictError, match="record a new key revision"):
        trial(keypad, 10000)
    with pytest.raises(NotFoundError, match="no keypad meter"):
        services.trial_vend(db.sessions, keys.store, "600727000000000108", 100, keypad.now)
    for amount in (0, -1, True):
        with pytest.raises(InvalidInputError, match="not an amount"):
            trial(keypad, amount)
    assert books(keypad) == (0, 0, 0, None)


def test_a_vend_and_a_trial_are_priced_by_the_version_in_force_at_their_moment(
    keypad: Keypad,
) -> None:
    """The meter's look-up picks the versions in force and next in the same statement:
    a scheduled version takes over at its start, and a tariff of the customer's own
    comes before the category's."""
    change = keypad.now + timedelta(days=2)
    with transaction(keypad.db.sessions) as session:
        add_tariff(session, "home", TariffKind.FLAT, {"rate_prices": [2 * PRICE]},
                   category="residential", active_from=change, now=keypad.now)  # fmt: skip
    before = keypad.vend(10000, "price-1")
    assert before["sale"]["tariff"] == "home v1"
    keypad.now = change
    assert trial(keypad, 10000)["sale"]["tariff"] == "home v2"
    after = keypad.vend(10000, "price-2")
    assert after["sale"]["tariff"] == "home v2"
    assert 2 * Decimal(after["energy"]["kwh"]) == Decimal(before["energy"]["kwh"])

    with transaction(keypad.db.sessions) as session:
        own = add_tariff(session, "own", TariffKind.FLAT, {"rate_prices": [PRICE // 2]},
                         active_from=keypad.now - timedelta(days=1), now=keypad.now)  # fmt: skip
        session.get_one(Customer, keypad.customer_id).tariff_id = own.tariff_id
    assert trial(keypad, 10000)["sale"]["tariff"] == "own v1"
    assert keypad.vend(10000, "price-3")["sale"]["tariff"] == "own v1"


def test_the_trial_and_the_reprint_end_their_reads_with_a_commit(keypad: Keypad) -> None:
    """Not the ROLLBACK a closed session sends: at each ROLLBACK psycopg forgets every
    statement it prepared on the connection, so a payment channel's trials between its
    sales would have kept the sales' statements from ever staying prepared (PostgreSQL)."""
    sold = keypad.vend(10000, "read-1")
    ended: list[str] = []
    for outcome in ("after_commit", "after_rollback"):
        event.listen(keypad.db.sessions, outcome, lambda _s, o=outcome: ended.append(o))
    trial(keypad, 5000)
    services.reprint(keypad.db.sessions, sale_id=sold["sale"]["id"])
    services.reprint(keypad.db.sessions, request_id="read-1")
    assert ended == ["after_commit"] * 3
    with pytest.raises(NotFoundError):
        services.reprint(keypad.db.sessions, request_id="never")
    assert ended[-1] == "after_rollback"  # a refusal still ends its transaction


def test_a_new_vend_answers_as_its_replay_does(keypad: Keypad) -> None:
    keypad.set_identity(krn=2)
    first = keypad.vend(10000, "same-1")
    assert first["key_change"] and len(first["tokens"]) == 3
    again = keypad.vend(10000, "same-1")
    assert again == {**first, "replayed": True}
    assert services.reprint(keypad.db.sessions, sale_id=first["sale"]["id"]) == again
    keypad.enter_all(first)
    keypad.check_conservation()


def test_what_the_caller_records_commits_with_the_vend_or_not_at_all(keypad: Keypad) -> None:
    kept: list[tuple[Session, int]] = []

    def record(session: Session, result: dict[str, Any]) -> None:
        kept.append((session, result["sale"]["id"]))

    def refuse(_session: Session, _result: dict[str, Any]) -> None:
        raise RuntimeError("the audit trail is unavailable")

    before = books(keypad)
    with pytest.raises(RuntimeError, match="unavailable"):
        services.vend(keypad.desk, PAN, 10000, "rec-1", record=refuse)
    assert books(keypad) == before  # nothing of the vend stayed
    done = services.vend(keypad.desk, PAN, 10000, "rec-1", record=record)
    assert [sale_id for _, sale_id in kept] == [done["sale"]["id"]]
    services.vend(keypad.desk, PAN, 10000, "rec-1", record=refuse)  # a replay records nothing
    assert len(kept) == 1


def test_a_vend_sells_as_the_operator_it_is_given(keypad: Keypad) -> None:
    with transaction(keypad.db.sessions) as session:
        seller = ensure_operator(session, "api:bank", site="api:bank").id
    desk = keypad.desk_for("api:bank")
    done = services.vend(desk, PAN, 10000, "op-1", operator_id=seller)
    assert done["operator"] == "api:bank"
    with keypad.db.sessions() as session:
        sale = session.get_one(Sale, done["sale"]["id"])
        assert sale.operator_id == seller
        rows = session.scalars(select(TokenRecord.operator_id)).all()
        assert set(rows) == {seller}
