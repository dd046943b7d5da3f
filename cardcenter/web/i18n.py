"""Languages: English and Simplified Chinese, chosen per operator; money and dates by locale.

The language is the logged-in operator's (``operators.locale``, changed from
the menu); before log-in, the one chosen on the log-in page (``?lang=``),
else the browser's preference. Strings are marked with ``_()`` in Python
and ``{{ _("...") }}`` in templates and translated in
``translations/zh_Hans_CN/LC_MESSAGES/messages.po``; the ``.po`` files are
the source, compiled to ``.mo`` when the application starts if the ``.mo``
is missing or older (so nobody commits or forgets a binary). To add
strings: mark them, then ``pybabel extract -F cardcenter/web/babel.cfg -k _l
-o /tmp/messages.pot cardcenter/web`` and ``pybabel update -i
/tmp/messages.pot -d cardcenter/web/translations --no-location``, and
translate the new entries (or add the ``msgid``/``msgstr`` pairs by hand).

Jinja filters for every page: ``{{ sale.tendered|money }}`` (integer minor
units as locale-formatted decimal, ``1,234.50``) and ``{{ sale.created_at|
datetime }}`` (an aware time in the hall's time zone, the locale's medium
format; ``|datetime("short")`` etc.), ``|date`` likewise.
"""

from __future__ import annotations

import os
import tempfile
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from flask import Flask, g, request, session
from flask_babel import Babel, format_date, format_datetime, format_decimal, gettext, lazy_gettext

from cardcenter.operators.models import LOCALES

TRANSLATIONS = Path(__file__).resolve().parent / "translations"
LANGUAGE_NAMES = {"en": "English", "zh_Hans_CN": "简体中文"}
SESSION_KEY = "locale"

_l = lazy_gettext
"""Translated when used (for text made at import time: menu labels, role names)."""


def _(text: str, **variables: Any) -> str:
    """``text`` in the request's language, ``%(name)s`` placeholders filled from ``variables``."""
    return str(gettext(text, **variables))


def select_locale() -> str:
    """The operator's language; before log-in the chosen one, else the browser's."""
    operator = g.get("operator")
    if operator is not None and operator.locale in LOCALES:
        return str(operator.locale)
    chosen = session.get(SESSION_KEY)
    if chosen in LOCALES:
        return str(chosen)
    for language in request.accept_languages.values():
        code = language.lower()
        if code.startswith("zh"):
            return "zh_Hans_CN"
        if code.startswith("en"):
            return "en"
    return "en"


def money(minor: int | None) -> str:
    """Integer minor units as the locale writes money amounts (two decimals, grouping)."""
    if minor is None:
        return ""
    return str(format_decimal(Decimal(minor).scaleb(-2), format="#,##0.00"))


def datetime_filter(value: datetime | None, format: str = "medium") -> str:
    """An aware time in the hall's time zone, as the locale writes it."""
    if value is None:
        return ""
    return str(format_datetime(value, format))


def date_filter(value: datetime | None, format: str = "medium") -> str:
    if value is None:
        return ""
    return str(format_date(value, format))


def compile_translations(source: Path = TRANSLATIONS, target: Path | None = None) -> Path:
    """Compile each locale's ``.po`` files into its ``messages.mo``; the directory used.

    A locale's catalogue is ``messages.po`` plus one ``.po`` per part of the
    application (``customers.po``, ``api.po``...), merged in that order, so
    the parts are translated in files of their own. It is compiled when
    missing or older than any of them. The ``.mo`` files go next to the
    ``.po`` files, or under ``target`` when the package directory cannot be
    written (an installed package). Written to a temporary file and renamed,
    so two processes starting at once never read half a catalogue.
    """
    directory = source
    for messages in sorted(source.glob("*/LC_MESSAGES")):
        try:
            _compile_locale(messages, messages / "messages.mo")
        except OSError:
            if target is None:
                raise
            directory = target
            break
    if directory is target and target is not None:
        for messages in sorted(source.glob("*/LC_MESSAGES")):
            _compile_locale(messages, target / messages.relative_to(source) / "messages.mo")
    return directory


def _compile_locale(messages: Path, mo: Path) -> None:
    parts = sorted(messages.glob("*.po"), key=lambda po: (po.name != "messages.po", po.name))
    if not parts:
        return
    if mo.exists() and all(mo.stat().st_mtime >= po.stat().st_mtime for po in parts):
        return
    locale = messages.parent.name
    catalogue = None
    for po in parts:
        with po.open("rb") as source:
            part = read_po(source, locale=locale)
        if catalogue is None:
            catalogue = part
            continue
        for message in part:
            if message.id:
                catalogue[message.id] = message
    assert catalogue is not None
    mo.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=mo.parent, prefix=".mo-")
    try:
        with os.fdopen(fd, "wb") as out:
            write_mo(out, catalogue)
        os.replace(temp, mo)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def init_app(app: Flask, *, timezone: str, data_dir: Path) -> None:
    directory = compile_translations(TRANSLATIONS, data_dir / "translations")
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(directory)
    app.config["BABEL_DEFAULT_LOCALE"] = "en"
    app.config["BABEL_DEFAULT_TIMEZONE"] = timezone
    Babel(app, locale_selector=select_locale)
    app.jinja_env.filters["money"] = money
    app.jinja_env.filters["datetime"] = datetime_filter
    app.jinja_env.filters["date"] = date_filter
    app.jinja_env.globals["LANGUAGE_NAMES"] = LANGUAGE_NAMES
