"""The vending API (``/api``): every operation for keypad and card meters, on both databases.

The payment channel is played by the test: its "terminal" is an in-process
virtual card read and written only through the API's answers (plain reads,
then the commands the centre makes, relayed as they are); its keypad meter
is ``cardmeter``'s model, which must accept the tokens. Also: idempotent
request ids, authentication, roles and ownership, the one error shape, the
audit trail naming the client, and the OpenAPI document against the routes.
Every answer the tests get is checked against the OpenAPI document too
(:func:`conforms`), the successful card flows included, which schemathesis'
generated inputs cannot reach (they need a real card).
"""

from __future__ import annotations

import base64
import dataclasses
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, func, select
from werkzeug.test import TestResponse

from cardcenter.cards.issuing import issue_card
from cardcenter.core.db import transaction, utcnow
from cardcenter.customers.services import open_account, open_keypad_account
from cardcenter.operators.models import ApiClient, AuditEntry, Operator, Role
from cardcenter.operators.services import add_api_client
from cardcenter.sales import ledger
from cardcenter.sales.desk import Desk
from cardcenter.sales.models import Sale, SaleStatus
from cardcenter.tariffs.models import TariffKind
from cardcenter.tariffs.services import add_tariff, get_or_create_category
from cardcenter.tokens.models import TokenRecord
from cardcenter.web.api import openapi
from cardcenter.web.api.errors import CODES
from cardcenter.web.state import state
from cardlayout.apdu import commands
from cardlayout.apdu.apdu import CommandApdu
from cardlayout.card.snapshot import read_file_bytes, select_application
from cardlayout.files import ALL_FILES, PURSE, Utility
from cardlayout.sts.identity import BaseDate, EncryptionAlgorithm, KeyGeneration, MeterIdentity
from cardlayout.sts.vending import store_decoder_key
from cardlayout.transport.channel import CardChannel
from cardlayout.transport.inprocess import InProcessTransport
from cardlayout.vcard.cos import VirtualCard, new_image
from cardmeter.keypad import KeypadMeter

PAN = "600727000000000009"
SGC = "123456"
METER_NO = "000012345678"
SERIAL = "5A00000000000001"
PRICE = 5283


@dataclass(frozen=True)
class Client:
    """An API client's credentials, as a channel holds them."""

    id: int
    key_id: str
    secret: str

    @property
    def headers(self) -> dict[str, str]:
        token = base64.b64encode(f"{self.key_id}:{self.secret}".encode()).decode()
        return {"Authorization": f"Basic {token}"}


class Terminal:
    """A channel's card terminal: a plain reader, no keys."""

    def __init__(self, card: VirtualCard) -> None:
        self.channel = CardChannel(InProcessTransport(card))
        self.channel.connect()
        self.serial = card.image.serial.hex().upper()

    def read(self) -> dict[str, Any]:
        """SELECT the DF and read every EF, as the API wants the card."""
        select_application(self.channel, Utility.ELECTRICITY)
        files = {
            f.name.replace("-", "_"): read_file_bytes(self.channel, f).hex() for f in ALL_FILES
        }
        return {"serial": self.serial, "files": files}

    def challenge(self) -> str:
        return bytes(self.channel.send(commands.get_challenge(), "GET CHALLENGE")).hex()

    def relay(self, card_write: dict[str, Any], upto: int | None = None) -> str:
        """Send the script's commands in order (all, or the first ``upto``); the last answer.

        The answer before the last is kept in :attr:`before_last` (a reversal's
        MACed read of the write-back).
        """
        answers = [b""]
        for apdu in card_write["apdus"][:upto]:
            answer = self.channel.transmit(CommandApdu.from_bytes(bytes.fromhex(apdu)))
            assert answer.sw == 0x9000, f"{apdu[:10]} answered {answer.sw:04X}"
            answers.append(answer.data)
        self.before_last = answers[-2].hex() if len(answers) > 2 else ""
        return answers[-1].hex()


class ApiWorld:
    """A centre with a card customer (card issued), a keypad customer and three API clients."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.http = app.test_client()
        app_state = state(app)
        now = utcnow()
        with transaction(app_state.sessions) as session:
            category = get_or_create_category(session, "residential", "Residential")
            add_tariff(
                session,
                "flat",
                TariffKind.FLAT,
                {"rate_prices": [PRICE]},
                category="residential",
                active_from=now - timedelta(days=30),
                now=now,
            )
            customer = open_account(
                session, name="Li Wei", meter_no=METER_NO, category_id=category.id, now=now
            )
            self.customer_no = customer.customer_no
            open_keypad_account(
                session,
                name="Thandi",
                category_id=category.id,
                pan=PAN,
                sgc=SGC,
                ti=1,
                krn=1,
                kt=2,
                base_date=2014,
                now=now,
            )
            self.clients: dict[str, Client] = {}
            for name, role in (
                ("bank", Role.CASHIER),
                ("shop", Role.CASHIER),
                ("agent", Role.SUPERVISOR),
            ):
                made, secret = add_api_client(session, name, role)
                self.clients[name] = Client(made.id, made.key_id, secret)
        self.card = VirtualCard(new_image(bytes.fromhex(SERIAL)))
        desk = Desk(app_state.sessions, app_state.keys, operator="alice", site="HQ")
        issue_card(desk, Terminal(self.card).channel, self.customer_no, 10000)
        identity = MeterIdentity(
            PAN,
            SGC,
            1,
            1,
            2,
            BaseDate(2014),
            EncryptionAlgorithm("07"),
            KeyGeneration("04"),
        )
        self.meter = KeypadMeter.new(identity, store_decoder_key(app_state.keys.store, identity))

    def post(self, path: str, body: Any = None, who: str | None = "bank") -> TestResponse:
        headers = self.clients[who].headers if who else {}
        return conforms(self.http.post(path, json=body, headers=headers), "POST", path)

    def get(self, path: str, who: str | None = "bank") -> TestResponse:
        answer = self.http.get(path, headers=self.clients[who].headers if who else {})
        return conforms(answer, "GET", path)

    def terminal(self) -> Terminal:
        return Terminal(self.card)

    def card_sale(
        self, request_id: str, amount: str, who: str = "bank"
    ) -> tuple[Terminal, TestResponse]:
        terminal = self.terminal()
        reading = terminal.read()
        answer = self.post(
            "/api/card/sales",
            {
                "request_id": request_id,
                "amount": amount,
                "card": reading,
                "challenge": terminal.challenge(),
            },
            who,
        )
        return terminal, answer

    def confirm(
        self,
        sale_id: int,
        card_write: dict[str, Any],
        read_back: str,
        who: str = "bank",
        write_back: str | None = None,
    ) -> TestResponse:
        body = {"confirmation": card_write["confirmation"], "read_back": read_back}
        if write_back is not None:
            body["write_back"] = write_back
        return self.post(f"/api/card/sales/{sale_id}/confirm", body, who)

    def confirmed_sale(self, request_id: str, amount: str, who: str = "bank") -> dict[str, Any]:
        """A card sale written and confirmed; the sale as the API answered it."""
        terminal, sold = self.card_sale(request_id, amount, who=who)
        sale, card_write = sold.get_json()["sale"], sold.get_json()["card_write"]
        confirmed = self.confirm(sale["id"], card_write, terminal.relay(card_write), who)
        assert confirmed.status_code == 200, confirmed.text
        return dict(sale)

    def reverse(self, sale_id: int, who: str) -> tuple[Terminal, TestResponse]:
        """Ask to reverse ``sale_id`` with a fresh reading of the card; the terminal and answer."""
        terminal = self.terminal()
        body = {"card": terminal.read(), "challenge": terminal.challenge(), "reason": "paid twice"}
        return terminal, self.post(f"/api/card/sales/{sale_id}/reverse", body, who)

    def count(self, model: type[Any]) -> int:
        with state(self.app).sessions() as session:
            return int(session.scalar(select(func.count()).select_from(model)) or 0)

    def sale(self, sale_id: int) -> Sale:
        with state(self.app).sessions() as session:
            return session.get_one(Sale, sale_id)

    def till(self, who: str) -> int:
        with state(self.app).sessions() as session:
            return ledger.balance(session, ledger.till(f"api:{self.clients[who].key_id}"))


DOCUMENT = schemathesis.openapi.from_dict(openapi.document())


def conforms(answer: TestResponse, method: str, path: str) -> TestResponse:
    """The answer is what the OpenAPI document says this operation answers (when documented)."""
    found = DOCUMENT.find_operation_by_path(method, path)
    if found is not None:
        found.validate_response(answer)
    return answer


@pytest.fixture
def world(web_app: Flask) -> ApiWorld:
    return ApiWorld(web_app)


def error_of(answer: TestResponse, status: int, code: str) -> dict[str, Any]:
    """The answer is the API's error shape with this status and code; its ``error``."""
    assert answer.status_code == status, answer.text
    assert answer.mimetype == "application/json"
    body = answer.get_json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) <= {"code", "message", "field"} and error["code"] == code
    assert CODES[code] == status
    assert isinstance(error["message"], str) and error["message"].strip()
    return dict(error)


# ---------------------------------------------------------------- keypad meters


def test_keypad_trial_sale_replay_confirm_reprint_and_no_reversal(world: ApiWorld) -> None:
    trial = world.post("/api/keypad/trial", {"meter": PAN, "amount": "100"})
    assert trial.status_code == 200, trial.text
    quoted = trial.get_json()
    assert quoted["status"] == "trial" and quoted["tokens"] == 1 and "digits" not in trial.text
    assert quoted["energy"]["kwh"] == "189.2" and quoted["credit"] == "100.00"
    assert world.count(TokenRecord) == 0 and world.count(Sale) == 1  # the opening card only

    sold = world.post("/api/keypad/sales", {"request_id": "k-1", "meter": PAN, "amount": "100"})
    assert sold.status_code == 201, sold.text
    first = sold.get_json()
    assert first["request_id"] == "k-1" and not first["replayed"]
    assert first["sale"]["status"] == "delivered" and first["energy"] == quoted["energy"]
    outcomes = [world.meter.enter(token["digits"]) for token in first["tokens"]]
    assert all(outcome.accepted for outcome in outcomes), [o.reason for o in outcomes]
    sale_id = first["sale"]["id"]

    again = world.post("/api/keypad/sales", {"request_id": "k-1", "meter": PAN, "amount": "100"})
    assert again.status_code == 200 and again.get_json()["replayed"]
    assert again.get_json()["tokens"] == first["tokens"]
    other = world.post("/api/keypad/sales", {"request_id": "k-1", "meter": PAN, "amount": "200"})
    assert "use a new request id" in error_of(other, 409, "conflict")["message"]
    assert world.count(TokenRecord) == 1 and world.count(Sale) == 2

    for answer in (
        world.post(f"/api/keypad/sales/{sale_id}/confirm"),
        world.get(f"/api/keypad/sales/{sale_id}/reprint"),
    ):
        assert answer.status_code == 200, answer.text
        assert answer.get_json()["tokens"] == first["tokens"]
    assert world.sale(sale_id).status is SaleStatus.DELIVERED

    assert world.till("bank") == -10000  # the channel collected it: its till owes the centre
    refused = world.post(f"/api/keypad/sales/{sale_id}/reverse", who="bank")
    error_of(refused, 403, "forbidden")
    theirs = world.post(f"/api/keypad/sales/{sale_id}/reverse", who="agent")
    error_of(theirs, 404, "not_found")
    agents = world.post(
        "/api/keypad/sales", {"request_id": "a-1", "meter": PAN, "amount": "50"}, "agent"
    )
    assert agents.status_code == 201
    kept = world.post(f"/api/keypad/sales/{agents.get_json()['sale']['id']}/reverse", who="agent")
    assert "cannot be taken back" in error_of(kept, 409, "not_reversible")["message"]


def test_request_ids_are_each_clients_own(world: ApiWorld) -> None:
    body = {"request_id": "same", "meter": PAN, "amount": "10"}
    bank = world.post("/api/keypad/sales", body, "bank").get_json()
    shop = world.post("/api/keypad/sales", body, "shop").get_json()
    assert bank["sale"]["id"] != shop["sale"]["id"]
    assert bank["request_id"] == shop["request_id"] == "same"
    assert bank["tokens"] != shop["tokens"]
    error_of(world.get(f"/api/keypad/sales/{bank['sale']['id']}/reprint", "shop"), 404, "not_found")
    with state(world.app).sessions() as session:
        stored = set(session.scalars(select(Sale.request_id).where(Sale.kind == "token")))
    assert stored == {f"api:{world.clients[c].id}:same" for c in ("bank", "shop")}


# ---------------------------------------------------------------- card meters


def test_card_trial_sale_confirm_replay_and_reversal(world: ApiWorld) -> None:
    terminal = world.terminal()
    trial = world.post("/api/card/trial", {"card": terminal.read(), "amount": "50"})
    assert trial.status_code == 200, trial.text
    quoted = trial.get_json()
    assert quoted["status"] == "quote" and quoted["credit"] == "50.00"
    assert quoted["card_serial"] == SERIAL and "id" not in quoted
    assert world.count(Sale) == 1

    terminal, sold = world.card_sale("c-1", "50")
    assert sold.status_code == 201, sold.text
    sale, card_write = sold.get_json()["sale"], sold.get_json()["card_write"]
    assert sale["status"] == "pending" and sale["request_id"] == "c-1"
    assert card_write["action"] == "sale" and card_write["apdus"][0].startswith("0082")
    assert world.till("bank") == 0  # no money moves before the card holds the sale

    read_back = terminal.relay(card_write)
    confirmed = world.confirm(sale["id"], card_write, read_back)
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.get_json()["sale"]["status"] == "written"
    assert world.sale(sale["id"]).status is SaleStatus.WRITTEN
    assert world.till("bank") == -5000
    assert terminal.read()["files"]["purse"] != sold.get_json()  # the card itself changed
    again = world.confirm(sale["id"], card_write, read_back)
    assert again.status_code == 200 and again.get_json()["sale"]["replayed"]
    assert again.get_json()["card_write"] is None

    _, repeated = world.card_sale("c-1", "50")
    assert repeated.status_code == 200, repeated.text
    assert repeated.get_json()["card_write"] is None
    assert repeated.get_json()["sale"]["id"] == sale["id"]
    assert repeated.get_json()["sale"]["replayed"]
    _, other = world.card_sale("c-1", "60")
    error_of(other, 409, "conflict")
    assert world.count(Sale) == 2

    reprint = world.get(f"/api/card/sales/{sale['id']}/reprint")
    assert reprint.status_code == 200 and reprint.get_json()["sale"]["status"] == "written"

    # a reversal needs a supervisor client, and only of its own sale
    terminal = world.terminal()
    body = {"card": terminal.read(), "challenge": terminal.challenge(), "reason": "paid twice"}
    error_of(world.post(f"/api/card/sales/{sale['id']}/reverse", body, "bank"), 403, "forbidden")
    error_of(world.post(f"/api/card/sales/{sale['id']}/reverse", body, "agent"), 404, "not_found")

    sale = world.confirmed_sale("r-1", "30", who="agent")
    terminal, reversing = world.reverse(sale["id"], "agent")
    assert reversing.status_code == 200, reversing.text
    card_write = reversing.get_json()["card_write"]
    assert card_write["action"] == "reversal"
    assert world.sale(sale["id"]).status is SaleStatus.WRITTEN  # not before the card has it
    read_back = terminal.relay(card_write)
    assert card_write["apdus"][-2][:4] == "04B0"  # the write-back read with a MAC, then the purse
    # a reversal's confirmation needs the card's write-back, and only a reversal's has one
    missing = world.confirm(sale["id"], card_write, read_back, "agent")
    assert error_of(missing, 400, "invalid_input")["field"] == "write_back"
    forged = world.confirm(sale["id"], card_write, read_back, "agent", "00" * 72)
    assert error_of(forged, 409, "card_refused")["field"] == "read_back"
    assert world.sale(sale["id"]).status is SaleStatus.WRITTEN
    done = world.confirm(sale["id"], card_write, read_back, "agent", terminal.before_last)
    assert done.status_code == 200, done.text
    assert done.get_json()["sale"]["status"] == "reversed"
    assert world.sale(sale["id"]).status is SaleStatus.REVERSED
    assert world.till("agent") == 0
    terminal = world.terminal()
    body = {"card": terminal.read(), "challenge": terminal.challenge()}
    twice = world.post(f"/api/card/sales/{sale['id']}/reverse", body, "agent")
    assert twice.status_code == 200 and twice.get_json()["card_write"] is None


def test_a_card_write_cut_short_is_finished_by_repeating_the_request(world: ApiWorld) -> None:
    terminal, sold = world.card_sale("cut-1", "40")
    sale, card_write = sold.get_json()["sale"], sold.get_json()["card_write"]
    terminal.relay(card_write, upto=len(card_write["apdus"]) - 2)  # the purse's last byte lost
    assert terminal.read()["files"]["purse"].startswith("00")  # torn

    # a read-back the card did not give, or a confirmation the centre did not, is refused
    forged = world.confirm(sale["id"], card_write, "00" * 30)
    assert error_of(forged, 409, "card_refused")["field"] == "read_back"
    wrong = world.confirm(sale["id"], {"confirmation": "x.y.z"}, "00" * 30)
    assert error_of(wrong, 400, "value_refused")["field"] == "confirmation"
    assert world.sale(sale["id"]).status is SaleStatus.PENDING

    terminal, again = world.card_sale("cut-1", "40")
    assert again.status_code == 200, again.text
    assert again.get_json()["sale"]["id"] == sale["id"]
    card_write = again.get_json()["card_write"]
    assert card_write is not None
    confirmed = world.confirm(sale["id"], card_write, terminal.relay(card_write))
    assert confirmed.status_code == 200, confirmed.text
    assert world.sale(sale["id"]).status is SaleStatus.WRITTEN
    assert world.count(Sale) == 2 and world.till("bank") == -4000

    # written but never confirmed: the repeated request has the card prove it holds it
    terminal, third = world.card_sale("cut-2", "20")
    terminal.relay(third.get_json()["card_write"])
    terminal, repeated = world.card_sale("cut-2", "20")
    assert repeated.status_code == 200, repeated.text
    proof, sale_id = repeated.get_json()["card_write"], repeated.get_json()["sale"]["id"]
    assert proof["action"] == "sale"
    assert [apdu[:4] for apdu in proof["apdus"]] == ["0082", "04B0"]  # authenticate, read-back
    assert repeated.get_json()["sale"]["status"] == "pending"
    assert world.sale(sale_id).status is SaleStatus.PENDING  # the files alone prove nothing
    assert error_of(world.confirm(sale_id, proof, "00" * 30), 409, "card_refused")
    confirmed = world.confirm(sale_id, proof, terminal.relay(proof))
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.get_json()["sale"]["status"] == "written"
    assert world.count(Sale) == 3 and world.till("bank") == -6000


def test_a_repeated_card_sale_reads_the_books_without_rolling_back(world: ApiWorld) -> None:
    """Its reads (the card's pending write, the sale as it stands) end with a COMMIT: at a
    ROLLBACK psycopg drops every statement it prepared on the connection (PostgreSQL)."""
    terminal, first = world.card_sale("roll-1", "20")
    terminal.relay(first.get_json()["card_write"])
    rollbacks: list[object] = []
    engine = state(world.app).engine

    def rolled_back(connection: object) -> None:
        rollbacks.append(connection)

    event.listen(engine, "rollback", rolled_back)
    try:
        terminal, repeated = world.card_sale("roll-1", "20")
    finally:
        event.remove(engine, "rollback", rolled_back)
    assert repeated.status_code == 200, repeated.text
    assert repeated.get_json()["card_write"]["action"] == "sale"  # the card is asked to prove it
    assert rollbacks == []


def test_a_write_the_card_seems_to_hold_is_proved_by_the_card_not_by_the_files(
    world: ApiWorld,
) -> None:
    """A terminal's files showing an unconfirmed write settle nothing on their own."""
    terminal, first = world.card_sale("held-1", "25")
    pending = first.get_json()["sale"]["id"]
    terminal.relay(first.get_json()["card_write"])  # written, its confirmation never sent

    _, other = world.card_sale("held-2", "10")
    assert error_of(other, 409, "conflict")["message"].count(f"sale {pending}") == 1
    _, other_amount = world.card_sale("held-1", "99")
    error_of(other_amount, 409, "conflict")
    assert world.sale(pending).status is SaleStatus.PENDING
    assert world.count(Sale) == 2 and world.till("bank") == 0

    terminal, again = world.card_sale("held-1", "25")
    proof = again.get_json()["card_write"]
    assert world.confirm(pending, proof, terminal.relay(proof)).status_code == 200
    _, next_sale = world.card_sale("held-2", "10")
    assert next_sale.status_code == 201, next_sale.text
    assert world.till("bank") == -2500


def test_a_reversal_written_but_not_confirmed_is_proved_by_the_card(world: ApiWorld) -> None:
    sale = world.confirmed_sale("rv-1", "30", who="agent")
    terminal, reversing = world.reverse(sale["id"], "agent")
    terminal.relay(reversing.get_json()["card_write"])  # written; its confirmation never sent

    terminal, again = world.reverse(sale["id"], "agent")
    assert again.status_code == 200, again.text
    proof = again.get_json()["card_write"]
    # authenticate, the write-back and the purse read back with MACs
    assert proof["action"] == "reversal" and len(proof["apdus"]) == 3
    assert world.sale(sale["id"]).status is SaleStatus.WRITTEN  # the files alone prove nothing
    assert world.till("agent") == -3000
    read_back = terminal.relay(proof)
    done = world.confirm(sale["id"], proof, read_back, "agent", terminal.before_last)
    assert done.status_code == 200, done.text
    assert world.sale(sale["id"]).status is SaleStatus.REVERSED
    assert world.till("agent") == 0


def test_a_card_sale_checks_the_card(world: ApiWorld) -> None:
    terminal = world.terminal()
    reading = terminal.read()
    purse = PURSE.decode(bytes.fromhex(reading["files"]["purse"]))
    richer = dataclasses.replace(purse, amount=purse.amount + 100_00)  # the old MAC kept
    reading["files"]["purse"] = PURSE.encode(richer).hex()
    forged = world.post(
        "/api/card/sales",
        {"request_id": "f-1", "amount": "10", "card": reading, "challenge": terminal.challenge()},
    )
    assert "does not carry this centre's MAC" in error_of(forged, 409, "card_refused")["message"]
    unknown = terminal.read()
    unknown["serial"] = "5A000000000000FF"
    foreign = world.post("/api/card/trial", {"card": unknown, "amount": "10"})
    error_of(foreign, 409, "card_refused")
    assert world.count(Sale) == 1


# ---------------------------------------------------------------- auth, roles, errors


def test_authentication_failures_get_401_in_the_error_shape(world: ApiWorld) -> None:
    bank = world.clients["bank"]
    body = {"meter": PAN, "amount": "10"}

    def basic(text: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(text.encode()).decode()}

    for headers in (
        {},
        basic(f"{bank.key_id}:{bank.secret}x"),
        basic(f"ck_0000000000000000:{bank.secret}"),
        basic(f"{bank.key_id}"),
        {"Authorization": "Basic !!!"},
        {"Authorization": f"Bearer {bank.secret}"},
    ):
        answer = world.http.post("/api/keypad/trial", json=body, headers=headers)
        error_of(answer, 401, "unauthenticated")
        assert answer.headers["WWW-Authenticate"].startswith("Basic")
        assert bank.secret not in answer.text
    with transaction(state(world.app).sessions) as session:
        session.get_one(ApiClient, bank.id).active = False
    error_of(world.post("/api/keypad/trial", body), 401, "unauthenticated")
    assert world.post("/api/keypad/trial", body, "shop").status_code == 200


def test_every_operation_declares_its_role_and_refuses_lower_ones(world: ApiWorld) -> None:
    rules = [
        r
        for r in world.app.url_map.iter_rules()
        if r.endpoint.startswith("api.")
        and r.endpoint not in ("api.unknown", "api.openapi_document")
    ]
    assert len(rules) == 10
    for rule in rules:
        view: Any = world.app.view_functions[rule.endpoint]
        role = view.required_role
        path = rule.build({"sale_id": 1}, append_unknown=False)[1]  # type: ignore[index]
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):  # type: ignore[operator]
            anonymous = world.http.open(path, method=method, json={})
            error_of(anonymous, 401, "unauthenticated")
            if role is Role.SUPERVISOR:
                lower = world.http.open(
                    path, method=method, json={}, headers=world.clients["bank"].headers
                )
                assert "supervisor" in error_of(lower, 403, "forbidden")["message"]
    with state(world.app).sessions() as session:
        operators = session.scalars(select(Operator).where(Operator.username.like("api:%"))).all()
        assert {o.username for o in operators} <= {
            f"api:{c.key_id}" for c in world.clients.values()
        }
        assert all(o.password_hash is None for o in operators)


def test_fields_are_checked_and_named(world: ApiWorld) -> None:
    terminal = world.terminal()
    reading = terminal.read()
    cases: list[tuple[str, Any, str]] = [
        ("/api/keypad/sales", {"meter": PAN, "amount": "10"}, "request_id"),
        ("/api/keypad/sales", {"request_id": "a b", "meter": PAN, "amount": "10"}, "request_id"),
        ("/api/keypad/sales", {"request_id": "x" * 49, "meter": PAN, "amount": "1"}, "request_id"),
        ("/api/keypad/sales", {"request_id": "ok", "meter": "12", "amount": "10"}, "meter"),
        ("/api/keypad/trial", {"meter": PAN, "amount": "10.001"}, "amount"),
        ("/api/keypad/trial", {"meter": PAN, "amount": 10}, "amount"),
        ("/api/keypad/trial", {"meter": PAN, "amount": "0"}, "amount"),
        ("/api/keypad/trial", {"meter": PAN, "amount": "-5"}, "amount"),
        ("/api/keypad/trial", {"meter": PAN, "amount": "10", "extra": 1}, "extra"),
        ("/api/card/trial", {"card": "x", "amount": "10"}, "card"),
        ("/api/card/trial", {"card": {**reading, "serial": "5A"}, "amount": "1"}, "card.serial"),
        (
            "/api/card/trial",
            {"card": {**reading, "files": {**reading["files"], "purse": "00"}}, "amount": "1"},
            "card.files.purse",
        ),
        (
            "/api/card/trial",
            {"card": {**reading, "utility": "steam"}, "amount": "1"},
            "card.utility",
        ),
        (
            "/api/card/sales",
            {"request_id": "c", "amount": "1", "card": reading, "challenge": "0011"},
            "challenge",
        ),
        ("/api/card/sales/1/confirm", {"confirmation": "a.b", "read_back": "00"}, "read_back"),
    ]
    for path, body, field in cases:
        answer = world.post(path, body)
        assert error_of(answer, 400, "invalid_input").get("field") == field, (path, body)
    error_of(world.post("/api/keypad/trial", [1, 2]), 400, "invalid_input")
    as_form = world.http.post(
        "/api/keypad/trial", data={"meter": PAN}, headers=world.clients["bank"].headers
    )
    error_of(as_form, 415, "unsupported_media_type")
    error_of(
        world.post("/api/keypad/trial", {"meter": "600727000000000108", "amount": "1"}),
        404,
        "not_found",
    )


def test_unknown_paths_methods_and_failures_keep_the_shape(
    world: ApiWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    error_of(world.get("/api/nothing/here", who=None), 401, "unauthenticated")
    error_of(world.get("/api/nothing/here"), 404, "not_found")
    assert world.http.get("/api/openapi.json").status_code == 200  # the one open path
    error_of(world.get("/api/keypad/sales/99999999999999999999999/reprint"), 404, "not_found")
    error_of(world.get("/api/keypad/sales/9223372036854775807/reprint"), 404, "not_found")
    wrong = world.http.delete("/api/keypad/sales", headers=world.clients["bank"].headers)
    assert error_of(wrong, 405, "method_not_allowed") and wrong.headers["Allow"] == "POST"
    assert world.get("/api/keypad/sales/1/reprint").headers["Cache-Control"] == "no-store"

    from cardcenter.web.api import views

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("internal detail: /srv/secret/path")

    monkeypatch.setattr(views, "vend", broken)
    answer = world.post("/api/keypad/sales", {"request_id": "b-1", "meter": PAN, "amount": "5"})
    error_of(answer, 500, "internal_error")
    assert "secret" not in answer.text and "RuntimeError" not in answer.text


def test_changes_are_audited_under_the_client(world: ApiWorld) -> None:
    world.post("/api/keypad/sales", {"request_id": "a-1", "meter": PAN, "amount": "10"})
    terminal, sold = world.card_sale("a-2", "10")
    card_write = sold.get_json()["card_write"]
    world.confirm(sold.get_json()["sale"]["id"], card_write, terminal.relay(card_write))
    bank = world.clients["bank"]
    with state(world.app).sessions() as session:
        entries = session.scalars(
            select(AuditEntry).where(AuditEntry.api_client_id == bank.id)
        ).all()
    actions = [entry.action for entry in entries]
    assert actions == ["sale.token", "sale.begin", "sale.confirm"]
    assert all(entry.operator_id is None for entry in entries)
    assert all(bank.secret not in str(entry.detail) for entry in entries)


def test_the_openapi_document_names_every_operation(world: ApiWorld, client: FlaskClient) -> None:
    answer = client.get("/api/openapi.json")
    assert answer.status_code == 200
    document = answer.get_json()
    assert document == openapi.document() and document["openapi"].startswith("3.")
    documented = {
        (path, method.upper())
        for path, item in document["paths"].items()
        for method in item
        if method != "parameters"
    }
    served = {
        (rule.rule.replace("<int:sale_id>", "{sale_id}"), method)
        for rule in world.app.url_map.iter_rules()
        if rule.endpoint.startswith("api.") and rule.endpoint != "api.unknown"
        for method in rule.methods - {"HEAD", "OPTIONS"}  # type: ignore[operator]
    }
    assert documented == served
    assert set(
        document["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"][
            "enum"
        ]
    ) == set(CODES)


def test_the_apis_own_sentences_follow_accept_language(world: ApiWorld) -> None:
    headers = {**world.clients["bank"].headers, "Accept-Language": "zh-CN,zh;q=0.9"}
    answer = world.http.post("/api/keypad/trial", json={"meter": PAN}, headers=headers)
    assert error_of(answer, 400, "invalid_input")["message"] == "缺少 amount。"
    english = world.post("/api/keypad/trial", {"meter": PAN})
    assert error_of(english, 400, "invalid_input")["message"] == "amount is missing."


def test_a_field_refused_for_its_form_says_what_to_give_in_the_clients_language(
    world: ApiWorld,
) -> None:
    """The guidance is translated only when a field is refused (lazily), and then in full."""
    bad_id = {"request_id": "a b", "meter": PAN, "amount": "10"}
    english = world.post("/api/keypad/sales", bad_id)
    assert error_of(english, 400, "invalid_input")["message"] == (
        "request_id: give 1 to 48 characters: letters, digits and . _ : -"
    )
    headers = {**world.clients["bank"].headers, "Accept-Language": "zh-CN,zh;q=0.9"}
    chinese = world.http.post(
        "/api/keypad/trial", json={"meter": "12", "amount": "10"}, headers=headers
    )
    assert (
        error_of(chinese, 400, "invalid_input")["message"] == "meter：请给出键盘表的 PAN：18 位数字"
    )
    english = world.post("/api/keypad/trial", {"meter": PAN, "amount": "0"})
    assert error_of(english, 400, "invalid_input")["message"].startswith(
        'amount: give the amount paid as a decimal string above 0, e.g. "100"'
    )


def test_an_operators_log_in_cookie_counts_for_nothing_in_the_api(
    world: ApiWorld, login: Any
) -> None:
    """The API has no cookie session: a logged-in browser is still unauthenticated there
    and gets no cookie back; a sale it makes with a client's key is the client's alone in
    the audit trail; and it stays logged in on the pages."""
    browser = world.app.test_client()
    login(browser, "ana", Role.SUPERVISOR)
    answer = browser.post("/api/keypad/trial", json={"meter": PAN, "amount": "10"})
    error_of(answer, 401, "unauthenticated")
    assert "Set-Cookie" not in answer.headers
    bank = world.clients["bank"]
    sold = browser.post(
        "/api/keypad/sales",
        json={"request_id": "cookie-1", "meter": PAN, "amount": "10"},
        headers=bank.headers,
    )
    assert sold.status_code == 201 and "Set-Cookie" not in sold.headers
    with state(world.app).sessions() as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "sale.token")).one()
        assert (entry.operator_id, entry.api_client_id) == (None, bank.id)
    page = browser.get("/")
    assert page.status_code == 200
