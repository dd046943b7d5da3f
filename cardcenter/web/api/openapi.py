"""The OpenAPI 3 document of the vending API, served at ``/api/openapi.json``.

Written by hand, next to the views it describes, and checked against the
live API by schemathesis (``tests/web/test_web_api_schema.py``): every
operation, request field, response and error code here is what the views
do. The field rules come from :mod:`cardcenter.web.api.fields` and the error
codes from :mod:`cardcenter.web.api.errors`, so a rule changes in one place.
"""

from __future__ import annotations

from typing import Any

from cardcenter.web.api.errors import CODES
from cardcenter.web.api.fields import (
    CHALLENGE_SIZE,
    FREE_TEXT,
    MAX_MONEY_TEXT,
    MAX_REASON,
    MONEY,
    PAN,
    READ_BACK_SIZE,
    REQUEST_ID,
    WRITE_BACK_READ_SIZE,
    hex_pattern,
)
from cardcenter.web.api.terminal import FILE_NAMES
from cardlayout.files import Utility
from cardlayout.security.mac import SERIAL_SIZE

VERSION = "1.0.0"
MONEY_OUT = r"^-?[0-9]+\.[0-9]{2}$"
MAX_ID = 2**63 - 1


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(
    properties: dict[str, Any], *, optional: tuple[str, ...] = (), description: str = ""
) -> dict[str, Any]:
    """A closed object: every property required unless named in ``optional``."""
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "required": [name for name in properties if name not in optional],
        "additionalProperties": False,
    }
    if description:
        schema["description"] = description
    return schema


def _hex(size: int, description: str) -> dict[str, Any]:
    return {"type": "string", "pattern": hex_pattern(size), "description": description}


def _text(description: str = "", **more: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", **more}
    if description:
        schema["description"] = description
    return schema


MONEY_TEXT = _text("money in currency units, two decimals", pattern=MONEY_OUT)
INTEGER = {"type": "integer"}
BOOLEAN = {"type": "boolean"}
TIME = _text(format="date-time")


def _schemas() -> dict[str, Any]:
    files = {
        name: _hex(card_file.size, f"EF{card_file.fid:02X} ({card_file.name}), all its bytes")
        for name, card_file in FILE_NAMES.items()
    }
    energy = _object(
        {
            "kwh": _text("energy the token carries"),
            "bought_kwh": _text("energy the credit bought"),
            "month_before_kwh": _text("energy vended to this meter earlier this month"),
            "unvended": MONEY_TEXT,
            "basis": {**_text("how the energy was priced"), "nullable": True},
        }
    )
    token_sale_money = {
        "tariff": {**_text(), "nullable": True},
        "tendered": MONEY_TEXT,
        "fixed_charge": MONEY_TEXT,
        "months": {"type": "array", "items": _text("a month of fixed charge, YYYY-MM")},
        "tax": MONEY_TEXT,
        "credit": MONEY_TEXT,
    }
    card_sale = {
        "id": INTEGER,
        "request_id": _text("the client's request id"),
        "kind": _text(enum=["sale", "opening", "carry_over"]),
        "status": _text(enum=["pending", "written", "delivered", "void", "reversed", "refunded"]),
        "purchase_count": INTEGER,
        "tendered": MONEY_TEXT,
        "fixed_charge": MONEY_TEXT,
        "tax": MONEY_TEXT,
        "credit": MONEY_TEXT,
        "card_amount": {
            **MONEY_TEXT,
            "description": "the purse amount written with this sale (its credit plus an "
            "undelivered purchase it was added to)",
        },
        "added_to_pending": BOOLEAN,
        "created_at": TIME,
        "breakdown": {"type": "object", "description": "the tariff's pricing of this sale"},
        "customer_no": _text(),
        "meter_no": _text(),
        "card_serial": _text(),
        "reconciliation": {
            "type": "object",
            "nullable": True,
            "description": "what the card's write-back reconciled at this sale, when read",
        },
        "replayed": {
            **BOOLEAN,
            "description": "true when the request was seen before (the first result again)",
        },
    }
    trial_fields = {
        key: value
        for key, value in card_sale.items()
        if key not in ("id", "request_id", "created_at", "replayed")
    }
    trial_fields["status"] = _text(enum=["quote"])
    return {
        "Error": _object(
            {
                "error": _object(
                    {
                        "code": _text("stable, for programs", enum=sorted(CODES)),
                        "message": _text("one sentence for people"),
                        "field": _text("the request field at fault"),
                    },
                    optional=("field",),
                )
            },
            description="Every error answer has this shape.",
        ),
        "Money": _text(
            'money paid, in currency units: "100" or "100.50" (at most 9999999.99, above 0)',
            pattern=MONEY,
            maxLength=MAX_MONEY_TEXT,
            example="100.00",
        ),
        "RequestId": _text(
            "the client's own id of this sale; repeating it returns the first result",
            pattern=REQUEST_ID,
            example="bank-20261130-000123",
        ),
        "Pan": _text(
            "the keypad meter's PAN, 18 digits", pattern=PAN, example="600727000000000009"
        ),
        "Challenge": _hex(
            CHALLENGE_SIZE,
            "the card's answer to GET CHALLENGE (00 84 00 00 08), the terminal's last command "
            "before this request",
        ),
        "CardReading": _object(
            {
                "serial": _hex(SERIAL_SIZE, "the card serial (the last 8 bytes of its ATR)"),
                "utility": _text(
                    "the application read (its DF); default electricity",
                    enum=[u.value for u in Utility],
                ),
                "files": _object(files, description="each EF read whole with READ BINARY"),
            },
            optional=("utility",),
            description="The card as the terminal read it, every file as hex.",
        ),
        "KeypadTrialRequest": _object({"meter": _ref("Pan"), "amount": _ref("Money")}),
        "KeypadSaleRequest": _object(
            {"request_id": _ref("RequestId"), "meter": _ref("Pan"), "amount": _ref("Money")}
        ),
        "CardTrialRequest": _object({"card": _ref("CardReading"), "amount": _ref("Money")}),
        "CardSaleRequest": _object(
            {
                "request_id": _ref("RequestId"),
                "amount": _ref("Money"),
                "card": _ref("CardReading"),
                "challenge": _ref("Challenge"),
            }
        ),
        "CardConfirmRequest": _object(
            {
                "confirmation": _text(
                    "the confirmation given with the card write", pattern=r"^[A-Za-z0-9._-]{1,512}$"
                ),
                "read_back": _hex(
                    READ_BACK_SIZE,
                    "the card's response data to the script's last command (purse and MAC)",
                ),
                "write_back": _hex(
                    WRITE_BACK_READ_SIZE,
                    "a reversal's only (and required there): the card's response data to the "
                    "script's command before the last (its write-back and MAC)",
                ),
            },
            optional=("write_back",),
        ),
        "CardReverseRequest": _object(
            {
                "card": _ref("CardReading"),
                "challenge": _ref("Challenge"),
                "reason": _text(
                    "why (kept with the sale); no control characters",
                    maxLength=MAX_REASON,
                    pattern=FREE_TEXT,
                ),
            },
            optional=("reason",),
        ),
        "Energy": energy,
        "Token": _object(
            {
                "position": {**INTEGER, "description": "the order to enter the tokens in"},
                "kind": _text(enum=["credit", "key_change", "engineering"]),
                "what": _text("the token in words"),
                "class": _text(),
                "subclass": INTEGER,
                "tid": {**INTEGER, "nullable": True},
                "base_date": INTEGER,
                "digits": _text("the 20 digits", pattern="^[0-9]{20}$"),
                "display": _text("the digits in five groups of four"),
            }
        ),
        "KeypadTrial": _object(
            {
                "status": _text(enum=["trial"]),
                "meter": _text("the PAN"),
                "meter_no": _text(),
                "customer_no": _text(),
                **token_sale_money,
                "energy": _ref("Energy"),
                "key_change": {
                    **BOOLEAN,
                    "description": "key change tokens would come before the credit",
                },
                "tokens": {**INTEGER, "description": "how many tokens the sale would give"},
            },
            description="What the payment would buy; nothing is issued or kept.",
        ),
        "TokenSale": _object(
            {
                "request_id": _text("the client's request id"),
                "replayed": BOOLEAN,
                "meter": _text("the PAN"),
                "meter_no": _text(),
                "customer_no": _text(),
                "issued_at": TIME,
                "operator": _text("the operator the client sells as, api:<key id>"),
                "tables": {**_text("the STA tables of an EA07 meter"), "nullable": True},
                "key_change": BOOLEAN,
                "tokens": {"type": "array", "items": _ref("Token")},
                "sale": _object(
                    {
                        "id": INTEGER,
                        "status": _text(enum=["delivered"]),
                        **token_sale_money,
                    }
                ),
                "energy": _ref("Energy"),
            },
            description="The tokens of a keypad sale, to enter in this order.",
        ),
        "CardSale": _object(card_sale, optional=("reconciliation",)),
        "CardTrial": _object(trial_fields, optional=("reconciliation",)),
        "CardWrite": _object(
            {
                "action": _text(enum=["sale", "reversal"]),
                "apdus": {
                    "type": "array",
                    "items": _text(pattern="^([0-9A-F]{2})+$"),
                    "description": "command APDUs to send in order, each must answer 9000; "
                    "the last one's response data goes back as read_back",
                },
                "confirmation": _text("to send back with the read-back"),
            },
            description="The card write for the terminal to relay: no key leaves the centre.",
        ),
        "CardSaleResult": _object(
            {
                "sale": _ref("CardSale"),
                "card_write": {"allOf": [_ref("CardWrite")], "nullable": True},
            }
        ),
    }


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": _ref("Error")}},
    }
    if headers:
        response["headers"] = headers
    return response


RESPONSES = {
    "Invalid": _error(
        "a field is missing or breaks this document's rules (code invalid_input), or is "
        "well-formed but refused by the centre (code value_refused: more than one token "
        "carries, a confirmation it did not give); the field is named"
    ),
    "Unauthenticated": _error(
        "no credentials, wrong ones, or a disabled client (code unauthenticated)",
        {"WWW-Authenticate": {"schema": {"type": "string"}}},
    ),
    "Forbidden": _error("the client's role does not allow this (code forbidden)"),
    "NotFound": _error("no such sale of this client, or no such meter (code not_found)"),
    "Conflict": _error(
        "the books or the card refuse it now: conflict, card_refused, not_reversible or "
        "confirmation_expired, with the sentence saying why"
    ),
    "Unsupported": _error("the body is not application/json (code unsupported_media_type)"),
    "Other": _error("any other error, in the same shape (405, 413, 500)"),
}


def _json(schema: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


def _operation(
    summary: str,
    description: str,
    ok: dict[str, Any],
    *,
    tag: str,
    body: str | None = None,
    role: str = "cashier",
    errors: tuple[str, ...] = ("Invalid", "NotFound", "Conflict"),
) -> dict[str, Any]:
    responses: dict[str, Any] = dict(ok)
    wanted = ("Unauthenticated", "Forbidden", *errors)
    if body is not None:
        wanted = (*wanted, "Unsupported")
    codes = {
        "Invalid": "400",
        "Unauthenticated": "401",
        "Forbidden": "403",
        "NotFound": "404",
        "Conflict": "409",
        "Unsupported": "415",
    }
    for name in wanted:
        responses[codes[name]] = {"$ref": f"#/components/responses/{name}"}
    responses["default"] = {"$ref": "#/components/responses/Other"}
    operation: dict[str, Any] = {
        "tags": [tag],
        "summary": summary,
        "description": f"{description}\n\nNeeds an API client with the {role} role or higher.",
        "responses": responses,
    }
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    return operation


SALE_ID = {
    "name": "sale_id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_ID},
}


def _paths() -> dict[str, Any]:
    card_result = "CardSaleResult"
    return {
        "/api/openapi.json": {
            "get": {
                "tags": ["document"],
                "summary": "This document",
                "security": [],
                "responses": {
                    "200": {
                        "description": "the OpenAPI document",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
        "/api/keypad/trial": {
            "post": _operation(
                "What a payment buys for a keypad meter",
                "Prices the payment as a sale would (fixed charges first, tax included, the "
                "energy at today's tariff) and says whether key change tokens would come first. "
                "Nothing is issued and nothing is kept.",
                {"200": _json("KeypadTrial", "the trial")},
                tag="keypad",
                body="KeypadTrialRequest",
            )
        },
        "/api/keypad/sales": {
            "post": _operation(
                "Sell a token to a keypad meter",
                "Vends the credit token (and any key change sections before it) in one "
                "transaction; the sale is delivered when answered. Repeating the request id "
                "returns the same tokens (200, replayed); the same id with another meter or "
                "amount is refused (409).",
                {
                    "201": _json("TokenSale", "the tokens, new"),
                    "200": _json("TokenSale", "the first result of this request id"),
                },
                tag="keypad",
                body="KeypadSaleRequest",
            )
        },
        "/api/keypad/sales/{sale_id}/confirm": {
            "parameters": [SALE_ID],
            "post": _operation(
                "Confirm a token sale (changes nothing)",
                "A token is delivered when it is issued; confirming is accepted so a channel "
                "can treat both meter kinds alike, and returns the sale.",
                {"200": _json("TokenSale", "the sale")},
                tag="keypad",
                errors=("NotFound",),
            ),
        },
        "/api/keypad/sales/{sale_id}/reverse": {
            "parameters": [SALE_ID],
            "post": _operation(
                "Reverse a token sale: always refused",
                "A meter takes a token from whoever enters it, so a token handed over cannot "
                "be taken back: answered 409 not_reversible.",
                {},
                tag="keypad",
                role="supervisor",
                errors=("NotFound", "Conflict"),
            ),
        },
        "/api/keypad/sales/{sale_id}/reprint": {
            "parameters": [SALE_ID],
            "get": _operation(
                "Reprint a token sale",
                "The tokens exactly as they were issued, never new ones.",
                {"200": _json("TokenSale", "the sale")},
                tag="keypad",
                errors=("NotFound",),
            ),
        },
        "/api/card/trial": {
            "post": _operation(
                "What a payment buys for a card meter",
                "From the card as read: settles a write left in flight, reconciles the "
                "write-back and prices the payment, then keeps nothing.",
                {"200": _json("CardTrial", "the quote")},
                tag="card",
                body="CardTrialRequest",
            )
        },
        "/api/card/sales": {
            "post": _operation(
                "Sell to a card: record it pending, answer the card write",
                "Checks every MAC on the card as read, settles and reconciles as a desk does, "
                "prices the sale and records it pending (201). The answer's card_write is the "
                "commands to relay to the card, which must still be in the terminal and must "
                "have received nothing since GET CHALLENGE; then confirm with the card's answer "
                "to the last command. Repeating the request id with a fresh reading and "
                "challenge finishes a pending sale (200: a new card write; or, when the files "
                "show the card holds it, a card write that only authenticates and reads the "
                "purse back, whose answer confirms it) or returns a finished one (200, "
                "card_write null); the same id with another amount is refused (409), and so "
                "is a card whose files show another request's or a desk's unconfirmed write.",
                {
                    "201": _json(card_result, "the sale, pending, and the card write"),
                    "200": _json(card_result, "a request id seen before"),
                },
                tag="card",
                body="CardSaleRequest",
            )
        },
        "/api/card/sales/{sale_id}/confirm": {
            "parameters": [SALE_ID],
            "post": _operation(
                "Confirm a card write (a sale or a reversal) from the card's read-back",
                "The read-back is MACed by the card under the write's session key: it proves "
                "this card holds the purse written. The sale is then written (the money moves "
                "in the journal) or the reversal done. Confirming again returns the result "
                "(replayed).",
                {"200": _json(card_result, "the sale, written or reversed")},
                tag="card",
                body="CardConfirmRequest",
            ),
        },
        "/api/card/sales/{sale_id}/reverse": {
            "parameters": [SALE_ID],
            "post": _operation(
                "Reverse a card sale whose credit has not reached the meter",
                "With the sale's card in the terminal, by the desk's rules: the card must still "
                "carry the sale and its write-back be cleared or show the meter did not load "
                "it. Answers the card write (the purse minus this sale); confirm it like a sale. "
                "A sale reversed already is returned (card_write null); a reversal the card's "
                "files show written but not confirmed gets a card write that only "
                "authenticates and reads the purse back, whose answer confirms it.",
                {"200": _json(card_result, "the reversal to write, or the sale reversed")},
                tag="card",
                body="CardReverseRequest",
                role="supervisor",
            ),
        },
        "/api/card/sales/{sale_id}/reprint": {
            "parameters": [SALE_ID],
            "get": _operation(
                "Reprint a card sale",
                "The sale as it stands, for its receipt.",
                {"200": _json(card_result, "the sale (card_write null)")},
                tag="card",
                errors=("NotFound",),
            ),
        },
    }


DESCRIPTION = """\
The vending API of the billing centre, for payment channels (banks, online
channels, agents): trial, sale, confirm, reverse and reprint, for keypad
meters (STS tokens) and card meters.

**Authentication.** HTTP Basic with the API client's key ID as the user name
and its secret as the password, on every request. An administrator creates
clients (Operators, API clients) with a role: cashier clients sell;
reversing needs a supervisor client. A client sees only its own sales.

**Request ids.** Every sale carries the client's request id. Repeating it
returns the first result (200, `replayed: true`), never a second sale; the
same id with another amount or meter is refused (409).

**Money** is a decimal string in currency units, in requests and answers.

**Card meters.** The channel's terminal needs a plain reader and no keys. It
reads the card's six files (SELECT the DF, READ BINARY each EF), sends GET
CHALLENGE, and posts the files and the challenge. The centre checks the
card, records the sale pending and answers the commands to relay (the issuer
key never leaves the centre). The terminal sends them in order (each answers
9000) and posts the card's answer to the last one, a read-back of the purse
MACed by the card, to `confirm`. If anything breaks off, repeat the sale
request with the same request id and a fresh reading: it confirms the sale
if the card shows it, or brings the write again.

**Errors** always have the shape of the Error schema, with the status of
their code.
"""


def document() -> dict[str, Any]:
    """The OpenAPI 3.0 document (a fresh dict each time)."""
    return {
        "openapi": "3.0.3",
        "info": {"title": "cardcenter vending API", "version": VERSION, "description": DESCRIPTION},
        "servers": [{"url": "/"}],
        "security": [{"basicAuth": []}],
        "tags": [
            {"name": "keypad", "description": "keypad meters: STS tokens"},
            {"name": "card", "description": "card meters: the card written by the terminal"},
            {"name": "document", "description": "this document"},
        ],
        "paths": _paths(),
        "components": {
            "securitySchemes": {
                "basicAuth": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "user name: the client's key ID; password: its secret",
                }
            },
            "schemas": _schemas(),
            "responses": RESPONSES,
        },
    }
