"""EF05 write-back (docs/card.md 3.4): what the meter reports at every insertion.

The meter writes it, MACs it (over :meth:`WriteBackFile.mac_message`,
docs/card.md 6.3) and the centre reads and reconciles it, then clears it. A
cleared write-back (body all zero) decodes to ``None``: the purchase-count
rule (DESIGN.md 3) needs "empty" to be a value, not an error.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Self

from cardlayout.codec import (
    TimeFormat,
    decode_bcd,
    decode_digits,
    decode_time,
    decode_uint,
    encode_bcd,
    encode_digits,
    encode_time,
    encode_uint,
)
from cardlayout.files.base import (
    MAC_SIZE,
    BodyReader,
    CardFile,
    Example,
    check_mac,
    decode_enum,
    decode_flags,
    encode_enum,
    encode_flags,
    expect_type,
)
from cardlayout.files.parameters import UserType

__all__ = [
    "NO_STATUS",
    "WRITE_BACK",
    "InsertionResult",
    "MeterStatus",
    "WriteBack",
    "WriteBackFile",
]

NO_MAC = bytes(MAC_SIZE)


class MeterStatus(enum.IntFlag):
    """Meter state bits (EF05 meter status, low byte of the EF06 status word)."""

    RELAY_OPEN = 1 << 0
    ALARM1 = 1 << 1
    ALARM2 = 1 << 2
    OVERDRAFT = 1 << 3
    TAMPER = 1 << 4
    LOAD_LIMIT_TRIP = 1 << 5


NO_STATUS = MeterStatus(0)


class InsertionResult(enum.IntEnum):
    """What the meter did with the card at this insertion."""

    LOADED = 0
    NOTHING_TO_LOAD = 1
    """Card count equals meter count."""
    COUNT_LOWER = 2
    WRITE_BACK_NOT_EMPTY = 3
    COUNT_TOO_HIGH = 4
    HOARDING_LIMIT = 5
    WRONG_METER = 6
    WRONG_CUSTOMER = 7
    WRONG_CARD = 8
    PURSE_MAC_BAD = 9
    PARAMETERS_ONLY = 10
    READ_ONLY = 11


@dataclass(frozen=True, kw_only=True)
class WriteBack:
    """The content of a written EF05 (a cleared one is ``None``).

    ``remaining_amount`` and ``overdraft_used`` are minor units;
    ``purchase_count`` is the last count the meter loaded.
    """

    user_type: UserType
    ct_ratio: int
    pt_ratio: int
    meter_no: str
    customer_no: str
    remaining_amount: int
    purchase_count: int
    insertion_result: InsertionResult
    written_at: datetime
    overdraft_used: int = 0
    illegal_card_count: int = 0
    meter_status: MeterStatus = NO_STATUS
    mac: bytes = NO_MAC

    def with_mac(self, mac: bytes) -> Self:
        """Return a copy carrying ``mac`` (computed over the MAC message)."""
        return dataclasses.replace(self, mac=mac)


class WriteBackFile(CardFile[WriteBack | None]):
    """Codec of EF05 (body 58 B); ``None`` is the cleared write-back."""

    def encode_body(self, value: WriteBack | None) -> bytes:
        if value is None:
            return bytes(self.body_size)
        return self.mac_message(value) + check_mac(value.mac)

    def mac_message(self, value: WriteBack) -> bytes:
        """The body without its trailing MAC: what the write-back MAC covers."""
        v = expect_type(value, WriteBack, field="write_back")
        return b"".join(
            [
                encode_enum(UserType, v.user_type, field="user_type"),  # 0
                encode_bcd(v.ct_ratio, 3, field="ct_ratio", minimum=1),  # 1
                encode_bcd(v.pt_ratio, 3, field="pt_ratio", minimum=1),  # 4
                encode_digits(v.meter_no, 6, field="meter_no"),  # 7
                encode_digits(v.customer_no, 6, field="customer_no"),  # 13
                encode_uint(v.remaining_amount, 4, field="remaining_amount"),  # 19
                encode_uint(v.purchase_count, 4, field="purchase_count"),  # 23
                encode_uint(v.overdraft_used, 4, field="overdraft_used"),  # 27
                encode_uint(v.illegal_card_count, 2, field="illegal_card_count"),  # 31
                encode_flags(MeterStatus, v.meter_status, 1, field="meter_status"),  # 33
                encode_enum(InsertionResult, v.insertion_result, field="insertion_result"),  # 34
                encode_time(v.written_at, TimeFormat.SECONDS, field="written_at"),  # 35
                bytes(9),  # 41 reserved
            ]
        )

    def decode_body(self, body: bytes) -> WriteBack | None:
        if not any(body):
            return None
        r = BodyReader(body)
        user_type = decode_enum(UserType, r.byte(), field="user_type")
        ct_ratio = decode_bcd(r.take(3), field="ct_ratio", minimum=1)
        pt_ratio = decode_bcd(r.take(3), field="pt_ratio", minimum=1)
        meter_no = decode_digits(r.take(6), field="meter_no")
        customer_no = decode_digits(r.take(6), field="customer_no")
        remaining_amount = decode_uint(r.take(4), field="remaining_amount")
        purchase_count = decode_uint(r.take(4), field="purchase_count")
        overdraft_used = decode_uint(r.take(4), field="overdraft_used")
        illegal_card_count = decode_uint(r.take(2), field="illegal_card_count")
        meter_status = decode_flags(MeterStatus, r.byte(), field="meter_status")
        result = decode_enum(InsertionResult, r.byte(), field="insertion_result")
        written_at = decode_time(r.take(6), TimeFormat.SECONDS, field="written_at")
        r.reserved(9)
        return WriteBack(
            user_type=user_type,
            ct_ratio=ct_ratio,
            pt_ratio=pt_ratio,
            meter_no=meter_no,
            customer_no=customer_no,
            remaining_amount=remaining_amount,
            purchase_count=purchase_count,
            overdraft_used=overdraft_used,
            illegal_card_count=illegal_card_count,
            meter_status=meter_status,
            insertion_result=result,
            written_at=written_at,
            mac=r.take(MAC_SIZE),
        )


WRITE_BACK = WriteBackFile(
    name="write-back",
    sfi=5,
    body_size=58,
    examples=(
        Example(
            WriteBack(
                user_type=UserType.TOU_STEPPED,
                ct_ratio=1,
                pt_ratio=1,
                meter_no="000012345678",
                customer_no="310101000042",
                remaining_amount=12_345,
                purchase_count=7,
                illegal_card_count=1,
                meter_status=MeterStatus.ALARM1,
                insertion_result=InsertionResult.LOADED,
                written_at=datetime(2025, 3, 14, 15, 9, 26, tzinfo=UTC),
                mac=bytes.fromhex("1122334455667788"),
            ),
            "68"  # start
            "05"  # cmd = SFI 5
            "003a"  # body length 58
            "04"  # 0 user type 4, TOU + stepped
            "000001"  # 1 CT ratio 1, BCD
            "000001"  # 4 PT ratio 1
            "000012345678"  # 7 meter number
            "310101000042"  # 13 customer number
            "00003039"  # 19 remaining amount 12345 (123.45), binary
            "00000007"  # 23 purchase count loaded 7
            "00000000"  # 27 overdraft used 0
            "0001"  # 31 illegal-card count 1
            "02"  # 33 meter status: b1 alarm 1
            "00"  # 34 insertion result 00 loaded
            "250314150926"  # 35 write-back time 2025-03-14 15:09:26 UTC
            "000000000000000000"  # 41 reserved
            "1122334455667788"  # 50 write-back MAC
            "25"  # CS = (05 + 00 + 3a + body bytes) mod 256 = 1317 mod 256
            "16",  # end
            "a purchase loaded",
        ),
        Example(
            WriteBack(
                user_type=UserType.SINGLE_RATE,
                ct_ratio=50,
                pt_ratio=1,
                meter_no="000087654321",
                customer_no="000000000000",
                remaining_amount=100_000,
                purchase_count=3,
                overdraft_used=500,
                illegal_card_count=2,
                meter_status=MeterStatus.RELAY_OPEN | MeterStatus.OVERDRAFT,
                insertion_result=InsertionResult.WRONG_METER,
                written_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
                mac=bytes.fromhex("a1b2c3d4e5f60718"),
            ),
            "68"  # start
            "05"  # cmd = SFI 5
            "003a"  # body length 58
            "01"  # 0 user type 1, single rate
            "000050"  # 1 CT ratio 50
            "000001"  # 4 PT ratio 1
            "000087654321"  # 7 meter number
            "000000000000"  # 13 customer number (meter not opened)
            "000186a0"  # 19 remaining amount 100000 (1000.00)
            "00000003"  # 23 purchase count loaded 3
            "000001f4"  # 27 overdraft used 500 (5.00)
            "0002"  # 31 illegal-card count 2
            "09"  # 33 meter status: b3 overdraft, b0 relay open
            "06"  # 34 insertion result 06 wrong meter
            "260102030405"  # 35 write-back time 2026-01-02 03:04:05 UTC
            "000000000000000000"  # 41 reserved
            "a1b2c3d4e5f60718"  # 50 write-back MAC
            "2a"  # CS
            "16",  # end
            "a card of another meter refused",
        ),
        Example(
            None,
            "".join(
                (
                    "68",  # start
                    "05",  # cmd = SFI 5
                    "003a",  # body length 58
                    "00" * 58,  # body all zero: cleared
                    "3f",  # CS = (05 + 00 + 3a) mod 256
                    "16",  # end
                )
            ),
            "cleared (read and reconciled by the centre)",
        ),
    ),
)
"""EF05, SFI 5, 64 bytes."""
