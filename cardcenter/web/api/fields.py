"""Reading a request's JSON body: every field checked, every refusal naming its field.

The rules are the OpenAPI document's (:mod:`cardcenter.web.api.openapi`
takes its patterns from here, so the two cannot drift): money is a decimal
string in currency units (``"100"``, ``"100.50"``), a request id 1 to 48
characters of ``A-Z a-z 0-9 . _ : -``, a PAN 18 digits, bytes upper- or
lower-case hex of their exact length. A field the operation does not take
is refused too: a misspelt optional field would otherwise be silently lost.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from flask import request

from cardcenter.web.api.errors import ApiError, invalid
from cardcenter.web.api.terminal import FILE_NAMES
from cardcenter.web.i18n import _, _l
from cardlayout.files import Utility
from cardlayout.security.mac import SERIAL_SIZE

MONEY = r"^(0*[1-9][0-9]{0,6}(\.[0-9]{1,2})?|0+\.(0[1-9]|[1-9][0-9]?))$"
"""Above 0, at most 9999999.99, at most two decimals (leading zeros allowed)."""
MAX_MONEY = "9999999.99"
MAX_MONEY_TEXT = 16
REQUEST_ID = r"^[A-Za-z0-9._:-]{1,48}$"
PAN = r"^[0-9]{18}$"
MAX_REASON = 400
FREE_TEXT = r"^[^\x00-\x1f\x7f]*$"
"""Free text (a reason): anything but control characters."""
CHALLENGE_SIZE = 8
READ_BACK_SIZE = 30
"""The purse (22 bytes) and the card's response MAC (8)."""
WRITE_BACK_READ_SIZE = 72
"""The write-back (64 bytes) and the card's response MAC (8): a reversal's extra read-back."""


def hex_pattern(size: int) -> str:
    return f"^[0-9A-Fa-f]{{{2 * size}}}$"


@dataclass(frozen=True)
class CardReadingInput:
    """A card as the terminal read it: its serial, its application, its files by SFI."""

    serial: bytes
    utility: Utility
    files: dict[int, bytearray]


class Body:
    """The request's JSON object, read field by field; ``done()`` refuses what was not read."""

    def __init__(self, data: dict[str, Any], prefix: str = "") -> None:
        self.data = data
        self.prefix = prefix
        self.read: set[str] = set()

    @classmethod
    def of_request(cls) -> Body:
        if not request.mimetype or request.mimetype != "application/json":
            raise ApiError(
                "unsupported_media_type", _("Send the request body as application/json.")
            )
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            raise invalid("", _("The body must be one JSON object."))
        return cls(data)

    def name(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def _get(self, key: str, required: bool) -> Any:
        self.read.add(key)
        if key not in self.data or self.data[key] is None:
            if required:
                raise invalid(self.name(key), _("%(field)s is missing.", field=self.name(key)))
            return None
        return self.data[key]

    def _text(self, key: str, required: bool) -> str | None:
        value = self._get(key, required)
        if value is None:
            return None
        if not isinstance(value, str):
            raise invalid(self.name(key), _("%(field)s must be a string.", field=self.name(key)))
        return value

    def matching(
        self, key: str, pattern: str, what: object, *, required: bool = True
    ) -> str | None:
        """The text field ``key`` if it matches ``pattern``; else refused, saying ``what`` to give.

        ``what`` is translated only then: pass it lazily (``_l``), as a
        request that is in order, nearly every one, needs no translation.
        """
        value = self._text(key, required)
        if value is not None and not re.fullmatch(pattern, value):
            raise invalid(self.name(key), _("%(field)s: %(what)s", field=self.name(key), what=what))
        return value

    def amount(self, key: str = "amount") -> int:
        """Money in currency units (above 0, at most two decimals) as minor units."""
        text = self.matching(
            key,
            MONEY,
            _l(
                'give the amount paid as a decimal string above 0, e.g. "100" or "100.50", '
                "at most %(max)s",
                max=MAX_MONEY,
            ),
        )
        assert text is not None
        if len(text) > MAX_MONEY_TEXT:
            raise invalid(
                self.name(key),
                _(
                    "%(field)s: give at most %(n)d characters",
                    field=self.name(key),
                    n=MAX_MONEY_TEXT,
                ),
            )
        whole, _dot, cents = text.partition(".")
        return int(whole) * 100 + int(cents.ljust(2, "0"))

    def request_id(self, key: str = "request_id") -> str:
        found = self.matching(
            key,
            REQUEST_ID,
            _l("give 1 to 48 characters: letters, digits and . _ : -"),
        )
        assert found is not None
        return found

    def pan(self, key: str = "meter") -> str:
        found = self.matching(key, PAN, _l("give the keypad meter's PAN: its 18 digits"))
        assert found is not None
        return found

    def hex_bytes(self, key: str, size: int) -> bytes:
        found = self.hex_bytes_or_none(key, size, required=True)
        assert found is not None
        return found

    def hex_bytes_or_none(self, key: str, size: int, *, required: bool = False) -> bytes | None:
        """``size`` bytes given as hex, or None when the field is absent (and not required)."""
        found = self.matching(
            key,
            hex_pattern(size),
            _l("give %(n)d bytes as %(hex)d hex digits", n=size, hex=2 * size),
            required=required,
        )
        return None if found is None else bytes.fromhex(found)

    def text(self, key: str, max_length: int) -> str:
        value = self._text(key, required=False) or ""
        if len(value) > max_length or not re.fullmatch(FREE_TEXT, value):
            raise invalid(
                self.name(key),
                _(
                    "%(field)s: give at most %(n)d characters, no control characters",
                    field=self.name(key),
                    n=max_length,
                ),
            )
        return value

    def section(self, key: str) -> Body:
        value = self._get(key, required=True)
        if not isinstance(value, dict):
            raise invalid(
                self.name(key), _("%(field)s must be a JSON object.", field=self.name(key))
            )
        return Body(value, prefix=f"{self.name(key)}.")

    def card(self, key: str = "card") -> CardReadingInput:
        """The card reading: ``serial``, ``utility`` (default electricity), ``files``."""
        card = self.section(key)
        serial = card.hex_bytes("serial", SERIAL_SIZE)
        utility_name = card.matching(
            "utility",
            "^(" + "|".join(u.value for u in Utility) + ")$",
            _l("give one of %(names)s", names=", ".join(u.value for u in Utility)),
            required=False,
        )
        files_in = card.section("files")
        files: dict[int, bytearray] = {}
        for name, card_file in FILE_NAMES.items():
            files[card_file.sfi] = bytearray(files_in.hex_bytes(name, card_file.size))
        files_in.done()
        card.done()
        return CardReadingInput(serial, Utility(utility_name or Utility.ELECTRICITY.value), files)

    def done(self) -> None:
        """Refuse a field no operation reads (a misspelling would otherwise be ignored)."""
        unknown = sorted(set(self.data) - self.read)
        if unknown:
            raise invalid(
                self.name(unknown[0]),
                _("%(field)s is not a field of this operation.", field=self.name(unknown[0])),
            )
