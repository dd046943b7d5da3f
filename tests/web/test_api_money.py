"""The vending API's money under races, repeats and stale readings (both databases).

Two callers racing with one request id, a request id repeated with another
body, reversals racing each other or a reprint, a reversal asked with a
terminal's reading from before the card went into the meter; after each,
the books are checked: one sale per request id, the money moved once, the
journal balanced.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import requests
from centre_support import in_threads
from flask import Flask
from sqlalchemy import func, select
from test_web_api import PAN, ApiWorld, Terminal, error_of

from cardcenter.core.db import transaction, utcnow
from cardcenter.customers.services import open_keypad_account
from cardcenter.sales import ledger
from cardcenter.sales.ledger import JournalEntry
from cardcenter.sales.models import Sale, SaleKind, SaleStatus
from cardcenter.tariffs.services import get_or_create_category
from cardcenter.tokens.models import TokenRecord
from cardcenter.web.api import views
from cardcenter.web.state import state

OTHER_PAN = "600727000000000108"


class RaceWorld(ApiWorld):
    """:class:`ApiWorld` with a second keypad meter (another customer)."""

    def __init__(self, app: Flask) -> None:
        super().__init__(app)
        with transaction(state(app).sessions) as session:
            category = get_or_create_category(session, "residential", "Residential")
            open_keypad_account(
                session,
                name="Sipho",
                category_id=category.id,
                pan=OTHER_PAN,
                sgc="123456",
                ti=1,
                krn=1,
                kt=2,
                base_date=2014,
                now=utcnow() - timedelta(seconds=1),
            )

    def sales_of(self, who: str, request_id: str) -> list[Sale]:
        stored = f"api:{self.clients[who].id}:{request_id}"
        with state(self.app).sessions() as session:
            return list(session.scalars(select(Sale).where(Sale.request_id == stored)))

    def tokens_of(self, who: str, request_id: str) -> int:
        stored = f"api:{self.clients[who].id}:{request_id}"
        with state(self.app).sessions() as session:
            return int(
                session.scalar(select(func.count()).where(TokenRecord.request_id == stored)) or 0
            )

    def journal(self) -> list[JournalEntry]:
        with state(self.app).sessions() as session:
            return list(session.scalars(select(JournalEntry).order_by(JournalEntry.id)))

    def check_books(self) -> None:
        """Every till owes what its live sales took; every movement has two ends; sums zero."""
        entries = self.journal()
        assert all(e.source and e.destination and e.amount > 0 for e in entries)
        balances: dict[str, int] = {}
        for e in entries:
            balances[e.source] = balances.get(e.source, 0) - e.amount
            balances[e.destination] = balances.get(e.destination, 0) + e.amount
        assert sum(balances.values()) == 0
        with state(self.app).sessions() as session:
            for who, client in self.clients.items():
                site = f"api:{client.key_id}"
                taken = session.scalar(
                    select(func.coalesce(func.sum(Sale.tendered), 0)).where(
                        Sale.site == site,
                        Sale.status.in_((SaleStatus.WRITTEN, SaleStatus.DELIVERED)),
                    )
                )
                assert ledger.balance(session, ledger.till(site)) == -int(taken or 0), who
            # a token sale's money moved once out of the till: credit + tax + fixed == tendered
            for sale in session.scalars(select(Sale).where(Sale.kind == SaleKind.TOKEN)):
                moved = session.scalar(
                    select(func.coalesce(func.sum(JournalEntry.amount), 0)).where(
                        JournalEntry.sale_id == sale.id, JournalEntry.source.like("till:%")
                    )
                )
                assert moved == sale.tendered, sale.id


@pytest.fixture
def world(web_app: Flask) -> RaceWorld:
    return RaceWorld(web_app)


def post_from_thread(
    world: ApiWorld, path: str, body: Any, who: str = "bank"
) -> tuple[threading.Thread, list[Any]]:
    """POST in a thread of its own (its own test client); the thread and its answer, later."""
    out: list[Any] = []

    def run() -> None:
        try:
            answer = world.app.test_client().post(
                path, json=body, headers=world.clients[who].headers
            )
            out.append((answer.status_code, answer.get_json()))
        except BaseException as exc:  # pragma: no cover - the assertion shows it
            out.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


@pytest.fixture
def first_vend_waits(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], None]]:
    """The first keypad vend stops inside its transaction (at its audit entry, before its
    COMMIT) until the test lets it go; later vends pass. Yields ``go``."""
    inside, release = threading.Event(), threading.Event()
    real = views.audit
    calls: list[int] = []

    def held(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            inside.set()
            assert release.wait(8)
        return real(*args, **kwargs)

    monkeypatch.setattr(views, "audit", held)

    def go() -> None:
        assert inside.wait(8), "the first vend never reached its audit entry"

    go.release = release  # type: ignore[attr-defined]
    yield go
    release.set()


def race_two(
    world: ApiWorld, go: Any, first: dict[str, Any], second: dict[str, Any]
) -> tuple[Any, Any]:
    """``first`` is held inside its vend's transaction while ``second`` arrives; both answers."""
    t1, out1 = post_from_thread(world, "/api/keypad/sales", first)
    go()
    t2, out2 = post_from_thread(world, "/api/keypad/sales", second)
    time.sleep(0.4)  # the second is now waiting (meter lock, unique key, or the API's turn)
    go.release.set()
    t1.join(10)
    t2.join(10)
    assert len(out1) == 1 and len(out2) == 1
    assert not isinstance(out1[0], BaseException), out1
    assert not isinstance(out2[0], BaseException), out2
    return out1[0], out2[0]


# ---------------------------------------------------------------- 1. same id, same time


def test_same_request_id_sent_twice_at_once_sells_once_and_both_get_the_tokens(
    world: RaceWorld, first_vend_waits: Any
) -> None:
    body = {"request_id": "dup-1", "meter": PAN, "amount": "100"}
    (s1, b1), (s2, b2) = race_two(world, first_vend_waits, body, body)
    assert sorted([s1, s2]) == [200, 201], (b1, b2)
    assert b1["tokens"] == b2["tokens"]
    assert b1["sale"]["id"] == b2["sale"]["id"]
    assert {b1["replayed"], b2["replayed"]} == {True, False}
    assert len(world.sales_of("bank", "dup-1")) == 1
    assert world.tokens_of("bank", "dup-1") == 1
    assert world.till("bank") == -10000
    world.check_books()
    assert all(world.meter.enter(t["digits"]).accepted for t in b1["tokens"])


def test_a_burst_of_one_request_id_over_http_sells_once(world: RaceWorld, live_server: str) -> None:
    """Eight real HTTP calls at once (waitress threads), three rounds: one sale each, no 500."""
    headers = world.clients["bank"].headers
    for round_no in range(3):
        body = {"request_id": f"burst-{round_no}", "meter": PAN, "amount": "10"}

        def call(body: dict[str, Any] = body) -> tuple[int, Any]:
            got = requests.post(f"{live_server}/api/keypad/sales", json=body, headers=headers)
            return got.status_code, got.json()

        answers = in_threads(*[call] * 8, together=True)
        statuses = sorted(status for status, _ in answers)
        assert statuses == [200] * 7 + [201], answers
        assert len({str(b["tokens"]) for _, b in answers}) == 1
        assert len(world.sales_of("bank", body["request_id"])) == 1
    assert world.till("bank") == -3000
    world.check_books()


# ---------------------------------------------------------------- 2. same id, other body


def test_same_request_id_with_another_amount_or_meter_is_refused_and_sells_nothing(
    world: RaceWorld,
) -> None:
    first = world.post("/api/keypad/sales", {"request_id": "b-1", "meter": PAN, "amount": "20"})
    assert first.status_code == 201, first.text
    other_meter = world.post(
        "/api/keypad/sales", {"request_id": "b-1", "meter": OTHER_PAN, "amount": "20"}
    )
    assert "use a new request id" in error_of(other_meter, 409, "conflict")["message"]
    other_amount = world.post(
        "/api/keypad/sales", {"request_id": "b-1", "meter": PAN, "amount": "20.01"}
    )
    error_of(other_amount, 409, "conflict")
    same_amount_written_otherwise = world.post(
        "/api/keypad/sales", {"request_id": "b-1", "meter": PAN, "amount": "20.00"}
    )
    assert same_amount_written_otherwise.status_code == 200
    # the id of a keypad sale is not a card sale's, and the other way round
    terminal = world.terminal()
    card = world.post(
        "/api/card/sales",
        {
            "request_id": "b-1",
            "amount": "20",
            "card": terminal.read(),
            "challenge": terminal.challenge(),
        },
    )
    error_of(card, 409, "conflict")
    assert len(world.sales_of("bank", "b-1")) == 1 and world.tokens_of("bank", "b-1") == 1
    assert world.till("bank") == -2000
    world.check_books()


@pytest.mark.parametrize("other", ["meter", "amount"])
def test_same_request_id_with_another_body_at_the_same_time_sells_once(
    world: RaceWorld, first_vend_waits: Any, other: str
) -> None:
    first = {"request_id": "b-2", "meter": PAN, "amount": "30"}
    second = {**first, **({"meter": OTHER_PAN} if other == "meter" else {"amount": "31"})}
    (s1, b1), (s2, b2) = race_two(world, first_vend_waits, first, second)
    assert s1 == 201, b1
    assert s2 == 409 and b2["error"]["code"] == "conflict", b2
    assert "use a new request id" in b2["error"]["message"]
    assert len(world.sales_of("bank", "b-2")) == 1 and world.tokens_of("bank", "b-2") == 1
    assert world.till("bank") == -3000
    world.check_books()


def test_a_card_sale_racing_a_keypad_sale_on_one_request_id_is_a_conflict_not_a_500(
    world: RaceWorld, first_vend_waits: Any
) -> None:
    terminal = world.terminal()
    card_body = {
        "request_id": "mix-1",
        "amount": "15",
        "card": terminal.read(),
        "challenge": terminal.challenge(),
    }
    t1, out1 = post_from_thread(
        world, "/api/keypad/sales", {"request_id": "mix-1", "meter": PAN, "amount": "15"}
    )
    first_vend_waits()
    t2, out2 = post_from_thread(world, "/api/card/sales", card_body)
    time.sleep(0.4)
    first_vend_waits.release.set()
    t1.join(10)
    t2.join(10)
    (s1, b1), (s2, b2) = out1[0], out2[0]
    assert s1 == 201, b1
    assert s2 == 409 and b2["error"]["code"] == "conflict", b2
    assert len(world.sales_of("bank", "mix-1")) == 1
    world.check_books()


# ---------------------------------------------------------------- 3. reversals


def test_a_keypad_reverse_racing_reprints_refunds_nothing(world: RaceWorld) -> None:
    sold = world.post(
        "/api/keypad/sales", {"request_id": "kr-1", "meter": PAN, "amount": "40"}, "agent"
    )
    assert sold.status_code == 201
    sale_id = sold.get_json()["sale"]["id"]
    before = len(world.journal())

    def call(what: str, method: str) -> tuple[str, int]:
        path = f"/api/keypad/sales/{sale_id}/{what}"
        got = world.app.test_client().open(
            path, method=method, headers=world.clients["agent"].headers
        )
        return what, got.status_code

    answers = in_threads(
        *[
            functools.partial(call, what, method)
            for what, method in [("reverse", "POST"), ("reprint", "GET")] * 3
        ],
        together=True,
    )
    assert sorted(answers) == [("reprint", 200)] * 3 + [("reverse", 409)] * 3
    assert len(world.journal()) == before
    assert world.sale(sale_id).status is SaleStatus.DELIVERED
    world.check_books()


def _reverse_body(terminal: Terminal) -> dict[str, Any]:
    return {"card": terminal.read(), "challenge": terminal.challenge(), "reason": "twice"}


def test_two_card_reversals_at_once_refund_once(world: RaceWorld) -> None:
    sale = world.confirmed_sale("cr-1", "30", who="agent")
    assert world.till("agent") == -3000
    path = f"/api/card/sales/{sale['id']}/reverse"
    terminal = world.terminal()
    body = _reverse_body(terminal)  # one reading and challenge: the card answers either script

    def call() -> tuple[int, Any]:
        got = world.app.test_client().post(path, json=body, headers=world.clients["agent"].headers)
        return got.status_code, got.get_json()

    answers = in_threads(call, call, together=True)
    statuses = sorted(status for status, _ in answers)
    assert statuses == [200, 409], answers
    assert world.till("agent") == -3000  # nothing moves before the card proves it
    card_write = next(b["card_write"] for s, b in answers if s == 200)
    read_back = terminal.relay(card_write)
    write_back = terminal.before_last

    def confirm() -> int:
        got = world.app.test_client().post(
            f"/api/card/sales/{sale['id']}/confirm",
            json={
                "confirmation": card_write["confirmation"],
                "read_back": read_back,
                "write_back": write_back,
            },
            headers=world.clients["agent"].headers,
        )
        return got.status_code

    confirms = in_threads(confirm, confirm, together=True)
    assert 200 in confirms and set(confirms) <= {200, 409}, confirms
    assert world.sale(sale["id"]).status is SaleStatus.REVERSED
    assert world.till("agent") == 0
    refunds = [e for e in world.journal() if e.sale_id == sale["id"] and "reversal" in e.memo]
    assert sum(e.amount for e in refunds) == 3000
    world.check_books()


# ---------------------------------------------------------------- 4. other ways


def test_a_reversal_from_a_stale_reading_cannot_refund_credit_the_meter_loaded(
    world: RaceWorld,
) -> None:
    """The terminal's files are only what it says. A reading taken before the card went
    into the meter (a terminal that kept it, or retried with it) still shows the sale on
    the purse and no write-back of it: the reversal is written, but the card's MACed
    read-back of its write-back shows the meter read it since, so nothing is refunded,
    and the meter, which loaded the sale, keeps what was paid for."""
    from centre_world import Meter as MeterModel

    meter = MeterModel(state(world.app).keys)
    meter.insert(world.card)  # the opening card's credit
    sale = world.confirmed_sale("st-1", "30", who="agent")
    stale = world.terminal().read()  # purse carries the sale; the meter has not seen it
    assert meter.insert(world.card).loaded == 3000  # the meter took the sale's credit

    terminal = world.terminal()
    assert terminal.read()["files"] != stale["files"]  # selects the application, too
    body = {"card": stale, "challenge": terminal.challenge(), "reason": "stale"}
    reversing = world.post(f"/api/card/sales/{sale['id']}/reverse", body, "agent")
    assert reversing.status_code == 200, reversing.text  # the files cannot tell
    card_write = reversing.get_json()["card_write"]
    read_back = terminal.relay(card_write)
    refused = world.confirm(sale["id"], card_write, read_back, "agent", terminal.before_last)
    assert "nothing is refunded" in error_of(refused, 409, "conflict")["message"]
    assert world.sale(sale["id"]).status is SaleStatus.WRITTEN
    assert world.till("agent") == -3000
    # the card's purse write is settled (the card holds it), and nothing is pending
    again = world.confirm(sale["id"], card_write, read_back, "agent", terminal.before_last)
    error_of(again, 409, "conflict")
    assert meter.insert(world.card).loaded == 0  # the smaller purse has a count it loaded
    world.check_books()


def test_an_unconfirmed_reversal_from_a_stale_reading_refunds_nothing_at_a_desk(
    world: RaceWorld,
) -> None:
    """The same reversal written and never confirmed: the desk's own reading settles it,
    and sees the meter's write-back on the card, so the money stays where it was."""
    from centre_world import Meter as MeterModel
    from centre_world import connect

    from cardcenter.sales.desk import Desk

    meter = MeterModel(state(world.app).keys)
    meter.insert(world.card)
    sale = world.confirmed_sale("st-2", "30", who="agent")
    stale = world.terminal().read()
    assert meter.insert(world.card).loaded == 3000
    terminal = world.terminal()
    assert terminal.read()["files"] != stale["files"]  # selects the application, too
    body = {"card": stale, "challenge": terminal.challenge(), "reason": "stale"}
    reversing = world.post(f"/api/card/sales/{sale['id']}/reverse", body, "agent")
    terminal.relay(reversing.get_json()["card_write"])  # written; never confirmed
    desk = Desk(state(world.app).sessions, state(world.app).keys, operator="admin", site="HQ")
    settled = desk.recover(connect(world.card))
    assert settled["settled"] == "confirmed"
    assert world.sale(sale["id"]).status is SaleStatus.WRITTEN
    assert world.till("agent") == -3000
    desk.read(connect(world.card))  # the meter's write-back: the sale reached it
    assert world.sale(sale["id"]).status is SaleStatus.DELIVERED
    world.check_books()


def test_a_reversal_from_a_fresh_reading_of_a_loaded_sale_is_refused(world: RaceWorld) -> None:
    """The control: the same reversal with the card as it is now is refused (desk rules)."""
    from centre_world import Meter as MeterModel

    meter = MeterModel(state(world.app).keys)
    meter.insert(world.card)
    sale = world.confirmed_sale("st-2", "30", who="agent")
    assert meter.insert(world.card).loaded > 0
    _, reversing = world.reverse(sale["id"], "agent")
    assert "reached the meter" in error_of(reversing, 409, "conflict")["message"]
    assert world.sale(sale["id"]).status is SaleStatus.WRITTEN
    assert world.till("agent") == -3000


def test_one_card_sale_request_sent_twice_at_once_answers_one_new_sale(
    world: RaceWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second request looks its id up before the first commits, and begins after it:
    it resumes the first's sale, so it answers as a repeat (200, replayed) and audits no
    second sale.begin."""
    first_began = threading.Event()
    real_read, real_audit = views.read_card, views.audit
    reads: list[int] = []

    second_looked, guard = threading.Event(), threading.Lock()

    def read_card(*args: Any, **kwargs: Any) -> Any:
        with guard:
            reads.append(1)
            n = len(reads)
        if n == 1:  # the first request waits until the second has looked its id up
            second_looked.wait(1.0)  # (SQLite: the API's one-at-a-time lock; it never comes)
        if n == 2:  # the second request, past its look-up of the request id
            second_looked.set()
            assert first_began.wait(8)
        return real_read(*args, **kwargs)

    def audit(action: str, *args: Any, **kwargs: Any) -> Any:
        if action == "sale.begin":
            first_began.set()
        return real_audit(action, *args, **kwargs)

    monkeypatch.setattr(views, "read_card", read_card)
    monkeypatch.setattr(views, "audit", audit)
    terminal = world.terminal()
    body = {
        "request_id": "cs-1",
        "amount": "25",
        "card": terminal.read(),
        "challenge": terminal.challenge(),
    }
    t1, out1 = post_from_thread(world, "/api/card/sales", body)
    while not reads:
        time.sleep(0.01)
    t2, out2 = post_from_thread(world, "/api/card/sales", body)
    t1.join(10)
    t2.join(10)
    (s1, b1), (s2, b2) = out1[0], out2[0]
    assert len(world.sales_of("bank", "cs-1")) == 1  # one sale: no money at risk
    sale_id = b1["sale"]["id"]
    with state(world.app).sessions() as session:
        from cardcenter.operators.models import AuditEntry

        begun = session.scalar(
            select(func.count()).where(
                AuditEntry.action == "sale.begin", AuditEntry.subject == f"sale:{sale_id}"
            )
        )
    card_write = b2["card_write"]
    confirmed = world.confirm(sale_id, card_write, terminal.relay(card_write))
    assert confirmed.status_code == 200, confirmed.text
    assert world.till("bank") == -2500
    world.check_books()
    assert (s1, s2) == (201, 200), (b1, b2)
    assert b2["sale"]["replayed"] is True and b2["sale"]["id"] == sale_id
    assert begun == 1, f"{begun} sale.begin audit entries for one sale"


def test_a_reversal_the_meter_loaded_before_its_confirmation_is_left_to_a_finding(
    world: RaceWorld,
) -> None:
    """The rule's price: a reversal written, not confirmed, and the card then loaded by the
    meter (the smaller purse) is not refunded either, since a write-back on the card cannot
    tell which purse the meter loaded. The books then count the sale delivered while the
    meter got less, which the reconciliation reports for an operator to settle."""
    from centre_world import Meter as MeterModel
    from centre_world import connect

    from cardcenter.reconciliation.models import FindingKind
    from cardcenter.reconciliation.services import list_findings
    from cardcenter.sales.desk import Desk

    meter = MeterModel(state(world.app).keys)
    meter.insert(world.card)
    sale = world.confirmed_sale("st-3", "30", who="agent")
    terminal, reversing = world.reverse(sale["id"], "agent")
    assert reversing.status_code == 200, reversing.text
    terminal.relay(reversing.get_json()["card_write"])  # written; never confirmed
    assert meter.insert(world.card).loaded == 0  # the purse without the sale: nothing to load
    desk = Desk(state(world.app).sessions, state(world.app).keys, operator="admin", site="HQ")
    desk.recover(connect(world.card))
    desk.read(connect(world.card))
    assert world.sale(sale["id"]).status is SaleStatus.DELIVERED
    assert world.till("agent") == -3000
    with state(world.app).sessions() as session:
        kinds = {f.kind for f in list_findings(session)}
    assert FindingKind.MISMATCH in kinds
