"""The vending API's operations: trial, sale, confirm, reverse and reprint, for both meter kinds.

Keypad meters (STS tokens) are one step: a sale vends the tokens
(:func:`cardcenter.tokens.services.vend`) and is delivered once answered;
confirm changes nothing and reverse is refused (a token cannot be taken
back). Card meters are two steps, as at a desk (:meth:`Desk.begin_sale`,
then the card write, then the confirmation): the sale is recorded pending
and answered with the commands the channel's terminal relays to the card
(:mod:`cardcenter.web.api.terminal`); the card's MACed read-back of its
purse confirms it. A reversal of a card sale goes the same way through the
desk's own reversal rules (:meth:`Desk.reverse`).

Each view authenticates the client (:func:`client_required`, which also
declares the role), reads and checks its body (:mod:`cardcenter.web.api.fields`),
calls the centre's services and audits what changed.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Response, current_app, jsonify, request
from flask.blueprints import BlueprintSetupState
from flask.typing import ResponseReturnValue
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.exceptions import HTTPException
from werkzeug.routing import PathConverter

from cardcenter.cards.models import Card
from cardcenter.cards.reading import CardReading, read_card
from cardcenter.core.db import transaction, utcnow
from cardcenter.customers.models import Customer, Meter
from cardcenter.operators.models import Role
from cardcenter.sales.desk import Desk, same_request
from cardcenter.sales.models import Sale, SaleKind, SaleStatus
from cardcenter.sales.services import (
    PendingAction,
    Visit,
    confirm_write,
    purse_shows,
    sale_result,
)
from cardcenter.tariffs.pricing import format_money
from cardcenter.tokens.services import reprint, trial_vend, vend
from cardcenter.web import db
from cardcenter.web.api import bp, openapi
from cardcenter.web.api.clients import (
    channel_operator_id,
    client_required,
    current_client,
    desk,
    own_request_id,
    stored_request_id,
)
from cardcenter.web.api.errors import ApiError, error_response, invalid
from cardcenter.web.api.fields import (
    CHALLENGE_SIZE,
    MAX_REASON,
    READ_BACK_SIZE,
    WRITE_BACK_READ_SIZE,
    Body,
    CardReadingInput,
)
from cardcenter.web.api.terminal import CardOnFile, ScriptedCard, verify_read_back
from cardcenter.web.audit import audit
from cardcenter.web.i18n import _
from cardcenter.web.state import state
from cardlayout.card.operations import open_issuer_session, write_purchase
from cardlayout.errors import SecurityError
from cardlayout.transport.channel import CardChannel

CONFIRMATION_SALT = "cardcenter.api.card-write"
CONFIRMATION_AGE = timedelta(hours=1)
"""How long a card write's confirmation is taken; later, the next reading of the card settles it."""
MAX_ID = 2**63 - 1
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


@bp.after_request
def no_store(response: Response) -> Response:
    """Tokens and sales are for the client alone: no cache keeps them."""
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/openapi.json")
def openapi_document() -> ResponseReturnValue:
    """The OpenAPI 3 document of this API (no authentication: it holds no data)."""
    return jsonify(openapi.document())


# ---------------------------------------------------------------- keypad meters


@bp.post("/keypad/trial")
@client_required(Role.CASHIER)
def keypad_trial() -> ResponseReturnValue:
    """What a payment buys for a keypad meter: the vend's pricing and plan, nothing written."""
    body = Body.of_request()
    pan, amount = body.pan(), body.amount()
    body.done()
    app_state = state()
    done = trial_vend(app_state.sessions, app_state.keystore, pan, amount, utcnow())
    sale = done["sale"]
    return jsonify(
        status="trial",
        meter=done["meter"],
        meter_no=done["meter_no"],
        customer_no=done["customer_no"],
        tariff=sale["tariff"],
        tendered=sale["tendered"],
        fixed_charge=sale["fixed_charge"],
        months=sale["months"],
        tax=sale["tax"],
        credit=sale["credit"],
        energy=done["energy"],
        key_change=done["key_change"],
        tokens=done["tokens"],
    )


@bp.post("/keypad/sales")
@client_required(Role.CASHIER)
def keypad_sale() -> ResponseReturnValue:
    """Vend a credit token (and any key change before it); a repeated request id replays.

    The audit entry is written in the vend's own transaction: the sale, its
    tokens, its money and its audit entry commit together, durably, once.
    """
    body = Body.of_request()
    request_id, pan, amount = body.request_id(), body.pan(), body.amount()
    body.done()

    def audited(session: Session, done: dict[str, Any]) -> None:
        audit(
            "sale.token",
            f"sale:{done['sale']['id']}",
            into=session,
            request_id=request_id,
            meter=pan,
            amount=format_money(amount),
        )

    done = vend(
        desk(),
        pan,
        amount,
        stored_request_id(request_id),
        operator_id=channel_operator_id(),
        record=audited,
    )
    return jsonify(_token_sale(done)), 200 if done["replayed"] else 201


@bp.post("/keypad/sales/<int:sale_id>/confirm")
@client_required(Role.CASHIER)
def keypad_confirm(sale_id: int) -> ResponseReturnValue:
    """A token is delivered when it is issued: confirming changes nothing, and says so."""
    _own_sale(sale_id, token=True)
    return jsonify(_token_sale(reprint(state().sessions, sale_id=sale_id)))


@bp.post("/keypad/sales/<int:sale_id>/reverse")
@client_required(Role.SUPERVISOR)
def keypad_reverse(sale_id: int) -> ResponseReturnValue:
    """Refused, always: a meter takes a token from whoever types it in."""
    _own_sale(sale_id, token=True)
    raise ApiError(
        "not_reversible",
        _(
            "Sale %(id)d was delivered as a token when it was issued; a meter takes a token "
            "from whoever enters it, so it cannot be taken back.",
            id=sale_id,
        ),
    )


@bp.get("/keypad/sales/<int:sale_id>/reprint")
@client_required(Role.CASHIER)
def keypad_reprint(sale_id: int) -> ResponseReturnValue:
    """The tokens exactly as they were issued (never new ones)."""
    _own_sale(sale_id, token=True)
    return jsonify(_token_sale(reprint(state().sessions, sale_id=sale_id)))


def _token_sale(done: dict[str, Any]) -> dict[str, Any]:
    return {**done, "request_id": own_request_id(done["request_id"])}


# ---------------------------------------------------------------- card meters


@bp.post("/card/trial")
@client_required(Role.CASHIER)
def card_trial() -> ResponseReturnValue:
    """What a payment buys, from the card as read (settled and reconciled, nothing kept)."""
    body = Body.of_request()
    card, amount = body.card(), body.amount()
    body.done()
    quoted = desk().quote(_channel(card), amount)
    result = _card_sale(quoted)
    for key in ("id", "request_id", "created_at", "replayed", "trial"):
        result.pop(key, None)
    return jsonify(result)


@bp.post("/card/sales")
@client_required(Role.CASHIER)
def card_sale() -> ResponseReturnValue:
    """Record a card sale pending; answer the card write for the terminal to relay."""
    body = Body.of_request()
    request_id, amount = body.request_id(), body.amount()
    card = body.card()
    challenge = body.hex_bytes("challenge", CHALLENGE_SIZE)
    body.done()
    stored = stored_request_id(request_id)
    known = (
        db.session().execute(select(Sale.id, Sale.kind).where(Sale.request_id == stored)).first()
    )
    db.session().commit()
    if known is not None and known.kind is SaleKind.TOKEN:
        raise ApiError(
            "conflict",
            _(
                "Request %(request)s was a token sale: use a new request id for a card sale.",
                request=request_id,
            ),
            "request_id",
        )
    scripted = _scripted(card, challenge)
    channel = CardChannel(scripted)
    the_desk = desk()
    reading = read_card(channel, the_desk.keys)
    proving = _write_to_prove(
        reading, known.id if known is not None else None, PendingAction.SALE, amount
    )
    if proving is not None:
        open_issuer_session(channel, the_desk.keys, reading.snapshot)
        card_write = _card_write(scripted, proving, PendingAction.SALE)
        return jsonify(sale=_described(proving, replayed=True), card_write=card_write), 200
    started = the_desk.begin_sale(reading, amount, stored)
    if isinstance(started, dict):  # finished already (repeated, or the card shows it)
        return jsonify(sale=_described(started["sale"], replayed=True), card_write=None)
    write_purchase(channel, the_desk.keys, reading.snapshot, started.write)
    card_write = _card_write(scripted, started.sale_id, PendingAction.SALE)
    result = _card_sale(sale_result(started.sale, **started.learnt))
    # The look-up above ran before this request's transaction: another request
    # with this id may have recorded the sale since. The desk's answer decides.
    repeated = known is not None or started.resumed
    if not repeated:
        audit(
            "sale.begin",
            f"sale:{started.sale_id}",
            request_id=request_id,
            amount=format_money(amount),
            card=reading.serial,
        )
        db.session().commit()
    if repeated:
        result["replayed"] = True
    return jsonify(sale=result, card_write=card_write), 200 if repeated else 201


def _write_to_prove(
    reading: CardReading, sale_id: int | None, action: PendingAction, amount: int | None = None
) -> int | None:
    """The pending write the terminal's reading says the card holds: the card must prove it.

    A desk trusts its own reader, and a reading that shows a pending write's
    purse confirms that write. A terminal's files are only what the terminal
    says, and it was handed the purse (with its MAC) in the write's script;
    so here such a write is confirmed only by the card's MACed read-back.
    For this request's own write (``action`` of sale ``sale_id``; a sale of
    another ``amount`` is refused as any such repeat) the answer is a script
    that authenticates and reads the purse back, and its sale id is
    returned; a write of another request or of a desk is refused until it
    is settled there. None when the files show no pending write.
    """
    if reading.blank:
        return None
    # A read ended by a COMMIT (writing nothing), not by a closed session's ROLLBACK,
    # at which psycopg would drop the connection's prepared statements (PostgreSQL).
    with transaction(state().sessions) as session:
        card = session.execute(
            select(Card).where(Card.serial == reading.serial)
        ).scalar_one_or_none()
        if card is None or card.pending_action is None:
            return None
        if not purse_shows(reading, card.pending_count, card.pending_amount):
            return None
        if (
            sale_id is not None
            and card.pending_sale_id == sale_id
            and card.pending_action == action.value
        ):
            if amount is not None:
                same_request(session.get_one(Sale, sale_id), amount)
            return sale_id
        raise ApiError(
            "conflict",
            _(
                "Card %(card)s seems to hold a write that is not confirmed yet (%(what)s): "
                "repeat that request, or put the card in a service hall desk's reader.",
                card=card.serial,
                what=f"sale {card.pending_sale_id}"
                if card.pending_sale_id
                else str(card.pending_action),
            ),
        )


@bp.post("/card/sales/<int:sale_id>/confirm")
@client_required(Role.CASHIER)
def card_confirm(sale_id: int) -> ResponseReturnValue:
    """The card's MACed read-back of its purse confirms the write: the sale (or reversal) stands."""
    body = Body.of_request()
    confirmation = body.matching(
        "confirmation",
        r"^[A-Za-z0-9._-]{1,512}$",
        _("give the confirmation exactly as the card write gave it"),
    )
    read_back = body.hex_bytes("read_back", READ_BACK_SIZE)
    write_back = body.hex_bytes_or_none("write_back", WRITE_BACK_READ_SIZE)
    body.done()
    assert confirmation is not None
    sale = _own_sale(sale_id, token=False)
    action, cryptogram, macs = _confirmation(confirmation, sale_id)
    if (write_back is None) is (action is PendingAction.REVERSAL):
        raise invalid(
            "write_back",
            _(
                "A reversal's confirmation needs write_back, the card's answer to the "
                "script's command before the last."
            )
            if write_back is None
            else _("write_back: only a reversal's script reads the write-back."),
        )
    # As at a desk: a sale's confirmation need not wait for the disk (the card's
    # purse proves it again at its next reading); a reversal's does.
    durable = action is PendingAction.REVERSAL
    with transaction(state().sessions, durable=durable) as session:
        card, customer, meter = session.execute(
            select(Card, Customer, Meter)
            .join(Customer, Customer.id == Card.customer_id)
            .join(Meter, Meter.id == Card.meter_id)
            .where(Card.id == sale.card_id)
        ).one()
        try:
            shown = verify_read_back(
                state().keys.issuer_key(card.serial_bytes),
                cryptogram,
                macs,
                read_back,
                write_back,
            )
        except SecurityError:
            raise ApiError(
                "card_refused",
                _(
                    "The read-back is not card %(card)s's answer in this write's session: "
                    "send the card's answer to the script's last command as it came.",
                    card=card.serial,
                ),
                "read_back",
            ) from None
        sale = session.get_one(Sale, sale_id)
        visit = Visit(card, customer, meter)
        if card.pending_sale_id != sale.id or card.pending_action != action.value:
            if _finished(sale, action):
                replayed = _card_sale(sale_result(sale, visit, replayed=True))
                return jsonify(sale=replayed, card_write=None)
            raise ApiError(
                "conflict",
                _(
                    "Card %(card)s no longer waits for this write of sale %(id)d: it was settled "
                    "at a desk or by a later request. Reprint the sale to see how it ended.",
                    card=card.serial,
                    id=sale.id,
                ),
            )
        purse = shown.purse
        if purse is None or (purse.purchase_count, purse.amount) != (
            card.pending_count,
            card.pending_amount,
        ):
            raise ApiError("conflict", _not_written(card, purse is None, action))
        confirm_write(session, visit, at=utcnow(), write_back_clear=bool(shown.write_back_clear))
        result = _card_sale(sale_result(sale, visit))
    # A reversal stands only if the card's write-back was still clear (confirm_write):
    # otherwise its purse is confirmed, and the sale and its money stay as they were.
    refused = action is PendingAction.REVERSAL and sale.status is not SaleStatus.REVERSED
    audit(
        "reversal.refused"
        if refused
        else "reversal.confirm"
        if action is PendingAction.REVERSAL
        else "sale.confirm",
        f"sale:{sale_id}",
        card=card.serial,
        amount=format_money(sale.tendered),
    )
    db.session().commit()
    if refused:
        raise ApiError(
            "conflict",
            _(
                "Card %(card)s's meter read it after the terminal did: it may have loaded sale "
                "%(id)d before the reversal reached the card. The sale is not reversed and "
                "nothing is refunded; the card's write-back, read at a service-hall desk, "
                "shows where its credit went.",
                card=card.serial,
                id=sale_id,
            ),
        )
    return jsonify(sale=result, card_write=None)


@bp.post("/card/sales/<int:sale_id>/reverse")
@client_required(Role.SUPERVISOR)
def card_reverse(sale_id: int) -> ResponseReturnValue:
    """Start a reversal by the desk's rules; the terminal writes it, the read-back confirms it.

    :meth:`Desk.reverse` runs whole (its checks, the reversal recorded pending,
    the card written) against the stand-in card, and is stopped at its
    ``written`` checkpoint, before it would confirm: the real card has not
    been written yet. From there the reversal is pending exactly as after a
    desk's reader lost the card at that point, and the card's read-back
    confirms it (or its next reading at a desk settles it).
    """
    body = Body.of_request()
    card = body.card()
    challenge = body.hex_bytes("challenge", CHALLENGE_SIZE)
    reason = body.text("reason", MAX_REASON)
    body.done()
    sale = _own_sale(sale_id, token=False)
    if sale.status is SaleStatus.REVERSED:
        return jsonify(sale=_described(sale_id, replayed=True), card_write=None)
    scripted = _scripted(card, challenge)
    channel = CardChannel(scripted)
    reading = read_card(channel, state().keys)
    if _write_to_prove(reading, sale_id, PendingAction.REVERSAL) is not None:
        open_issuer_session(channel, state().keys, reading.snapshot)
        card_write = _card_write(scripted, sale_id, PendingAction.REVERSAL)
        return jsonify(sale=_described(sale_id, replayed=True), card_write=card_write)
    stopping = Desk(
        state().sessions,
        state().keys,
        operator=desk().operator,
        site=desk().site,
        checkpoint=_stop_when_written,
    )
    try:
        stopping.reverse(channel, sale_id, reason, proven_later=True)
    except _Written:
        pass
    else:  # pragma: no cover - the desk always passes its checkpoints
        raise RuntimeError("the desk confirmed a reversal the card has not been written with")
    card_write = _card_write(scripted, sale_id, PendingAction.REVERSAL)
    audit("sale.reverse", f"sale:{sale_id}", reason=reason, card=card.serial.hex().upper())
    db.session().commit()
    return jsonify(sale=_described(sale_id), card_write=card_write)


@bp.get("/card/sales/<int:sale_id>/reprint")
@client_required(Role.CASHIER)
def card_reprint(sale_id: int) -> ResponseReturnValue:
    """The sale as it stands now (the receipt's facts; a card sale has no digits to repeat)."""
    _own_sale(sale_id, token=False)
    return jsonify(sale=_described(sale_id, replayed=True), card_write=None)


class _Written(Exception):
    """The desk's card write is made (on the stand-in card): stop before it confirms."""


def _stop_when_written(step: str) -> None:
    if step == "written":
        raise _Written


def _scripted(card: CardReadingInput, challenge: bytes) -> ScriptedCard:
    return ScriptedCard(
        card.serial,
        card.utility,
        card.files,
        issuer_key=state().keys.issuer_key(card.serial),
        challenge=challenge,
    )


def _channel(card: CardReadingInput) -> CardChannel:
    return CardChannel(CardOnFile(card.serial, card.utility, card.files))


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key or "", salt=CONFIRMATION_SALT)


def _card_write(scripted: ScriptedCard, sale_id: int, action: PendingAction) -> dict[str, Any]:
    """The script for the terminal and the signed confirmation that names its session."""
    confirmation = _serializer().dumps(
        {
            "sale": sale_id,
            "client": current_client().id,
            "action": action.value,
            "session": scripted.cryptogram.hex(),
            "macs": scripted.macs,
        }
    )
    return {
        "action": action.value,
        "apdus": scripted.finished_script(prove_write_back=action is PendingAction.REVERSAL),
        "confirmation": confirmation,
    }


def _confirmation(text: str, sale_id: int) -> tuple[PendingAction, bytes, int]:
    try:
        found = _serializer().loads(text, max_age=int(CONFIRMATION_AGE.total_seconds()))
    except SignatureExpired:
        raise ApiError(
            "confirmation_expired",
            _(
                "This confirmation is more than an hour old. Repeat the sale request with the "
                "same request id and a fresh reading of the card: it brings a new card write, "
                "or, if the card holds the sale, a short one whose read-back confirms it."
            ),
            "confirmation",
        ) from None
    except BadSignature:
        raise ApiError(
            "value_refused", _("This is not a confirmation the centre gave."), "confirmation"
        ) from None
    if (
        not isinstance(found, dict)
        or found.get("sale") != sale_id
        or found.get("client") != current_client().id
    ):
        raise ApiError(
            "value_refused",
            _("This confirmation belongs to another sale: send the one given with this one."),
            "confirmation",
        )
    return PendingAction(found["action"]), bytes.fromhex(found["session"]), int(found["macs"])


def _finished(sale: Sale, action: PendingAction) -> bool:
    if action is PendingAction.REVERSAL:
        return sale.status is SaleStatus.REVERSED
    return sale.status in (SaleStatus.WRITTEN, SaleStatus.DELIVERED, SaleStatus.REVERSED)


def _not_written(card: Card, torn: bool, action: PendingAction) -> str:
    again = (
        _(
            "repeat the sale request with the same request id and a fresh reading of the "
            "card: it brings the write again"
        )
        if action is PendingAction.SALE
        else _("finish the reversal at a service hall desk (sale recover)")
    )
    if torn:
        return _(
            "The purse on card %(card)s is torn: the write was cut short; %(again)s.",
            card=card.serial,
            again=again,
        )
    return _(
        "Card %(card)s does not hold the purse this write makes (the script did not reach "
        "it); %(again)s.",
        card=card.serial,
        again=again,
    )


def _own_sale(sale_id: int, *, token: bool) -> Sale:
    """The client's own sale ``sale_id`` of this kind, else 404 (others' sales are not shown)."""
    session = db.session()
    sale = session.get(Sale, sale_id) if 0 < sale_id <= MAX_ID else None
    session.commit()
    if sale is None or sale.operator_id != channel_operator_id():
        raise ApiError("not_found", _("This API client made no sale %(id)d.", id=sale_id))
    if (sale.kind is SaleKind.TOKEN) != token:
        kind = "keypad" if sale.kind is SaleKind.TOKEN else "card"
        raise ApiError(
            "not_found",
            _(
                "Sale %(id)d is a %(kind)s sale: it is at /api/%(kind)s/sales/%(id)d.",
                id=sale_id,
                kind=kind,
            ),
        )
    return sale


def _described(sale_id: int, **extra: Any) -> dict[str, Any]:
    """A card sale as it stands, with its account and card."""
    with transaction(state().sessions) as session:  # a COMMIT, as in _write_to_prove
        sale = session.get_one(Sale, sale_id)
        card, customer, meter = session.execute(
            select(Card, Customer, Meter)
            .join(Customer, Customer.id == Card.customer_id)
            .join(Meter, Meter.id == Card.meter_id)
            .where(Card.id == sale.card_id)
        ).one()
        return _card_sale(sale_result(sale, Visit(card, customer, meter), **extra))


def _card_sale(result: dict[str, Any]) -> dict[str, Any]:
    """A desk result as the API gives a card sale: ``id``, the client's own request id."""
    out = {key: value for key, value in result.items() if key not in ("sale", "resumed")}
    out["id"] = result["sale"]
    out["request_id"] = own_request_id(result["request_id"])
    out["replayed"] = bool(result.get("replayed") or result.get("resumed"))
    out.setdefault("reconciliation", None)
    return out


# ---------------------------------------------------------------- anything else


class AnyRest(PathConverter):
    """The rest of a path, line breaks included.

    Werkzeug's ``path`` stops at a line break (its ``.`` is not DOTALL), so
    a path under ``/api/`` holding one (``%0A``) fell through to the
    application's 404, which is not in the API's error shape.
    """

    regex = r"[^/][\s\S]*?"


@bp.record_once
def _install_any_rest(setup: BlueprintSetupState) -> None:
    setup.app.url_map.converters["api_rest"] = AnyRest


@bp.route("/", defaults={"rest": ""}, methods=METHODS)
@bp.route("/<api_rest:rest>", methods=METHODS)
@client_required(Role.CASHIER)
def unknown(rest: str) -> ResponseReturnValue:
    """An unknown path, or a method its path does not take, in the API's error shape.

    Flask answers routing failures with the application's handlers, never a
    blueprint's, so this route catches what no other API route matches. It
    authenticates first, like every operation: nobody learns which paths
    exist without credentials.
    """
    adapter = current_app.url_map.bind_to_environ(request.environ)
    allowed = []
    for method in METHODS:
        try:
            endpoint, _values = adapter.match(method=method)
        except HTTPException:
            continue
        if endpoint != "api.unknown":
            allowed.append(method)
    if allowed:
        return error_response(
            "method_not_allowed",
            _("This API operation does not take that method."),
            headers={"Allow": ", ".join(allowed)},
        )
    return error_response("not_found", _("There is no such API operation."))
