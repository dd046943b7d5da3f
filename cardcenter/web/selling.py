"""Selling at the desk: a card sale, a token sale, reversal, receipts and reprints.

A card sale is one page per step, and every step reads the card afresh, so
what the operator sees is what is in the reader now:

1. ``POST /sell/card/read``: :meth:`~cardcenter.sales.desk.Desk.read` (whose
   card, what it carries, its write-back reconciled); the amount is asked for;
2. ``POST /sell/card/quote``: :meth:`~cardcenter.sales.desk.Desk.quote`, a
   trial that changes nothing, with the tariff's breakdown. The confirm form
   made here carries a fresh request id;
3. ``POST /sell/card/confirm``: :meth:`~cardcenter.sales.desk.Desk.sell`
   with that request id, then a redirect to the receipt. A double submit,
   a retry after an error, or the same form sent again after the card was
   pulled mid-write all carry the same id, so the desk finishes or replays
   the one sale and never sells twice.

A token sale is the same with a PAN instead of a card (trial, then
:func:`cardcenter.tokens.services.vend` with a request id). A card pulled
mid-write raises :class:`~cardcenter.core.errors.SaleInterruptedError`: the
page keeps the form (same request id) to repeat, and offers ``recover``
(:meth:`~cardcenter.sales.desk.Desk.recover`).

Receipts are built by :mod:`cardcenter.receipts` from the sale as the books
hold it, so the page, the PDF, the ESC/POS bytes and every reprint show the
same figures and the same token digits. A reprint is marked and audited.
Supervisors reverse a card sale with the card in the reader.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import format_decimal, get_locale
from sqlalchemy import select

from cardcenter.cards.models import Card
from cardcenter.core.db import utcnow
from cardcenter.core.errors import (
    CentreError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    SaleInterruptedError,
)
from cardcenter.customers.models import Customer, Meter
from cardcenter.customers.services import find_customer
from cardcenter.operators.models import Operator, Role
from cardcenter.operators.services import NotAllowedError, has_role
from cardcenter.receipts import Receipt, escpos, pdf, receipt_for_sale, receipt_for_tokens
from cardcenter.receipts.content import rows as receipt_rows
from cardcenter.receipts.labels import LOCALES as RECEIPT_LOCALES
from cardcenter.receipts.model import minor_units
from cardcenter.sales import planning
from cardcenter.sales.desk import Desk
from cardcenter.sales.models import Sale, SaleKind, SaleStatus
from cardcenter.sales.services import sale_result
from cardcenter.tariffs import pricing
from cardcenter.tariffs.models import TariffVersion
from cardcenter.tariffs.services import describe as describe_tariff
from cardcenter.tokens import services as tokens
from cardcenter.tokens.identity import check_pan
from cardcenter.web import db
from cardcenter.web.audit import audit
from cardcenter.web.auth import current_operator, login_required, require_role
from cardcenter.web.blueprints import NavItem, Section
from cardcenter.web.i18n import _, _l, money
from cardcenter.web.shifts import require_open_shift
from cardcenter.web.state import state
from cardlayout.errors import CardLayoutError, NoReaderError, NoServiceError
from cardlayout.vcard.cos import serial_from_atr

bp = Blueprint("selling", __name__, url_prefix="/sell")
SECTION = Section(bp, (NavItem("selling.index", _l("Sell"), role=Role.CASHIER, order=10),))

PAPERS = (58, 80)
"""Thermal paper widths (mm) the ESC/POS downloads are laid out for."""

MAX_AMOUNT_DIGITS = 10
"""Whole currency units an amount may have: far above any sale, far below the columns."""

RECENT = 20
"""Sales listed on the selling page."""

UNSETTLED = ("in_flight", "redo")
"""What a reading says of a card whose last write is in flight or was cut short."""

RECEIPTED = (SaleStatus.WRITTEN, SaleStatus.DELIVERED, SaleStatus.REVERSED, SaleStatus.REFUNDED)
"""A sale in one of these states has been sold, so it has a receipt."""


class FormError(InvalidInputError):
    """A field of a form filled in wrongly; the form is shown again with the sentence."""

    def __init__(self, field: str, sentence: str) -> None:
        super().__init__(field, sentence)
        self.sentence = sentence

    def __str__(self) -> str:
        return self.sentence


@bp.context_processor
def _formats() -> dict[str, Any]:
    """For this part's templates: the services' decimal money text in the locale's style."""
    return {"decimal_money": decimal_money, "units": units}


def decimal_money(text: str | None) -> str:
    """A result's money text (``"1234.50"``) as the locale writes it (``1,234.50``)."""
    return money(minor_units(text)) if text else ""


def units(hundredths: int | None) -> str:
    """An energy in 0.01 units (kWh), as the locale writes it."""
    if hundredths is None:
        return ""
    return str(format_decimal(Decimal(hundredths).scaleb(-2), format="#,##0.00"))


# ---------------------------------------------------------------- the selling page


@bp.route("/")
@login_required
def index() -> ResponseReturnValue:
    return _index()


def _index(error: str | None = None, code: int = 200, **form: str) -> ResponseReturnValue:
    session = db.session()
    recent = session.execute(
        select(Sale, Customer)
        .join(Customer, Customer.id == Sale.customer_id)
        .where(Sale.site == state().config.site)
        .order_by(Sale.id.desc())
        .limit(RECENT)
    ).all()
    session.commit()  # end the read: SQLite holds its write lock for a transaction's life
    return (
        render_template("selling/index.html", recent=recent, error=error, form=form),
        code,
    )


@bp.route("/sales/find")
@login_required
def find() -> ResponseReturnValue:
    """A sale by its number (the receipt number): its receipt page."""
    text = request.args.get("sale", "").strip().lstrip("#")
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        return _index(_("Sale number: give the number printed on the receipt."), 400)
    found = db.session().get(Sale, int(text))
    db.session().commit()
    if found is None:
        return _index(_("There is no sale %(id)s.", id=text), 404)
    return redirect(url_for("selling.receipt", sale_id=int(text)))


# ---------------------------------------------------------------- a card sale


@bp.route("/card/read", methods=["POST"])
@login_required
def card_read() -> ResponseReturnValue:
    """Read the card in the reader: whose it is and its write-back reconciled; ask the amount."""
    desk = db.desk()
    try:
        with state().reader.channel() as channel:
            visit = desk.read(channel)
    except (CentreError, CardLayoutError) as exc:
        return _index(str(exc), _status_of(exc))
    audit(
        "card.read",
        f"card:{visit['card_serial']}",
        settled=visit["settled"],
        reconciliation=(visit.get("reconciliation") or {}).get("id"),
    )
    db.session().commit()
    return render_template(
        "selling/card.html",
        visit=visit,
        serial=visit["card_serial"],
        unsettled=visit["settled"] in UNSETTLED or visit["card_status"] != "active",
        amount="",
        error=None,
    )


@bp.route("/card/quote", methods=["POST"])
@login_required
def card_quote() -> ResponseReturnValue:
    """Price the amount for the card in the reader (a trial) and offer to confirm it."""
    serial = request.form.get("serial", "")[:16]
    typed = request.form.get("amount", "")
    try:
        tendered = parse_amount(typed)
    except FormError as exc:
        return _card_page(serial, typed, str(exc), 400)
    desk = db.desk()
    try:
        with state().reader.channel() as channel:
            quote = desk.quote(channel, tendered)
    except (CentreError, CardLayoutError) as exc:
        return _card_page(serial, typed, str(exc), _status_of(exc))
    return render_template(
        "selling/card_quote.html",
        quote=quote,
        money=_money_of(quote),
        tariff=_tariff_of(quote["customer_no"], quote["breakdown"].get("tariff")),
        amount=format_amount(tendered),
        request_id=new_request_id(),
        serial=quote["card_serial"],
        other_card=bool(serial) and serial != quote["card_serial"],
    )


def _card_page(serial: str, amount: str, error: str, code: int) -> ResponseReturnValue:
    """The amount form again, with what was wrong (the card is not read again for it)."""
    page = render_template(
        "selling/card.html", visit=None, serial=serial, unsettled=False, amount=amount, error=error
    )
    return page, code


@bp.route("/card/confirm", methods=["POST"])
@login_required
def card_confirm() -> ResponseReturnValue:
    """Sell: write the card, read it back, confirm; then the receipt.

    The request id comes from the form, made when the quote was shown:
    sending the form again (a double click, a retry, the card put back
    after it was pulled) finishes or replays that one sale.
    """
    form = request.form
    serial = form.get("serial", "").strip().upper()
    request_id = form.get("request_id", "")
    try:
        tendered = parse_amount(form.get("amount", ""))
        # the credit the quote showed: a sale that would credit otherwise is refused
        quoted = parse_amount(form["credit"]) if form.get("credit") else None
        if not request_id:
            raise FormError("request id", _("This form has no request id: start the sale again."))
    except FormError as exc:
        return _index(str(exc), 400)
    fields = {"amount": format_amount(tendered), "request_id": request_id, "serial": serial}
    if quoted is not None:
        fields["credit"] = format_amount(quoted)
    repeat = {
        "action": url_for("selling.card_confirm"),
        "fields": fields,
        "label": _("Repeat the sale"),
        "card": True,
    }
    require_open_shift()
    desk = db.desk()
    try:
        with state().reader.channel() as channel:
            _check_same_card(channel.atr, serial)
            result = desk.sell(channel, tendered, request_id, quoted_credit=quoted)
    except SaleInterruptedError as exc:
        audit("sale.interrupted", f"sale:{exc.sale_id}", request_id=request_id, card=serial)
        db.session().commit()
        return _retry(exc, repeat, interrupted=True)
    except (CentreError, CardLayoutError) as exc:
        return _retry(exc, repeat)
    return _sold(result, serial)


def _check_same_card(atr: bytes, serial: str) -> None:
    """Refuse to sell to another card than the one quoted (swapped in the reader meanwhile)."""
    found = serial_from_atr(atr).hex().upper()
    if serial and found != serial:
        raise ConflictError(
            _(
                "Card %(found)s is in the reader, not card %(quoted)s that the quote was for: "
                "put that card back, or read this one and start again. Nothing was sold.",
                found=found,
                quoted=serial,
            )
        )


def _sold(result: dict[str, Any], serial: str) -> ResponseReturnValue:
    sale_id = int(result["sale"])
    status = result["status"]
    if status == SaleStatus.VOID:
        # The request's write was cancelled by a recovery: the card never got it.
        flash(
            _(
                "Sale %(id)d was cancelled when the card was recovered: the card did not get it "
                "and no money was taken. Start a new sale.",
                id=sale_id,
            ),
            "error",
        )
        return redirect(url_for("selling.index"))
    if not result.get("replayed"):
        audit(
            "sale.confirm",
            f"sale:{sale_id}",
            request_id=result["request_id"],
            card=result.get("card_serial", serial),
            amount=result["tendered"],
            credit=result["credit"],
            resumed=bool(result.get("resumed")),
        )
        db.session().commit()
        flash(
            _(
                "Sale %(id)d is written to card %(serial)s and read back.",
                id=sale_id,
                serial=result.get("card_serial", serial),
            )
        )
    return redirect(url_for("selling.receipt", sale_id=sale_id))


def _retry(
    exc: Exception, repeat: dict[str, Any], *, interrupted: bool = False
) -> ResponseReturnValue:
    """The page of a sale (or reversal) that did not go through: repeat it, or recover the card."""
    db.session().rollback()
    page = render_template(
        "selling/retry.html", message=str(exc), repeat=repeat, interrupted=interrupted
    )
    return page, _status_of(exc)


# ---------------------------------------------------------------- recovering a card


@bp.route("/recover", methods=["POST"])
@login_required
def recover() -> ResponseReturnValue:
    """Settle the write a pulled card was cut short in: confirm, cancel, or write it again."""
    desk = db.desk()
    try:
        with state().reader.channel() as channel:
            result = desk.recover(channel)
    except (CentreError, CardLayoutError) as exc:
        return _index(str(exc), _status_of(exc))
    settled = str(result["settled"])
    audit(
        "sale.recover",
        f"card:{result['card_serial']}",
        pending=result.get("pending"),
        settled=settled,
    )
    db.session().commit()
    return render_template("selling/recovered.html", result=result, settled=settled)


# ---------------------------------------------------------------- a token sale


@bp.route("/token")
@login_required
def token_form() -> ResponseReturnValue:
    return render_template(
        "selling/token.html", pan=request.args.get("pan", ""), amount="", error=None
    )


@bp.route("/token/trial", methods=["POST"])
@login_required
def token_trial() -> ResponseReturnValue:
    """What the amount buys for the meter (nothing issued), and the form that vends it."""
    typed_pan, typed = request.form.get("pan", ""), request.form.get("amount", "")
    try:
        pan = parse_pan(typed_pan)
        tendered = parse_amount(typed)
    except FormError as exc:
        return _token_page(typed_pan, typed, str(exc), 400)
    desk = db.desk()
    try:
        trial = token_trial_of(desk, pan, tendered)
    except CentreError as exc:
        return _token_page(typed_pan, typed, str(exc), _status_of(exc))
    return render_template(
        "selling/token_trial.html",
        trial=trial,
        pan=pan,
        amount=format_amount(tendered),
        request_id=new_request_id(),
    )


def _token_page(pan: str, amount: str, error: str, code: int) -> ResponseReturnValue:
    return render_template("selling/token.html", pan=pan, amount=amount, error=error), code


@bp.route("/token/vend", methods=["POST"])
@login_required
def token_vend() -> ResponseReturnValue:
    """Vend: the tokens are made and recorded with the sale in one transaction; the receipt."""
    form = request.form
    request_id = form.get("request_id", "")
    try:
        pan = parse_pan(form.get("pan", ""))
        tendered = parse_amount(form.get("amount", ""))
        if not request_id:
            raise FormError("request id", _("This form has no request id: start the sale again."))
    except FormError as exc:
        return _token_page(form.get("pan", ""), form.get("amount", ""), str(exc), 400)
    require_open_shift()
    desk = db.desk()
    try:
        result = tokens.vend(desk, pan, tendered, request_id)
    except CentreError as exc:
        repeat = {
            "action": url_for("selling.token_vend"),
            "fields": {"pan": pan, "amount": format_amount(tendered), "request_id": request_id},
            "label": _("Repeat the sale"),
        }
        return _retry(exc, repeat)
    sale_id = int(result["sale"]["id"])
    if not result["replayed"]:
        audit(
            "token.vend",
            f"sale:{sale_id}",
            request_id=request_id,
            meter=pan,
            amount=result["sale"]["tendered"],
            kwh=result["energy"]["kwh"],
            tokens=len(result["tokens"]),
        )
        db.session().commit()
        flash(_("Sale %(id)d: the tokens are issued.", id=sale_id))
    return redirect(url_for("selling.receipt", sale_id=sale_id))


def token_trial_of(desk: Desk, pan: str, tendered: int) -> dict[str, Any]:
    """What ``tendered`` would buy for keypad meter ``pan`` now; issues and records nothing.

    Priced by :func:`cardcenter.tokens.services.quote_vend`, as the vend
    itself prices (the tariff in force, fixed charges due, this month's
    energy so far), in a session that writes nothing.
    """
    with desk.sessions() as session:
        priced = tokens.quote_vend(session, pan, tendered, desk.clock())
        energy = priced.breakdown["energy"]
        return {
            "customer_no": priced.customer.customer_no,
            "customer": priced.customer.name,
            "meter_no": priced.meter.meter_no,
            "pan": priced.meter.sts_pan,
            "quote": priced.quote,
            "tariff": describe_tariff(session.get_one(TariffVersion, priced.version_id)),
            "kwh": tokens.tenths_text(priced.vended),
            "bought_kwh": tokens.tenths_text(energy["bought_tenths"]),
            "month_before_kwh": tokens.tenths_text(energy["month_before_tenths"]),
            "unvended": energy["unvended"],
            "basis": energy["basis"],
        }


# ---------------------------------------------------------------- receipts and reprints


@bp.route("/sales/<int:sale_id>")
@login_required
def receipt(sale_id: int) -> ResponseReturnValue:
    """The sale's receipt as a page, with its downloads; ``?reprint=`` marks a reprint."""
    reprinted_at = _reprint_time()
    sale, receipt = _receipt_of(sale_id, reprinted_at)
    operator = current_operator()
    reversible = (
        receipt is not None
        and sale["kind"] != SaleKind.TOKEN
        and sale["status"] == SaleStatus.WRITTEN
        and operator is not None
        and has_role(operator.role, Role.SUPERVISOR)
    )
    marks = {"reprint": reprinted_at.isoformat()} if reprinted_at is not None else {}
    return render_template(
        "selling/receipt.html",
        sale=sale,
        receipt=receipt,
        rows=receipt_rows(receipt, _receipt_locale(), state().config.timezone) if receipt else [],
        marks=marks,
        papers=PAPERS,
        reversible=reversible,
    )


@bp.route("/sales/<int:sale_id>/reprint", methods=["POST"])
@login_required
def reprint(sale_id: int) -> ResponseReturnValue:
    """Print a past sale's receipt again: the same figures and digits, marked REPRINT; audited."""
    at = utcnow()
    sale, receipt = _receipt_of(sale_id, at)
    if receipt is None:
        abort(409, description=_("Sale %(id)d has no receipt: it was not sold.", id=sale_id))
    audit("receipt.reprint", f"sale:{sale_id}", kind=sale["kind"], request_id=receipt.request_id)
    db.session().commit()
    return redirect(url_for("selling.receipt", sale_id=sale_id, reprint=at.isoformat()))


@bp.route("/sales/<int:sale_id>/receipt.pdf")
@login_required
def receipt_pdf(sale_id: int) -> ResponseReturnValue:
    receipt = _printable(sale_id)
    body = pdf.render(receipt, locale=_receipt_locale(), tz=state().config.timezone)
    return _download(body, "application/pdf", f"{_file_stem(receipt)}.pdf")


@bp.route("/sales/<int:sale_id>/receipt-<int:paper>mm.bin")
@login_required
def receipt_escpos(sale_id: int, paper: int) -> ResponseReturnValue:
    """ESC/POS bytes for a 58 or 80 mm thermal printer (sent to it as they are)."""
    if paper not in PAPERS:
        abort(404, description=_("Receipts are laid out for 58 and 80 mm paper."))
    receipt = _printable(sale_id)
    body = escpos.render(receipt, paper=paper, locale=_receipt_locale(), tz=state().config.timezone)
    return _download(body, "application/octet-stream", f"{_file_stem(receipt)}-{paper}mm.bin")


def _printable(sale_id: int) -> Receipt:
    _sale, receipt = _receipt_of(sale_id, _reprint_time())
    if receipt is None:
        abort(409, description=_("Sale %(id)d has no receipt: it was not sold.", id=sale_id))
    return receipt


def _file_stem(receipt: Receipt) -> str:
    number = receipt.number if receipt.number is not None else receipt.request_id
    return f"receipt-{number}{'-reprint' if receipt.reprint else ''}"


def _download(body: bytes, mimetype: str, filename: str) -> Response:
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "no-store"
    return response


def _reprint_time() -> datetime | None:
    """The reprint time a receipt link carries (an aware ISO time), or None for the original."""
    text = request.args.get("reprint")
    if text is None:
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        abort(400, description=_("This reprint link is damaged: print the reprint again."))
    return at


def _receipt_locale() -> str:
    locale = str(get_locale())
    return locale if locale in RECEIPT_LOCALES else RECEIPT_LOCALES[0]


def _receipt_of(
    sale_id: int, reprinted_at: datetime | None
) -> tuple[dict[str, Any], Receipt | None]:
    """The sale (as the page shows it) and its receipt; None when it has none (pending, void)."""
    session = db.session()
    sale = session.get(Sale, sale_id)
    if sale is None:
        abort(404, description=_("There is no sale %(id)s.", id=sale_id))
    customer = session.get_one(Customer, sale.customer_id)
    meter = session.get_one(Meter, sale.meter_id)
    seller = session.get(Operator, sale.operator_id)
    card = session.get(Card, sale.card_id) if sale.card_id is not None else None
    shown: dict[str, Any] = {
        "id": sale.id,
        "kind": str(sale.kind),
        "status": str(sale.status),
        "request_id": sale.request_id,
        "customer_no": customer.customer_no,
        "customer": customer.name,
        "meter_no": meter.meter_no,
        "card_serial": card.serial if card is not None else None,
        "pan": meter.sts_pan,
        "tendered": sale.tendered,
        "created_at": sale.created_at,
        "note": sale.note,
    }
    operator_name = (seller.name or seller.username) if seller is not None else ""
    if sale.status not in RECEIPTED:
        session.commit()
        return shown, None
    if sale.kind is SaleKind.TOKEN:
        tax_rate = sale.breakdown.get("tax_rate")
        site = sale.site
        session.commit()  # the reprint reads in a session of its own (SQLite's write lock)
        batch = tokens.reprint(state().sessions, sale_id=sale_id)
        built = receipt_for_tokens(
            batch,
            site=site,
            customer_name=shown["customer"],
            operator=operator_name,
            tax_rate=int(tax_rate) if tax_rate is not None else None,
            reprinted_at=reprinted_at,
        )
        return shown, built
    built = receipt_for_sale(
        sale_result(sale),
        site=sale.site,
        operator=operator_name,
        customer_name=customer.name,
        customer_no=customer.customer_no,
        meter_no=meter.meter_no,
        card_serial=shown["card_serial"],
        reprinted_at=reprinted_at,
    )
    session.commit()
    return shown, built


# ---------------------------------------------------------------- reversal


@bp.route("/sales/<int:sale_id>/reverse", methods=["GET", "POST"])
@require_role(Role.SUPERVISOR)
def reverse(sale_id: int) -> ResponseReturnValue:
    """Take back a card sale that has not reached the meter: its card must be in the reader."""
    sale, _receipt = _receipt_of(sale_id, None)
    if sale["kind"] == SaleKind.TOKEN:
        abort(
            409,
            description=_(
                "Sale %(id)d was a token: a token handed over cannot be taken back.", id=sale_id
            ),
        )
    if request.method == "GET":
        return render_template("selling/reverse.html", sale=sale, reason="", error=None)
    reason = " ".join(request.form.get("reason", "").split())
    if not reason:
        page = render_template(
            "selling/reverse.html",
            sale=sale,
            reason="",
            error=_("Reason: say why the sale is reversed."),
        )
        return page, 400
    require_open_shift()  # the money goes back out of this operator's drawer
    desk = db.desk()
    repeat = {
        "action": url_for("selling.reverse", sale_id=sale_id),
        "fields": {"reason": reason},
        "label": _("Repeat the reversal"),
        "card": True,
    }
    try:
        with state().reader.channel() as channel:
            result = desk.reverse(channel, sale_id, reason)
    except SaleInterruptedError as exc:
        audit("sale.interrupted", f"sale:{sale_id}", flow="reverse")
        db.session().commit()
        return _retry(exc, repeat, interrupted=True)
    except (CentreError, CardLayoutError) as exc:
        return _retry(exc, repeat)
    audit(
        "sale.reverse",
        f"sale:{sale_id}",
        card=result.get("card_serial"),
        amount=result["tendered"],
        reason=reason[:200],
    )
    db.session().commit()
    flash(_("Sale %(id)d is reversed: pay %(amount)s back.", id=sale_id, amount=result["tendered"]))
    return redirect(url_for("selling.receipt", sale_id=sale_id))


# ---------------------------------------------------------------- forms


def parse_amount(text: str) -> int:
    """An amount typed in currency units (``100``, ``100.5``, ``100.50``) as minor units.

    Refused with a sentence naming the field: empty, not a plain decimal
    number, 0 or less, more than two decimals, absurdly large.
    """
    text = text.strip()
    if not text:
        raise FormError("amount", _("Amount: give the amount the customer pays."))
    if text.startswith("-"):
        raise FormError("amount", _("Amount: give an amount above 0."))
    if not text.isascii() or not all(ch.isdigit() or ch == "." for ch in text):
        raise FormError("amount", _not_a_number(text))
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise FormError("amount", _not_a_number(text)) from None
    scaled = value.scaleb(2)
    if scaled != scaled.to_integral_value():
        raise FormError("amount", _("Amount: give at most 2 decimal places."))
    if scaled <= 0:
        raise FormError("amount", _("Amount: give an amount above 0."))
    if value >= 10**MAX_AMOUNT_DIGITS:
        raise FormError("amount", _("Amount: %(value)s is too large.", value=text))
    return int(scaled)


def _not_a_number(text: str) -> str:
    return _("Amount: %(value)s is not a number (write it as 100 or 100.50).", value=text)


def format_amount(minor: int) -> str:
    """Minor units as the plain text a form carries (``12345`` -> ``123.45``)."""
    return pricing.format_money(minor)


def parse_pan(text: str) -> str:
    if not text.strip():
        raise FormError("PAN", _("PAN: give the meter's 18-digit number."))
    try:
        return check_pan(text)
    except InvalidInputError:
        raise FormError(
            "PAN",
            _("PAN: %(value)s is not a meter number: give its 18 digits.", value=text.strip()),
        ) from None


def new_request_id() -> str:
    """The request id a confirm form carries: one sale, however often the form is sent."""
    return f"web-{uuid.uuid4().hex}"


def _money_of(result: dict[str, Any]) -> dict[str, int]:
    """A result's money (decimal text) as minor units, for the ``|money`` filter."""
    keys = ("tendered", "fixed_charge", "tax", "credit", "card_amount")
    return {key: minor_units(result[key]) for key in keys}


def _tariff_of(customer_no: str, named: str | None) -> dict[str, Any] | None:
    """The tariff in force for the customer, described (prices, tax), if it is the one named."""
    session = db.session()
    try:
        customer = find_customer(session, customer_no)
        version = planning.tariffs_at(session, customer, utcnow())[0]
        described = describe_tariff(version)
    except CentreError:
        return None
    finally:
        session.commit()
    if named is not None and named != f"{described['name']} v{described['version']}":
        return None
    return described


def _status_of(exc: Exception) -> int:
    """The HTTP status the application gives ``exc`` (see :mod:`cardcenter.web`)."""
    if isinstance(exc, InvalidInputError):
        return 400
    if isinstance(exc, NoServiceError | NoReaderError):
        return 503
    if isinstance(exc, NotAllowedError):
        return 403
    if isinstance(exc, NotFoundError):
        return 404
    return 409
