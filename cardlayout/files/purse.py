"""EF02 purse (docs/card.md 3.2): the credit of one purchase, the commit of a sale.

The centre writes the purse last; the meter loads ``amount`` only if the
purchase count is its own count plus one, and only if the purse MAC (computed
by the centre over :meth:`PurseFile.mac_message`, docs/card.md 6.3) verifies.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Self

from cardlayout.codec import decode_uint, encode_uint
from cardlayout.files.base import (
    MAC_SIZE,
    BodyReader,
    CardFile,
    Example,
    check_mac,
    expect_type,
)

__all__ = ["PURSE", "Purse", "PurseFile"]

NO_MAC = bytes(MAC_SIZE)


@dataclass(frozen=True, kw_only=True)
class Purse:
    """The content of EF02: ``amount`` in minor units, the purchase count, the MAC."""

    amount: int
    purchase_count: int
    mac: bytes = NO_MAC

    def with_mac(self, mac: bytes) -> Self:
        """Return a copy carrying ``mac`` (computed over the MAC message)."""
        return dataclasses.replace(self, mac=mac)


class PurseFile(CardFile[Purse]):
    """Codec of EF02 (body 16 B)."""

    def encode_body(self, value: Purse) -> bytes:
        return self.mac_message(value) + check_mac(value.mac)

    def mac_message(self, value: Purse) -> bytes:
        """The body without its trailing MAC: what the purse MAC covers."""
        v = expect_type(value, Purse, field="purse")
        return encode_uint(v.amount, 4, field="amount") + encode_uint(
            v.purchase_count, 4, field="purchase_count"
        )

    def decode_body(self, body: bytes) -> Purse:
        r = BodyReader(body)
        return Purse(
            amount=decode_uint(r.take(4), field="amount"),
            purchase_count=decode_uint(r.take(4), field="purchase_count"),
            mac=r.take(MAC_SIZE),
        )


PURSE = PurseFile(
    name="purse",
    sfi=2,
    body_size=16,
    examples=(
        Example(
            Purse(amount=10_000, purchase_count=1, mac=bytes.fromhex("0123456789abcdef")),
            "68"  # start
            "02"  # cmd = SFI 2
            "0010"  # body length 16
            "00002710"  # 0 amount 10000 minor units (100.00), binary
            "00000001"  # 4 purchase count 1
            "0123456789abcdef"  # 8 purse MAC
            "0a"  # CS = (02 + 00 + 10 + 27 + 10 + 01 + 01+23+45+67+89+ab+cd+ef) mod 256
            "16",  # end
            "first purchase, 100.00",
        ),
        Example(
            Purse(amount=123_456, purchase_count=42, mac=bytes.fromhex("f0e1d2c3b4a59687")),
            "68"  # start
            "02"  # cmd = SFI 2
            "0010"  # body length 16
            "0001e240"  # 0 amount 123456 (1234.56)
            "0000002a"  # 4 purchase count 42
            "f0e1d2c3b4a59687"  # 8 purse MAC
            "3b"  # CS
            "16",  # end
            "42nd purchase, 1234.56",
        ),
    ),
)
"""EF02, SFI 2, 22 bytes."""
