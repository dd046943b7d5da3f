"""EF01 parameters (docs/card.md 3.1): who the card is for and how to bill.

The centre writes this file at every sale; the meter applies it when its
update flags say so. It also says which kind of card this is (a user card
turns from opening into purchase into replacement by rewriting this file).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime

from cardlayout.codec import (
    TimeFormat,
    decode_bcd,
    decode_digits,
    decode_optional_time,
    decode_uint,
    encode_bcd,
    encode_digits,
    encode_optional_time,
    encode_uint,
)
from cardlayout.errors import FormatError
from cardlayout.files.base import (
    BodyReader,
    CardFile,
    Example,
    decode_enum,
    decode_flags,
    encode_enum,
    encode_flags,
    expect_type,
)

__all__ = [
    "ANY_METER",
    "NO_FRIENDLY_DAYS",
    "NO_UPDATES",
    "PARAMETERS",
    "CardType",
    "FriendlyDays",
    "Parameters",
    "ParametersFile",
    "UpdateFlags",
    "UserType",
]

ANY_METER = "000000000000"
"""Meter number of a tool card that works on any meter."""

RATIO_MAX = 999_999
"""CT and PT ratios are 3 BCD bytes, 1..999999."""
_LAST_HOUR = 23


class UserType(enum.IntEnum):
    """How the customer is billed (EF01 and EF05 offset 0)."""

    SINGLE_RATE = 1
    TOU = 2
    STEPPED = 3
    TOU_STEPPED = 4


class CardType(enum.IntEnum):
    """Card kind as written in EF01 (docs/card.md 3.6)."""

    OPENING = 1
    PURCHASE = 2
    REPLACEMENT = 3
    PARAMETER_SETTING = 4
    READING = 5
    TEST_CLEAR = 6

    @property
    def is_user_card(self) -> bool:
        """True for the cards a customer holds (opening, purchase, replacement)."""
        return self in (CardType.OPENING, CardType.PURCHASE, CardType.REPLACEMENT)


class UpdateFlags(enum.IntFlag):
    """Which parts of the card the meter should take over at this insertion."""

    CURRENT_TOU = 1 << 0
    BACKUP_TOU = 1 << 1
    CURRENT_TIER = 1 << 2
    BACKUP_TIER = 1 << 3
    PARAMETERS = 1 << 7


class FriendlyDays(enum.IntFlag):
    """Days on which the meter does not cut supply for lack of credit."""

    SATURDAY = 1 << 0
    SUNDAY = 1 << 1
    HOLIDAYS = 1 << 2


NO_UPDATES = UpdateFlags(0)
NO_FRIENDLY_DAYS = FriendlyDays(0)


@dataclass(frozen=True, kw_only=True)
class Parameters:
    """The content of EF01.

    Money (alarms, limits, threshold) is in minor units. ``hoarding_limit`` and
    ``load_limit`` are ``None`` for "no limit" (written as 0). Friendly hours
    run from ``friendly_start_hour`` to ``friendly_end_hour`` (meter local
    time); equal hours mean none.
    """

    user_type: UserType
    card_type: CardType
    meter_no: str
    customer_no: str
    update_flags: UpdateFlags = NO_UPDATES
    parameter_version: int = 0
    tariff_switch_time: datetime | None = None
    alarm1: int = 0
    alarm2: int = 0
    ct_ratio: int = 1
    pt_ratio: int = 1
    overdraft_limit: int = 0
    hoarding_limit: int | None = None
    close_allow_threshold: int = 0
    load_limit: int | None = None
    friendly_start_hour: int = 0
    friendly_end_hour: int = 0
    friendly_days: FriendlyDays = NO_FRIENDLY_DAYS

    @property
    def has_friendly_hours(self) -> bool:
        """True if a friendly-hours window is set (start differs from end)."""
        return self.friendly_start_hour != self.friendly_end_hour


def _encode_optional_limit(value: int | None, length: int, *, field: str) -> bytes:
    if value is None:
        return bytes(length)
    if value == 0:
        raise FormatError(f"{field} of 0 means no limit: give None", field=field)
    return encode_uint(value, length, field=field, minimum=1)


def _decode_optional_limit(data: bytes, *, field: str) -> int | None:
    return decode_uint(data, field=field) or None


class ParametersFile(CardFile[Parameters]):
    """Codec of EF01 (body 58 B)."""

    def encode_body(self, value: Parameters) -> bytes:
        v = expect_type(value, Parameters, field="parameters")
        card_type = encode_enum(CardType, v.card_type, field="card_type")
        meter_no = encode_digits(v.meter_no, 6, field="meter_no")
        if v.meter_no == ANY_METER and CardType(card_type[0]).is_user_card:
            raise FormatError(
                "meter_no 000000000000 (any meter) is for tool cards only, "
                f"not a {CardType(card_type[0]).name} card",
                field="meter_no",
            )
        return b"".join(
            [
                encode_enum(UserType, v.user_type, field="user_type"),  # 0
                encode_flags(UpdateFlags, v.update_flags, 1, field="update_flags"),  # 1
                encode_uint(v.parameter_version, 1, field="parameter_version"),  # 2
                encode_optional_time(
                    v.tariff_switch_time, TimeFormat.MINUTES, field="tariff_switch_time"
                ),  # 3
                encode_bcd(v.alarm1, 4, field="alarm1"),  # 8
                encode_bcd(v.alarm2, 4, field="alarm2"),  # 12
                encode_bcd(v.ct_ratio, 3, field="ct_ratio", minimum=1),  # 16
                encode_bcd(v.pt_ratio, 3, field="pt_ratio", minimum=1),  # 19
                meter_no,  # 22
                encode_digits(v.customer_no, 6, field="customer_no"),  # 28
                card_type,  # 34
                encode_uint(v.overdraft_limit, 4, field="overdraft_limit"),  # 35
                _encode_optional_limit(v.hoarding_limit, 4, field="hoarding_limit"),  # 39
                encode_uint(v.close_allow_threshold, 4, field="close_allow_threshold"),  # 43
                _encode_optional_limit(v.load_limit, 3, field="load_limit"),  # 47
                encode_bcd(
                    v.friendly_start_hour, 1, field="friendly_start_hour", maximum=_LAST_HOUR
                ),  # 50
                encode_bcd(
                    v.friendly_end_hour, 1, field="friendly_end_hour", maximum=_LAST_HOUR
                ),  # 51
                encode_flags(FriendlyDays, v.friendly_days, 1, field="friendly_days"),  # 52
                bytes(5),  # 53 reserved
            ]
        )

    def decode_body(self, body: bytes) -> Parameters:
        r = BodyReader(body)
        user_type = decode_enum(UserType, r.byte(), field="user_type")
        update_flags = decode_flags(UpdateFlags, r.byte(), field="update_flags")
        parameter_version = r.byte()
        switch = decode_optional_time(r.take(5), TimeFormat.MINUTES, field="tariff_switch_time")
        alarm1 = decode_bcd(r.take(4), field="alarm1")
        alarm2 = decode_bcd(r.take(4), field="alarm2")
        ct_ratio = decode_bcd(r.take(3), field="ct_ratio", minimum=1)
        pt_ratio = decode_bcd(r.take(3), field="pt_ratio", minimum=1)
        meter_no = decode_digits(r.take(6), field="meter_no")
        customer_no = decode_digits(r.take(6), field="customer_no")
        card_type = decode_enum(CardType, r.byte(), field="card_type")
        if meter_no == ANY_METER and card_type.is_user_card:
            raise FormatError(
                f"meter_no is all zero (any meter) on a {card_type.name} card",
                field="meter_no",
            )
        overdraft_limit = decode_uint(r.take(4), field="overdraft_limit")
        hoarding_limit = _decode_optional_limit(r.take(4), field="hoarding_limit")
        close_allow = decode_uint(r.take(4), field="close_allow_threshold")
        load_limit = _decode_optional_limit(r.take(3), field="load_limit")
        start = decode_bcd(r.take(1), field="friendly_start_hour", maximum=_LAST_HOUR)
        end = decode_bcd(r.take(1), field="friendly_end_hour", maximum=_LAST_HOUR)
        friendly_days = decode_flags(FriendlyDays, r.byte(), field="friendly_days")
        r.reserved(5)
        return Parameters(
            user_type=user_type,
            card_type=card_type,
            meter_no=meter_no,
            customer_no=customer_no,
            update_flags=update_flags,
            parameter_version=parameter_version,
            tariff_switch_time=switch,
            alarm1=alarm1,
            alarm2=alarm2,
            ct_ratio=ct_ratio,
            pt_ratio=pt_ratio,
            overdraft_limit=overdraft_limit,
            hoarding_limit=hoarding_limit,
            close_allow_threshold=close_allow,
            load_limit=load_limit,
            friendly_start_hour=start,
            friendly_end_hour=end,
            friendly_days=friendly_days,
        )


# Example 1: a purchase card for a TOU + stepped customer.
_PURCHASE = Parameters(
    user_type=UserType.TOU_STEPPED,
    card_type=CardType.PURCHASE,
    meter_no="000012345678",
    customer_no="310101000042",
    update_flags=UpdateFlags.PARAMETERS | UpdateFlags.CURRENT_TIER | UpdateFlags.CURRENT_TOU,
    parameter_version=3,
    tariff_switch_time=datetime(2025, 7, 1, 0, 0, tzinfo=UTC),
    alarm1=200_000,
    alarm2=50_000,
    overdraft_limit=5_000,
    hoarding_limit=500_000,
    close_allow_threshold=1_000,
    load_limit=6_000,
    friendly_start_hour=22,
    friendly_end_hour=6,
    friendly_days=FriendlyDays.SATURDAY | FriendlyDays.SUNDAY | FriendlyDays.HOLIDAYS,
)

# Example 2: a test/clear tool card for any meter, CT ratio 100, nothing else set.
_TEST_CLEAR = Parameters(
    user_type=UserType.SINGLE_RATE,
    card_type=CardType.TEST_CLEAR,
    meter_no=ANY_METER,
    customer_no="000000000000",
    ct_ratio=100,
)

PARAMETERS = ParametersFile(
    name="parameters",
    sfi=1,
    body_size=58,
    examples=(
        Example(
            _PURCHASE,
            "68"  # start
            "01"  # cmd = SFI 1
            "003a"  # body length 58
            "04"  # 0 user type 4, TOU + stepped
            "85"  # 1 update flags: b7 parameters, b2 current tier set, b0 current TOU set
            "03"  # 2 parameter version 3
            "2507010000"  # 3 tariff switch time 2025-07-01 00:00 UTC
            "00200000"  # 8 alarm 1: 200000 minor units (2000.00), BCD
            "00050000"  # 12 alarm 2: 50000 (500.00), BCD
            "000001"  # 16 CT ratio 1
            "000001"  # 19 PT ratio 1
            "000012345678"  # 22 meter number
            "310101000042"  # 28 customer number
            "02"  # 34 card type: purchase
            "00001388"  # 35 overdraft limit 5000 (50.00), binary
            "0007a120"  # 39 hoarding limit 500000 (5000.00)
            "000003e8"  # 43 close-allow threshold 1000 (10.00)
            "001770"  # 47 load limit 6000 W
            "22"  # 50 friendly hours start 22
            "06"  # 51 friendly hours end 06
            "07"  # 52 friendly days: Saturday, Sunday, holidays
            "0000000000"  # 53 reserved
            "aa"  # CS = (01 + 00 + 3a + body bytes) mod 256
            "16",  # end
            "purchase card, TOU + stepped",
        ),
        Example(
            _TEST_CLEAR,
            "68"  # start
            "01"  # cmd = SFI 1
            "003a"  # body length 58
            "01"  # 0 user type 1, single rate
            "00"  # 1 update flags: none
            "00"  # 2 parameter version 0
            "0000000000"  # 3 tariff switch time: none
            "00000000"  # 8 alarm 1: 0
            "00000000"  # 12 alarm 2: 0
            "000100"  # 16 CT ratio 100
            "000001"  # 19 PT ratio 1
            "000000000000"  # 22 meter number: any meter
            "000000000000"  # 28 customer number
            "06"  # 34 card type: test/clear
            "00000000"  # 35 overdraft limit 0
            "00000000"  # 39 hoarding limit: none
            "00000000"  # 43 close-allow threshold 0
            "000000"  # 47 load limit: none
            "00"  # 50 friendly hours start
            "00"  # 51 friendly hours end (= start: none)
            "00"  # 52 friendly days: none
            "0000000000"  # 53 reserved
            "44"  # CS = (01 + 00 + 3a + 01 + 01 + 01 + 06) mod 256
            "16",  # end
            "test/clear tool card for any meter",
        ),
    ),
)
"""EF01, SFI 1, 64 bytes."""
