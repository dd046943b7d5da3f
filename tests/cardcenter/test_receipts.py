"""Receipts from the services' real results: text, ESC/POS bytes and PDF, in two languages."""

from __future__ import annotations

import base64
import copy
import re
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from centre_support import Database
from centre_world import World
from hypothesis import given, settings
from hypothesis import strategies as st

from cardcenter.core.db import transaction
from cardcenter.customers.services import open_keypad_account
from cardcenter.operators.models import LOCALES as OPERATOR_LOCALES
from cardcenter.receipts import content, escpos, labels, pdf, text
from cardcenter.receipts.model import (
    Amount,
    Item,
    Receipt,
    ReceiptKind,
    TokenKind,
    TokenLine,
    minor_units,
    receipt_for_sale,
    receipt_for_tokens,
)
from cardcenter.sales.desk import Desk
from cardcenter.tariffs.models import TariffKind
from cardcenter.tariffs.services import add_tariff, get_or_create_category
from cardcenter.tokens import services as tokens
from cardlayout.security.diversify import CardKeys

EN, ZH = "en", "zh_Hans_CN"
NOW = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)
DIGITS = "15298186767018462969"
GROUPED = "1529 8186 7670 1846 2969"

# Shaped as the services return them (sale_result of a sale added to a purchase the meter has not
# loaded, after a month without buying; vend with a rollover key change): see the tests at the
# end, which build receipts from the services' own results.
CARD_SALE: dict[str, Any] = {
    "sale": 2,
    "request_id": "349e8b629ccd4b8da81645789647e670",
    "kind": "sale",
    "status": "written",
    "purchase_count": 1,
    "tendered": "50.00",
    "fixed_charge": "15.00",
    "tax": "4.03",
    "credit": "30.97",
    "card_amount": "119.47",
    "added_to_pending": True,
    "created_at": "2026-02-14T09:00:00+00:00",
    "breakdown": {
        "tendered": 5000,
        "fixed_charge": 1500,
        "months": ["2026-01", "2026-02", "2026-03"],
        "tax": 403,
        "credit": 3097,
        "tax_rate": 1300,
        "paid_through_before": None,
        "tariff": "flat v1",
    },
    "customer_no": "100000000001",
    "meter_no": "000012345678",
    "card_serial": "5A00000000000001",
    "reconciliation": None,
}

VEND: dict[str, Any] = {
    "request_id": "pos-1",
    "replayed": False,
    "meter": "600727000000000009",
    "meter_no": "000000000009",
    "customer_no": "100000000001",
    "issued_at": "2026-03-10T09:30:00+00:00",
    "operator": "alice",
    "tables": "sample tables",
    "key_change": True,
    "tokens": [
        {
            "position": 1,
            "kind": "key_change",
            "what": "key change, section 1 of 2",
            "class": "management",
            "subclass": 3,
            "tid": None,
            "base_date": 1993,
            "digits": "31014808987916932001",
            "display": "3101 4808 9879 1693 2001",
        },
        {
            "position": 2,
            "kind": "key_change",
            "what": "key change, section 2 of 2",
            "class": "management",
            "subclass": 4,
            "tid": None,
            "base_date": 1993,
            "digits": "68124604576476190724",
            "display": "6812 4604 5764 7619 0724",
        },
        {
            "position": 3,
            "kind": "credit",
            "what": "credit 142.3 kWh",
            "class": "transfer",
            "subclass": 0,
            "tid": 6410010,
            "base_date": 2014,
            "digits": DIGITS,
            "display": GROUPED,
        },
    ],
    "sale": {
        "id": 1,
        "status": "delivered",
        "tariff": "home v1",
        "tendered": "100.00",
        "fixed_charge": "15.00",
        "months": ["2026-01", "2026-02", "2026-03"],
        "tax": "9.78",
        "credit": "75.22",
    },
    "energy": {
        "kwh": "142.3",
        "bought_kwh": "142.3",
        "month_before_kwh": "0.0",
        "unvended": "0.04",
        "basis": "flat 0.5283 a kWh",
    },
}


def card_receipt(**kw: Any) -> Receipt:
    return receipt_for_sale(
        CARD_SALE, site="Riverside hall", operator="alice", customer_name="Li Wei", **kw
    )


def token_receipt(**kw: Any) -> Receipt:
    return receipt_for_tokens(VEND, site="Riverside hall", customer_name="王小明", **kw)


def small_receipt(name: str = "José", reprinted_at: datetime | None = None) -> Receipt:
    """A one-token receipt small enough to spell out byte by byte."""
    return Receipt(
        kind=ReceiptKind.TOKEN_SALE,
        site="HQ",
        request_id="r-1",
        issued_at=NOW,
        operator="alice",
        customer_no="100000000001",
        customer_name=name,
        meter_no="000000000009",
        status="delivered",
        number=7,
        pan="600727000000000009",
        amounts=(Amount(Item.TENDERED, 1000), Amount(Item.CREDIT, 1000), Amount(Item.ENERGY, 189)),
        tokens=(TokenLine(DIGITS, TokenKind.CREDIT, "credit 18.9 kWh", tenths=189),),
        footer=("Thank you",),
        reprint=reprinted_at is not None,
        reprinted_at=reprinted_at,
    )


def page_text(document: bytes) -> str:
    """The text drawn on a PDF built with ``compress=False`` (the ``(...) Tj`` operands)."""
    assert b"/FlateDecode" not in document
    return "\n".join(m.decode("latin-1") for m in re.findall(rb"\((.*?)\) Tj", document))


# ---------------------------------------------------------------- numbers in two languages


def test_money_is_exact_and_locale_formatted() -> None:
    assert labels.money(1234567, EN) == "12,345.67"
    assert labels.money(1234567, ZH) == "12,345.67"
    assert labels.money(-5, EN) == "-0.05"
    assert labels.money(10**20 + 1, EN) == "1,000,000,000,000,000,000.01"  # a float loses this
    with pytest.raises(TypeError):
        labels.money(12.34, EN)  # type: ignore[arg-type]


def test_result_money_text_becomes_minor_units_without_floats() -> None:
    assert minor_units("12.34") == 1234
    assert minor_units("-0.05") == -5
    assert minor_units("10000000000000000000.01") == 10**21 + 1
    with pytest.raises(ValueError, match="more than 2 decimal places"):
        minor_units("1.005")
    with pytest.raises(TypeError):
        minor_units(12.34)  # type: ignore[arg-type]


def test_dates_months_and_rates_follow_the_locale() -> None:
    assert labels.when(NOW, EN, "Asia/Shanghai") == "Mar 10, 2026, 5:30:00 PM"
    assert labels.when(NOW, ZH, "Asia/Shanghai") == "2026年3月10日 17:30:00"
    assert labels.months(["2026-01", "2026-02", "2026-03"], EN) == "Jan - Mar 2026"
    assert labels.months(["2025-12", "2026-01"], ZH) == "2025年12月 - 2026年1月"
    assert labels.months(["2026-02"], ZH) == "2026年2月"
    assert labels.percent(1350, EN) == "13.5"
    with pytest.raises(ValueError, match="no time zone"):
        labels.when(NOW.replace(tzinfo=None), EN)
    with pytest.raises(ValueError, match="not 'fr'"):
        labels.label("date", "fr")


def test_receipts_speak_the_operators_languages_and_every_label_both() -> None:
    assert set(labels.LOCALES) == set(OPERATOR_LOCALES)
    assert all(set(texts) == set(labels.LOCALES) for texts in labels.LABELS.values())


# ---------------------------------------------------------------- the receipts


def test_card_sale_receipt_in_english() -> None:
    receipt = card_receipt(header=["City Power"])
    assert receipt.kind is ReceiptKind.CARD_SALE and receipt.number == 2
    assert receipt.customer_no == "100000000001" and receipt.card_serial == "5A00000000000001"
    lines = text.lines(receipt, width=32, locale=EN, tz="Asia/Shanghai")
    for expected in [
        "           City Power",
        "     CARD PURCHASE RECEIPT",
        "Receipt no.                    2",
        "Date    Feb 14, 2026, 5:00:00 PM",
        "Name                      Li Wei",
        "Card serial     5A00000000000001",
        "Tariff                   flat v1",
        "Purchase no.                   1",
        "Amount paid                50.00",
        "Fixed charge (Jan - Mar",
        "2026)                      15.00",
        "Tax (13%)                   4.03",
        "Credit                     30.97",
        "On card (with unloaded",
        "credit)                   119.47",
        "   Please keep this receipt.",
    ]:
        assert expected in lines
    assert not any("REPRINT" in line for line in lines)


def test_card_sale_receipt_in_chinese() -> None:
    lines = text.lines(card_receipt(), width=48, locale=ZH, tz="Asia/Shanghai")
    for expected in [
        "                  IC卡购买收据",
        "日期                      2026年2月14日 17:00:00",
        "户名                                      Li Wei",
        "实收金额                                   50.00",
        "固定费（2026年1月 - 3月）                  15.00",
        "税额（13%）                                 4.03",
        "写卡金额（含未到表金额）                  119.47",
    ]:
        assert expected in lines


def test_token_receipt_in_both_languages_lists_the_tokens_in_entry_order() -> None:
    receipt = token_receipt(tax_rate=1300)
    assert receipt.kind is ReceiptKind.TOKEN_SALE and receipt.pan == "600727000000000009"
    assert [t.kind for t in receipt.tokens] == ["key_change", "key_change", "credit"]
    english = text.lines(receipt, width=32, locale=EN)
    at = english.index("Enter the tokens in this order:")
    assert english[at + 1 : at + 7] == [
        "1. Key change, section 1 of 2",
        "    3101 4808 9879 1693 2001",
        "2. Key change, section 2 of 2",
        "    6812 4604 5764 7619 0724",
        "3. Credit 142.3 kWh",
        f"    {GROUPED}",
    ]
    assert "Energy                 142.3 kWh" in english
    assert "Name                      王小明" in english
    chinese = text.lines(receipt, width=32, locale=ZH)
    assert "1. 密钥更换，第1段（共2段）" in chinese and "3. 充值 142.3 kWh" in chinese
    assert "电量                   142.3 kWh" in chinese
    assert "税额（13%）                 9.78" in chinese


def test_engineering_token_receipt_has_no_money() -> None:
    result = copy.deepcopy(VEND)
    del result["sale"], result["energy"]
    result["tokens"] = [
        {**VEND["tokens"][2], "kind": "engineering", "what": "clear tamper condition",
         "class": "management", "subclass": 5},
    ]  # fmt: skip
    receipt = receipt_for_tokens(result, site="HQ", customer_name="Li", operator="Bob Smith")
    assert receipt.kind is ReceiptKind.ENGINEERING and receipt.number is None
    assert receipt.amounts == () and receipt.operator == "Bob Smith"
    lines = text.lines(receipt, width=48, locale=ZH)
    assert "工程令牌：clear tamper condition" in lines
    assert any(line.strip() == GROUPED for line in lines)


def test_a_sale_result_without_the_account_takes_it_by_keyword() -> None:
    replayed = {k: v for k, v in CARD_SALE.items() if k not in ("customer_no", "meter_no")}
    with pytest.raises(ValueError, match="give customer_no="):
        receipt_for_sale(replayed, site="HQ", operator="a", customer_name="b")
    receipt = receipt_for_sale(replayed, site="HQ", operator="a", customer_name="b",
                               customer_no="100000000001", meter_no="000012345678")  # fmt: skip
    assert receipt.meter_no == "000012345678"
    with pytest.raises(ValueError, match="not 999"):
        card_receipt(meter_no="999")
    with pytest.raises(ValueError, match="quote"):
        receipt_for_sale({**CARD_SALE, "status": "quote", "trial": True}, site="HQ",
                         operator="a", customer_name="b")  # fmt: skip


def test_a_reversed_sale_says_so() -> None:
    receipt = receipt_for_sale({**CARD_SALE, "status": "reversed"}, site="HQ", operator="a",
                               customer_name="b")  # fmt: skip
    assert "Status                  REVERSED" in text.lines(receipt, width=32)
    assert "状态                      已冲正" in text.lines(receipt, width=32, locale=ZH)


def test_a_reprint_is_the_same_receipt_marked() -> None:
    original = token_receipt()
    again = original.reprinted(NOW + timedelta(days=1))
    assert again.reprint and again.tokens == original.tokens
    lines = text.lines(again, width=32, locale=EN)
    assert "        *** REPRINT ***" in lines and "    Mar 11, 2026, 9:30:00 AM" in lines
    assert "      *** 补打 REPRINT ***" in text.lines(again, width=32, locale=ZH)
    with pytest.raises(ValueError, match="reprint time"):
        Receipt(**{**vars(original), "reprint": True})
    with pytest.raises(ValueError, match="no time zone"):
        original.reprinted(datetime(2026, 3, 11))


def test_a_receipt_needs_room_for_a_token() -> None:
    with pytest.raises(ValueError, match="at least 24 columns"):
        text.lines(small_receipt(), width=20)
    with pytest.raises(ValueError, match="58 or 80"):
        escpos.render(small_receipt(), paper=76)


# ---------------------------------------------------------------- the digits in fours, everywhere


@pytest.mark.parametrize("locale", [EN, ZH])
def test_token_digits_are_grouped_in_fours_on_every_format(locale: str) -> None:
    receipt = token_receipt()
    for width in (32, 48):
        assert GROUPED in text.text(receipt, width=width, locale=locale)
    for paper in (58, 80):
        printed = escpos.render(receipt, paper=paper, locale=locale)
        assert GROUPED.encode() in printed
        assert DIGITS.encode() not in printed
    document = pdf.render(receipt, locale=locale, compress=False)
    assert GROUPED in page_text(document)
    assert "3101 4808 9879 1693 2001" in page_text(document)


# ---------------------------------------------------------------- widths


NAMES = st.one_of(
    st.text(max_size=60),
    st.text(alphabet="王小明李伟张三丰欧阳娜娜ÉéÜabcXYZ 　-·（）", max_size=60),
    st.text(alphabet=st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF), max_size=40),
)


@settings(max_examples=150, deadline=None)
@given(
    name=NAMES,
    site=NAMES,
    header=st.lists(NAMES, max_size=3),
    operator=NAMES,
    tariff=NAMES,
    amounts=st.lists(st.integers(-(10**15), 10**15), min_size=4, max_size=4),
    width=st.sampled_from([32, 48]),
    locale=st.sampled_from(labels.LOCALES),
)
def test_no_line_is_wider_than_the_paper(
    name: str,
    site: str,
    header: list[str],
    operator: str,
    tariff: str,
    amounts: list[int],
    width: int,
    locale: str,
) -> None:
    tendered, fixed, tax, credit = amounts
    receipt = Receipt(
        kind=ReceiptKind.TOKEN_SALE,
        site=site,
        request_id="0123456789abcdef0123456789abcdef",
        issued_at=NOW,
        operator=operator,
        customer_no="100000000001",
        customer_name=name,
        meter_no="000000000009",
        status="delivered",
        number=123456789,
        header=tuple(header),
        pan="600727000000000009",
        tariff=tariff,
        amounts=(
            Amount(Item.TENDERED, tendered),
            Amount(Item.FIXED_CHARGE, fixed, months=("2025-11", "2026-03")),
            Amount(Item.TAX, tax, rate=1350),
            Amount(Item.CREDIT, credit),
            Amount(Item.ENERGY, abs(credit)),
        ),
        tokens=(TokenLine(DIGITS, TokenKind.CREDIT, "credit", tenths=abs(credit)),),
        footer=(name, site),
    ).reprinted(NOW)
    lines = text.lines(receipt, width=width, locale=locale)
    assert all(text.display_width(line) <= width for line in lines), lines
    assert not any(ch in line for line in lines for ch in "\n\r\t\x1b")
    paper = {32: 58, 48: 80}[width]
    plan = escpos.layout(receipt, paper=paper, locale=locale)
    measure = escpos.gb_width if plan.code_page is escpos.CodePage.GB18030 else text.display_width
    assert all(measure(line.text) <= plan.columns for line in plan.lines)
    printed = escpos.encode(plan)
    assert printed.startswith(escpos.INIT) and printed.endswith(escpos.CUT)


def test_wide_characters_count_two_columns() -> None:
    assert text.display_width("王小明") == 6
    assert text.display_width("José") == 4
    assert text.display_width("e\u0301") == 1
    assert text.pair("户名", "王小明", 12) == ["户名  王小明"]
    assert text.wrap("欧阳娜娜欧阳娜娜", 10) == ["欧阳娜娜欧", "阳娜娜"]


def test_control_characters_never_reach_the_printer() -> None:
    receipt = small_receipt(name="Bad\x1b@\nName\u200b")
    assert b"Bad @ Name\n" in escpos.render(receipt)
    assert content.clean("a\tb\u200bc") == "a bc"


# ---------------------------------------------------------------- ESC/POS


def test_escpos_known_answer() -> None:
    bold = b"\x1bE\x01\x1d!\x01"  # ESC E 1, GS ! 1: bold, double height
    normal = b"\x1bE\x00\x1d!\x00"
    rule = b"-" * 32 + b"\n"
    expected = b"".join(
        [
            b"\x1b@",  # ESC @: initialise
            b"\x1c.\x1bt\x00",  # FS .: Chinese mode off; ESC t 0: code page 437
            bold,
            b"               HQ\n",
            normal,
            rule,
            bold,
            b"     TOKEN PURCHASE RECEIPT\n",
            normal,
            b"Receipt no.                    7\n",
            b"Date    Mar 10, 2026, 9:30:00 AM\n",
            b"Operator                   alice\n",
            rule,
            b"Customer no.        100000000001\n",
            b"Name                        Jos\x82\n",  # e acute in CP437
            b"Meter no.           000000000009\n",
            b"Meter PAN     600727000000000009\n",
            rule,
            b"Amount paid                10.00\n",
            b"Credit                     10.00\n",
            b"Energy                  18.9 kWh\n",
            rule,
            bold,
            b"             TOKENS\n",
            normal,
            b"Credit 18.9 kWh\n",
            bold,
            b"    1529 8186 7670 1846 2969\n",
            normal,
            rule,
            b"Ref.                         r-1\n",
            b"           Thank you\n",
            b"\x1dVB\x00",  # GS V 66 0: feed to the cutter, partial cut
        ]
    )
    assert escpos.render(small_receipt(), paper=58, locale=EN) == expected


def test_escpos_chinese_uses_gb18030_in_chinese_mode() -> None:
    printed = escpos.render(small_receipt(), paper=80, locale=ZH)
    assert printed.startswith(b"\x1b@\x1c&")
    assert "令牌购买收据".encode("gb18030") in printed
    assert "José".encode("gb18030") in printed
    assert printed.endswith(b"\x1dVB\x00")
    # a Chinese name on an English receipt needs Chinese mode too
    assert escpos.layout(small_receipt(name="王小明"), locale=EN).code_page == "gb18030"
    assert escpos.layout(small_receipt(), locale=EN).code_page == "cp437"


def test_escpos_80mm_uses_48_columns() -> None:
    plan = escpos.layout(token_receipt(), paper=80, locale=EN)
    assert plan.columns == 48 and "-" * 48 in [line.text for line in plan.lines]
    strong = [line.text.strip() for line in plan.lines if line.strong]
    assert GROUPED in strong and "TOKEN PURCHASE RECEIPT" in strong


# ---------------------------------------------------------------- PDF


def test_pdf_holds_the_receipt_and_marks_a_reprint() -> None:
    original = pdf.render(small_receipt(), locale=EN, compress=False)
    assert original.startswith(b"%PDF-")
    drawn = page_text(original)
    assert GROUPED in drawn and "TOKEN PURCHASE RECEIPT" in drawn and "10.00" in drawn
    assert "REPRINT" not in drawn
    again = page_text(pdf.render(small_receipt(reprinted_at=NOW), locale=EN, compress=False))
    assert "REPRINT" in again and "*** REPRINT ***" in again
    # the same receipt gives the same bytes (no creation time in them)
    assert pdf.render(small_receipt()) == pdf.render(small_receipt())


def test_pdf_in_chinese_uses_the_builtin_cid_font() -> None:
    document = pdf.render(token_receipt().reprinted(NOW), locale=ZH, compress=False)
    assert b"/STSong-Light" in document and b"/FontFile" not in document  # nothing embedded
    assert GROUPED in page_text(document) and "REPRINT" in page_text(document)


def test_compressed_pdf_streams_hold_the_digits() -> None:
    document = pdf.render(token_receipt(), locale=EN)
    assert b"/ASCII85Decode /FlateDecode" in document  # reportlab's default filters
    streams = re.findall(rb"stream\r?\n(.*?)~>\s*endstream", document, re.S)
    drawn = b"".join(zlib.decompress(base64.a85decode(s)) for s in streams)
    assert GROUPED.encode() in drawn


# ---------------------------------------------------------------- from the services' own results


def test_receipt_of_a_real_card_sale(db: Database, keys: CardKeys) -> None:
    world = World(db, keys, tax_rate=1300)
    card = world.blank()
    opening = world.issue(card, 10000)
    world.meter.insert(card)
    world.later(40)
    sale = world.sell(card, 5000)
    first = receipt_for_sale(opening, site="HQ", operator="alice", customer_name="Li Wei")
    assert first.kind is ReceiptKind.OPENING and first.purchase_count == 1
    receipt = receipt_for_sale(sale, site="HQ", operator="alice", customer_name="Li Wei")
    assert receipt.number == sale["sale"] and receipt.card_serial == sale["card_serial"]
    paid = {a.item: a.value for a in receipt.amounts}
    assert paid[Item.TENDERED] == 5000 and paid[Item.TAX] + paid[Item.CREDIT] == 5000
    assert [a.rate for a in receipt.amounts if a.item is Item.TAX] == [1300]
    for locale in labels.LOCALES:
        assert "5A00000000000001" in text.text(receipt, width=32, locale=locale)
        assert escpos.render(receipt, locale=locale).endswith(escpos.CUT)


def test_receipt_of_a_real_vend_and_its_reprint(db: Database, keys: CardKeys) -> None:
    with transaction(db.sessions) as session:
        category = get_or_create_category(session, "residential", "Residential")
        add_tariff(session, "home", TariffKind.FLAT, {"rate_prices": [5283]},
                   category="residential", active_from=NOW - timedelta(days=60),
                   tax_rate=1300, fixed_monthly=500, now=NOW - timedelta(days=60))  # fmt: skip
        open_keypad_account(session, name="Thandi", category_id=category.id,
                            pan="600727000000000009", sgc="123456", ti=1, krn=1, kt=2,
                            base_date=1993, ea="07", dkga="04",
                            now=NOW - timedelta(days=40))  # fmt: skip
    desk = Desk(db.sessions, keys, operator="alice", site="HQ", clock=lambda: NOW)
    result = tokens.vend(desk, "600727000000000009", 10000, "pos-1")
    receipt = receipt_for_tokens(result, site="HQ", customer_name="Thandi", tax_rate=1300)
    assert [t.digits for t in receipt.tokens] == [t["digits"] for t in result["tokens"]]
    assert [t.grouped for t in receipt.tokens] == [t["display"] for t in result["tokens"]]
    assert [t.section for t in receipt.tokens] == [1, 2, 0]
    assert sum(a.value for a in receipt.amounts if a.item in (Item.FIXED_CHARGE, Item.TAX,
               Item.CREDIT)) == 10000  # fmt: skip
    again = tokens.reprint(db.sessions, sale_id=result["sale"]["id"])
    reprinted = receipt_for_tokens(
        again, site="HQ", customer_name="Thandi", tax_rate=1300, reprinted_at=NOW + timedelta(1)
    )
    assert reprinted.tokens == receipt.tokens and reprinted.amounts == receipt.amounts
    document = page_text(pdf.render(reprinted, locale=ZH, compress=False))
    assert all(t["display"] in document for t in result["tokens"]) and "REPRINT" in document
