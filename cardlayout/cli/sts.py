"""``cardlayout sts key|encode|decode``: STS tokens by hand.

For commissioning, support and scripts: derive a meter's decoder key, make a
token from its fields, read a token back. Values are checked in the handlers
(not by argparse types) so that a bad value is one sentence and exit status
1, like every other error of the command line. Hex at the edges, integers
inside; amounts are decimals, never floats.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import TextIO, TypeVar

from cardlayout.errors import FormatError
from cardlayout.sts.amount import encode_amount
from cardlayout.sts.codec import data_block, decode_token, encode_token
from cardlayout.sts.identity import BaseDate, EncryptionAlgorithm, KeyGeneration, MeterIdentity
from cardlayout.sts.keys import decoder_key
from cardlayout.sts.tables import StaTables, load_tables
from cardlayout.sts.tid import tid_of, time_of
from cardlayout.sts.tokens import (
    NO_EXPIRY,
    EngineeringToken,
    KeyChangeToken,
    ManagementSubclass,
    ManagementToken,
    Token,
    TokenClass,
    TransferSubclass,
    TransferToken,
    split_key,
)

_S = TypeVar("_S", TransferSubclass, ManagementSubclass)

_BASE_DATES = [str(int(b)) for b in BaseDate]
_EAS = [ea.value for ea in EncryptionAlgorithm]

_ENCODE_EPILOG = """\
what goes in the token, by class:
  --class 0 (credit transfer, subclass 0..7): --amount DECIMAL in the subclass's
      unit (kWh, m3, h, currency units; tenths on the wire, rounded UP to the next
      value the field can hold), or --value N, the raw 16-bit amount field
  --class 1 (engineering, not encrypted): --value N
  --class 2 (management, subclass 0..2 and 5..7): --value N (1: the register to
      clear, 65535 all)
  --class 2 --subclass 3, 4, 8 or 9 (key change section 1, 2, 3 or 4):
      --new-key HEX (16 hex digits; 32 for a 128-bit key, which needs sections 3
      and 4 too) --new-krn N --new-kt N --new-ti NN [--ken N] [--rollover].
      Encrypt under the meter's CURRENT key (--decoder-key, --ea). A key change
      carries no RND or TID: --rnd, --tid and --issued are not needed and are
      ignored there.
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``sts key``, ``sts encode`` and ``sts decode``."""
    sts = subparsers.add_parser(
        "sts",
        help="STS tokens: decoder keys, encode, decode",
        description="STS tokens (IEC 62055-41) for keypad meters: keys, encode, decode.",
    )
    actions = sts.add_subparsers(dest="sts_command", required=True, metavar="ACTION")

    key = actions.add_parser(
        "key",
        help="derive a meter's decoder key",
        description=(
            "Derive a meter's decoder key from the supply group's vending key and the "
            "meter's identity, and print it in hex. The output is a secret key value."
        ),
    )
    key.add_argument("--dkga", required=True, choices=[k.value for k in KeyGeneration])
    key.add_argument(
        "--vending-key",
        required=True,
        metavar="HEX",
        help="vending key: 8 bytes for DKGA02 (16 bytes: the first 8 are used), 16..64 for DKGA04",
    )
    key.add_argument("--pan", required=True, metavar="18DIGITS", help="the meter's PAN")
    key.add_argument("--sgc", required=True, metavar="DIGITS", help="supply group code, 6 digits")
    key.add_argument("--ti", required=True, metavar="NN", help="tariff index, 0..99")
    key.add_argument("--krn", required=True, metavar="N", help="key revision number, 1..9")
    key.add_argument("--kt", required=True, metavar="N", help="key type, 0..3")
    key.add_argument(
        "--base-date",
        choices=_BASE_DATES,
        default="2014",
        help="base date (default 2014, in force since the 1993 rollover; DKGA04 only)",
    )
    key.add_argument("--ea", choices=_EAS, default="07", help="encryption algorithm (default 07)")
    key.set_defaults(handler=run_key)

    encode = actions.add_parser(
        "encode",
        help="make a 20-digit token",
        description="Make a token for one meter and print its 20 digits.",
        epilog=_ENCODE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_cipher_options(encode)
    encode.add_argument("--class", dest="token_class", required=True, metavar="N")
    encode.add_argument("--subclass", required=True, metavar="N")
    encode.add_argument("--rnd", metavar="N", help="random nibble, 0..15")
    when = encode.add_mutually_exclusive_group()
    when.add_argument("--tid", metavar="N", help="token identifier: minutes since the base date")
    when.add_argument(
        "--issued",
        metavar="ISO-8601",
        help="issue time with its offset, e.g. 2024-05-01T10:30Z (needs --base-date)",
    )
    encode.add_argument("--base-date", choices=_BASE_DATES, help="base date of --issued")
    what = encode.add_mutually_exclusive_group(required=True)
    what.add_argument("--amount", metavar="DECIMAL", help="credit in the subclass's unit")
    what.add_argument("--value", metavar="N", help="the raw 16-bit amount or value field")
    what.add_argument("--new-key", metavar="HEX", help="key change: the new decoder key")
    encode.add_argument("--new-krn", metavar="N", help="key change: new key revision number")
    encode.add_argument("--new-kt", metavar="N", help="key change: new key type")
    encode.add_argument("--new-ti", metavar="NN", help="key change: new tariff index")
    encode.add_argument(
        "--ken", metavar="N", help=f"key change: key expiry number (default {NO_EXPIRY}, none)"
    )
    encode.add_argument(
        "--rollover", action="store_true", help="key change: to a new base date (RO = 1)"
    )
    encode.add_argument(
        "--json", action="store_true", help="print the token, data block and fields as JSON"
    )
    encode.set_defaults(handler=run_encode)

    decode = actions.add_parser(
        "decode",
        help="read a 20-digit token",
        description=(
            "Decrypt a token with the meter's decoder key, check it, and print its fields "
            "as JSON. A token for another meter, or mistyped, fails its CRC."
        ),
    )
    decode.add_argument("token", metavar="TOKEN", help="20 digits (spaces and hyphens allowed)")
    _add_cipher_options(decode)
    decode.add_argument(
        "--base-date", choices=_BASE_DATES, help="also print the issue time of the TID"
    )
    decode.set_defaults(handler=run_decode)


def _add_cipher_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--decoder-key", required=True, metavar="HEX", help="the meter's decoder key"
    )
    parser.add_argument("--ea", required=True, choices=_EAS, help="encryption algorithm")
    parser.add_argument(
        "--tables",
        metavar="FILE",
        help='EA07 tables, JSON {"s1": [16], "s2": [16], "p": [64]} (default: the sample tables)',
    )


def run_key(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """``sts key``: the decoder key in upper-case hex."""
    identity = MeterIdentity(
        pan=args.pan,
        sgc=args.sgc,
        ti=_number(args.ti, "--ti"),
        krn=_number(args.krn, "--krn"),
        kt=_number(args.kt, "--kt"),
        base_date=BaseDate(int(args.base_date)),
        ea=EncryptionAlgorithm(args.ea),
        dkga=KeyGeneration(args.dkga),
    )
    key = decoder_key(_hex(args.vending_key, "--vending-key"), identity)
    print(key.hex().upper(), file=sys.stdout if out is None else out)
    return 0


def run_encode(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """``sts encode``: 20 digits, or with ``--json`` the token and its fields."""
    ea = EncryptionAlgorithm(args.ea)
    key = _hex(args.decoder_key, "--decoder-key")
    tables = _tables(args, ea)
    token = _token(args)
    digits = encode_token(token, key, ea, tables)
    stream = sys.stdout if out is None else out
    if args.json:
        base = BaseDate(int(args.base_date)) if args.base_date else None
        print(json.dumps({"token": digits, **describe(token, base)}, indent=2), file=stream)
    else:
        print(digits, file=stream)
    return 0


def run_decode(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """``sts decode``: the token's fields as JSON."""
    ea = EncryptionAlgorithm(args.ea)
    token = decode_token(args.token, _hex(args.decoder_key, "--decoder-key"), ea, _tables(args, ea))
    base = BaseDate(int(args.base_date)) if args.base_date else None
    print(json.dumps(describe(token, base), indent=2), file=sys.stdout if out is None else out)
    return 0


def describe(token: Token, base: BaseDate | None = None) -> dict[str, object]:
    """A token's class, subclass, data block and fields, for JSON.

    ``base`` adds the issue time of the TID (UTC, ISO 8601).
    """
    fields: dict[str, object] = {
        "class": int(token.token_class),
        "class_name": token.token_class.name.lower(),
        "subclass": int(token.subclass),
        "subclass_name": _subclass_name(token),
        "data_block": f"{data_block(token):016X}",
    }
    if isinstance(token, KeyChangeToken):
        fields.update(
            section=token.section,
            ken=token.ken,
            krn=token.krn,
            ro=token.ro,
            kt=token.kt,
            ti=token.ti,
            key_part=f"{token.key_part:08X}",
        )
        return fields
    fields.update(rnd=token.rnd, tid=token.tid)
    if base is not None:
        fields["issued"] = time_of(token.tid, base).isoformat()
    if isinstance(token, TransferToken):
        fields.update(
            amount_field=f"{token.amount:04X}",
            amount=_tenths_text(token.credited),
            unit=token.subclass.unit,
        )
    else:
        fields.update(value=token.value, value_field=f"{token.value:04X}")
    return fields


def _token(args: argparse.Namespace) -> Token:
    token_class = _number(args.token_class, "--class")
    if token_class not in (0, 1, 2):
        raise FormatError(
            f"--class is 0 (transfer), 1 (engineering) or 2 (management), not {token_class}"
        )
    subclass = _number(args.subclass, "--subclass")
    if token_class == TokenClass.MANAGEMENT and subclass in {int(s) for s in _KEY_SECTIONS}:
        return _key_change(args, ManagementSubclass(subclass))
    if args.new_key is not None:
        raise FormatError("--new-key goes with --class 2 and a key change subclass (3, 4, 8, 9)")
    rnd, tid = _rnd_and_tid(args)
    if token_class == TokenClass.TRANSFER:
        if args.amount is not None:
            field, _credited = encode_amount(_tenths(args.amount))
        else:
            field = _number(args.value, "--value")
        return TransferToken(_known(TransferSubclass, subclass), rnd, tid, field)
    if args.value is None:
        raise FormatError("--amount is for credit transfer tokens (class 0): give --value")
    value = _number(args.value, "--value")
    if token_class == TokenClass.ENGINEERING:
        return EngineeringToken(subclass, rnd, tid, value)
    return ManagementToken(_known(ManagementSubclass, subclass), rnd, tid, value)


_KEY_SECTIONS = (
    ManagementSubclass.KEY_1,
    ManagementSubclass.KEY_2,
    ManagementSubclass.KEY_3,
    ManagementSubclass.KEY_4,
)


def _key_change(args: argparse.Namespace, subclass: ManagementSubclass) -> KeyChangeToken:
    if args.new_key is None:
        raise FormatError(f"a key change section (subclass {int(subclass)}) needs --new-key")
    missing = [
        option
        for option, value in (
            ("--new-krn", args.new_krn),
            ("--new-kt", args.new_kt),
            ("--new-ti", args.new_ti),
        )
        if value is None
    ]
    if missing:
        raise FormatError("a key change needs " + ", ".join(missing))
    new_key = _hex(args.new_key, "--new-key")
    sections = split_key(
        new_key,
        ken=NO_EXPIRY if args.ken is None else _number(args.ken, "--ken", limit=255),
        krn=_number(args.new_krn, "--new-krn", limit=15),
        kt=_number(args.new_kt, "--new-kt", limit=3),
        ti=_number(args.new_ti, "--new-ti", limit=99),
        rollover=args.rollover,
    )
    if subclass.section > len(sections):
        raise FormatError(
            f"key change section {subclass.section} (subclass {int(subclass)}) is for a "
            f"128-bit key; --new-key has {len(new_key) * 8} bits"
        )
    return sections[subclass.section - 1]


def _rnd_and_tid(args: argparse.Namespace) -> tuple[int, int]:
    if args.rnd is None:
        raise FormatError("this token carries a random nibble: give --rnd N (0..15)")
    rnd = _number(args.rnd, "--rnd", limit=15)
    if args.tid is not None:
        return rnd, _number(args.tid, "--tid", limit=(1 << 24) - 1)
    if args.issued is None:
        raise FormatError("this token carries a TID: give --tid N, or --issued and --base-date")
    if args.base_date is None:
        raise FormatError("--issued needs --base-date (1993, 2014 or 2035)")
    try:
        issued = datetime.fromisoformat(args.issued)
    except ValueError:
        raise FormatError(f"--issued {args.issued!r} is not an ISO 8601 time") from None
    if issued.tzinfo is None:
        raise FormatError(
            f"--issued {args.issued} has no offset: STS time is UTC, write e.g. "
            f"{args.issued}Z or {args.issued}+02:00"
        )
    return rnd, tid_of(issued, BaseDate(int(args.base_date)))


def _tables(args: argparse.Namespace, ea: EncryptionAlgorithm) -> StaTables | None:
    if args.tables is None:
        return None
    if ea is not EncryptionAlgorithm.EA07:
        raise FormatError(f"--tables is for EA07 (STA) only, not EA{ea.value}")
    return load_tables(args.tables)


def _tenths(text: str) -> int:
    """``--amount``: a decimal with at most one decimal place, as tenths."""
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise FormatError(f"--amount {text!r} is not a decimal number") from None
    if not amount.is_finite() or amount < 0:
        raise FormatError(f"--amount {text!r} is not an amount")
    tenths = amount * 10
    if tenths != tenths.to_integral_value():
        raise FormatError(f"--amount {text} has more than one decimal: tokens carry tenths")
    return int(tenths)


def _tenths_text(tenths: int) -> str:
    return f"{tenths // 10}.{tenths % 10}"


def _number(text: str, option: str, *, limit: int = 0xFFFF) -> int:
    if not text.isascii() or not text.isdigit():
        raise FormatError(f"{option} {text!r} is not a whole number")
    value = int(text)
    if value > limit:
        raise FormatError(f"{option} {value} is above {limit}")
    return value


def _hex(text: str, option: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise FormatError(f"{option} is not hex digits") from None


def _known(kind: type[_S], value: int) -> _S:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(str(int(member)) for member in kind)
        raise FormatError(f"--subclass {value} does not exist for this class ({allowed})") from None


def _subclass_name(token: Token) -> str:
    if isinstance(token, EngineeringToken):
        return "meter-test" if token.subclass == 0 else "reserved"
    return token.subclass.name.lower().replace("_", "-")
