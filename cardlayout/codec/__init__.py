"""Byte-level codecs shared by the card files: BCD, binary, UTC times, frames.

Each primitive takes the ``field`` it is coding so that a failure names it;
the file codecs in :mod:`cardlayout.files` add the file's name.
"""

from cardlayout.codec.bcd import (
    bcd_max,
    decode_bcd,
    decode_bcd_digits,
    decode_digits,
    encode_bcd,
    encode_digits,
)
from cardlayout.codec.binary import check_int, decode_uint, encode_uint, uint_max
from cardlayout.codec.frame import (
    END,
    FRAME_OVERHEAD,
    START,
    TORN_MARKER,
    checksum,
    decode_frame,
    encode_frame,
)
from cardlayout.codec.times import (
    FIRST_YEAR,
    LAST_YEAR,
    TimeFormat,
    decode_optional_time,
    decode_time,
    decode_year_month,
    encode_optional_time,
    encode_time,
    encode_year_month,
)

__all__ = [
    "END",
    "FIRST_YEAR",
    "FRAME_OVERHEAD",
    "LAST_YEAR",
    "START",
    "TORN_MARKER",
    "TimeFormat",
    "bcd_max",
    "check_int",
    "checksum",
    "decode_bcd",
    "decode_bcd_digits",
    "decode_digits",
    "decode_frame",
    "decode_optional_time",
    "decode_time",
    "decode_uint",
    "decode_year_month",
    "encode_bcd",
    "encode_digits",
    "encode_frame",
    "encode_optional_time",
    "encode_time",
    "encode_uint",
    "encode_year_month",
    "uint_max",
]
