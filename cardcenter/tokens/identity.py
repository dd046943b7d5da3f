"""A keypad meter's STS identity, between the books' columns and ``cardlayout.sts``.

The meter row holds the identity the meter has (``Meter.sts_*``) and, apart,
a change an operator recorded and that has not been sent yet
(``Meter.sts_new_*``). The identity a token is made for is always built
here, so an operator's typing is checked once, with the field named as the
operator knows it (PAN, SGC, TI, KRN, KT), before any key is derived.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime
from typing import Any

from cardcenter.core.errors import InvalidInputError
from cardcenter.customers.models import Meter, MeterKind
from cardcenter.tokens.config import describe_tables
from cardlayout.errors import FormatError
from cardlayout.sts.identity import BaseDate, EncryptionAlgorithm, KeyGeneration, MeterIdentity

LABELS = {
    "pan": "PAN",
    "sgc": "SGC",
    "ti": "TI",
    "krn": "KRN",
    "kt": "KT",
    "base_date": "base date",
    "ea": "EA",
    "dkga": "DKGA",
}
"""Identity fields as operators name them (and as the errors say)."""

DEFAULT_BASE_DATE = BaseDate.Y2014
"""A meter made since the 1993 base date ran out (2024-11-24) counts from 2014."""
DEFAULT_EA = EncryptionAlgorithm.EA07
DEFAULT_DKGA = KeyGeneration.DKGA04
"""DKGA04 (HMAC-SHA-256) is the generation STS edition 2 asks of new meters."""


def check_pan(text: str) -> str:
    """An 18-digit PAN as typed (spaces and dashes between groups allowed), or a sentence."""
    pan = "".join(str(text).split()).replace("-", "")
    if len(pan) != 18 or not pan.isascii() or not pan.isdigit():
        raise InvalidInputError(
            "PAN", f"{text!r} is not a meter PAN: give its 18 digits (IIN, DRN, check digit)"
        )
    return pan


def _number(value: int | str, field: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip()
    if not text.isascii() or not text.isdigit():
        raise InvalidInputError(LABELS[field], f"{value!r} is not a number")
    return int(text)


def _code(value: str | int, field: str, kind: type[EncryptionAlgorithm | KeyGeneration]) -> str:
    text = str(value).strip()
    if text.isascii() and text.isdigit() and len(text) <= 2:
        text = f"{int(text):02d}"
    allowed = [member.value for member in kind]
    if text not in allowed:
        raise InvalidInputError(LABELS[field], f"{value!r} is not one of {', '.join(allowed)}")
    return text


def _base_date(value: int | str | BaseDate) -> BaseDate:
    text = str(int(value) if isinstance(value, int) else value).strip()
    try:
        return BaseDate(int(text))
    except ValueError:
        allowed = ", ".join(str(int(b)) for b in BaseDate)
        raise InvalidInputError("base date", f"{value!r} is not one of {allowed}") from None


def make_identity(
    *,
    pan: str,
    sgc: str,
    ti: int | str,
    krn: int | str,
    kt: int | str,
    base_date: int | str | BaseDate = DEFAULT_BASE_DATE,
    ea: str | int = DEFAULT_EA,
    dkga: str | int = DEFAULT_DKGA,
) -> MeterIdentity:
    """The identity an operator typed, or an :class:`InvalidInputError` naming the field."""
    pan = check_pan(pan)
    numbers = (_number(ti, "ti"), _number(krn, "krn"), _number(kt, "kt"))
    base = _base_date(base_date)
    algorithm = EncryptionAlgorithm(_code(ea, "ea", EncryptionAlgorithm))
    generation = KeyGeneration(_code(dkga, "dkga", KeyGeneration))
    return _checked(
        lambda: MeterIdentity(
            pan, str(sgc).strip(), *numbers, base_date=base, ea=algorithm, dkga=generation
        )
    )


def _checked(build: Callable[[], MeterIdentity]) -> MeterIdentity:
    """``build()``, its :class:`FormatError` turned into the operator's sentence."""
    try:
        return build()
    except FormatError as exc:
        raise InvalidInputError(LABELS.get(exc.field or "", "STS identity"), str(exc)) from None


def identity_of(meter: Meter) -> MeterIdentity:
    """The identity the meter holds (its decoder key's), from its row."""
    if meter.kind != MeterKind.KEYPAD or meter.sts_pan is None:
        raise InvalidInputError(
            "meter", f"meter {meter.meter_no} is a {meter.kind} meter with no STS identity"
        )
    assert meter.sts_sgc is not None and meter.sts_ti is not None
    assert meter.sts_krn is not None and meter.sts_kt is not None
    assert meter.sts_base_date is not None and meter.sts_ea is not None
    assert meter.sts_dkga is not None
    return MeterIdentity(
        pan=meter.sts_pan,
        sgc=meter.sts_sgc,
        ti=meter.sts_ti,
        krn=meter.sts_krn,
        kt=meter.sts_kt,
        base_date=BaseDate(meter.sts_base_date),
        ea=EncryptionAlgorithm(meter.sts_ea),
        dkga=KeyGeneration(meter.sts_dkga),
    )


def recorded_identity(meter: Meter) -> MeterIdentity:
    """The identity the meter is to have once the recorded change is sent."""
    current = identity_of(meter)
    return dataclasses.replace(
        current,
        sgc=current.sgc if meter.sts_new_sgc is None else meter.sts_new_sgc,
        ti=current.ti if meter.sts_new_ti is None else meter.sts_new_ti,
        krn=current.krn if meter.sts_new_krn is None else meter.sts_new_krn,
        kt=current.kt if meter.sts_new_kt is None else meter.sts_new_kt,
    )


def record_change(
    meter: Meter,
    *,
    sgc: str | None = None,
    ti: int | str | None = None,
    krn: int | str | None = None,
    kt: int | str | None = None,
) -> MeterIdentity:
    """Record a change of SGC, TI, KRN or KT to send with the next token; the target identity.

    Merged with a change recorded before and not sent yet; a value equal to
    what the meter has cancels that part of the change.
    """
    if sgc is None and ti is None and krn is None and kt is None:
        raise InvalidInputError("STS identity", "give at least one of --sgc, --ti, --krn, --kt")
    current = identity_of(meter)
    was = recorded_identity(meter)
    target = _checked(
        lambda: dataclasses.replace(
            was,
            sgc=was.sgc if sgc is None else str(sgc).strip(),
            ti=was.ti if ti is None else _number(ti, "ti"),
            krn=was.krn if krn is None else _number(krn, "krn"),
            kt=was.kt if kt is None else _number(kt, "kt"),
        )
    )
    meter.sts_new_sgc = None if target.sgc == current.sgc else target.sgc
    meter.sts_new_ti = None if target.ti == current.ti else target.ti
    meter.sts_new_krn = None if target.krn == current.krn else target.krn
    meter.sts_new_kt = None if target.kt == current.kt else target.kt
    return target


def store_identity(meter: Meter, identity: MeterIdentity) -> None:
    """The meter now holds ``identity`` (its key change tokens were issued)."""
    for column, value in identity_columns(identity).items():
        setattr(meter, column, value)


IDENTITY_COLUMNS = (
    "sts_pan",
    "sts_sgc",
    "sts_ti",
    "sts_krn",
    "sts_kt",
    "sts_base_date",
    "sts_ea",
    "sts_dkga",
    "sts_new_sgc",
    "sts_new_ti",
    "sts_new_krn",
    "sts_new_kt",
)
"""The meter columns that hold its STS identity (:func:`identity_columns`' keys)."""


def identity_columns(identity: MeterIdentity) -> dict[str, Any]:
    """The meter row's columns once it holds ``identity``: no change left waiting."""
    values = (
        identity.pan,
        identity.sgc,
        identity.ti,
        identity.krn,
        identity.kt,
        int(identity.base_date),
        identity.ea.value,
        identity.dkga.value,
        None,
        None,
        None,
        None,
    )
    return dict(zip(IDENTITY_COLUMNS, values, strict=True))


def next_base(base: BaseDate, at: datetime) -> BaseDate | None:
    """Where a rollover moves a meter on ``base`` at ``at``: the next base date, if it has
    started (a rollover key change moves the meter one base date on, as STS does and
    ``cardmeter`` models it); None if there is none yet."""
    later = [b for b in BaseDate if b.start > base.start]
    following = min(later, key=lambda b: b.start, default=None)
    return following if following is not None and following.start <= at else None


def describe_identity(meter: Meter) -> dict[str, object]:
    """The meter's STS identity for results: what it holds and any change waiting to be sent."""
    current = identity_of(meter)
    target = recorded_identity(meter)
    waiting = {
        LABELS[name]: getattr(target, name)
        for name in ("sgc", "ti", "krn", "kt")
        if getattr(target, name) != getattr(current, name)
    }
    return {
        "pan": current.pan,
        "meter_no": meter.meter_no,
        "sgc": current.sgc,
        "ti": current.ti,
        "krn": current.krn,
        "kt": current.kt,
        "base_date": int(current.base_date),
        "ea": current.ea.value,
        "dkga": current.dkga.value,
        "tables": describe_tables(current.ea.value, meter.sts_tables),
        "last_tid": meter.sts_last_tid,
        "change_to_send": waiting or None,
    }
