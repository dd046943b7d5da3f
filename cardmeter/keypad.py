"""The keypad (STS) meter: a 20-digit token typed on its keypad, taken at most once.

A keypad meter knows one decoder key (DK), derived at the factory from the
supply group's vending key and the meter's identity (PAN, SGC, TI, KRN, KT,
base date, EA). Every token it is given goes through the same steps
(IEC 62055-41, ../shared/STS.md "At the meter"):

1. decrypt it with its own DK and check the CRC: a token vended for another
   meter, or mistyped, fails here;
2. check the token identifier (TID, minutes since the base date): a TID the
   meter already holds, or one older than the oldest of the last
   :data:`TID_MEMORY` it holds, is refused, so a token works once;
3. apply the token's class: credit transfer adds to the credit register,
   management tokens set their register, key change sections are collected
   until the new key is whole.

A refused token changes nothing, and :meth:`KeypadMeter.enter` never raises
for one: the refusal is an outcome with a sentence, as a meter's display
shows "rejected" rather than crashing.

TID history across a base-date change. A TID is a time: minutes since the
base date. The meter keeps its history as times, expressed in minutes since
its *current* base date; a rollover key change (RO=1) moves the base date on
(1993 to 2014 to 2035) and re-expresses the stored TIDs in the new base by
subtracting the minutes between the two base dates (a TID of 2024 on the 1993
base becomes the same minute on the 2014 base; a time before the new base
date becomes a negative number, which no token can carry). Tokens counted
from the new base then compare by time with the old ones: a 2014-based
token issued after the rollover is newer than every 1993-based token held,
even though its number is smaller, and a 2014-based TID naming a time before
the tokens held is still "older than the oldest".
Old tokens cannot be replayed after the change anyway: they are encrypted
under the old key, and a key change that would keep the same key is refused.
(Clearing the memory at a rollover would also be safe for that reason; keeping
it as times costs nothing and stays safe even if a key were ever reused.)

Key changes. Sections 1 and 2 (and 3 and 4 for the 128-bit keys of EA11)
each arrive encrypted under the OLD key. The meter stores each section as
it comes and changes nothing else until it holds every section; then the
new key, KRN, KT, TI and (with RO=1) the next base date take effect together.
Until then the old key stays in force, so a credit token entered between two
sections still works. A section that is already held is refused as a repeat.

The supply group code is not carried by key change tokens: after a change of
supply group the meter holds the new key but its ``identity.sgc`` still shows
the code it was made with (a meter only ever needs its key, not the code).

Registers that a management token sets hold the token's 16-bit value as it
came (maximum power limit and phase unbalance limit in watts, the tariff rate
and water factor as the utility defines them): the meter model does not
interpret them further.

The decoder key is a secret of this one meter. It is in the state document
(the meter's secure memory, like a card meter's security module) and nowhere
else: outcomes, status output and errors show :func:`decoder_key_check`, a
3-byte fingerprint, instead.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final

from cardlayout.errors import CardLayoutError
from cardlayout.sts.amount import decode_amount
from cardlayout.sts.codec import TokenError, decode_token
from cardlayout.sts.identity import BaseDate, EncryptionAlgorithm, KeyGeneration, MeterIdentity
from cardlayout.sts.tables import StaTables
from cardlayout.sts.tokens import (
    KEY_SECTIONS,
    EngineeringToken,
    KeyChangeToken,
    ManagementSubclass,
    ManagementToken,
    Token,
    TransferSubclass,
    TransferToken,
    assemble_key_change,
)

KEYPAD_FORMAT: Final = "cardmeter-keypad/1"

TID_MEMORY: Final = 50
"""How many of the newest TIDs the meter keeps (STS: "of the order of 50")."""

CLEAR_ALL_REGISTERS: Final = 0xFFFF
"""The clear-credit value that clears every credit register."""

NEXT_BASE_DATE: Final[dict[BaseDate, BaseDate]] = {
    BaseDate.Y1993: BaseDate.Y2014,
    BaseDate.Y2014: BaseDate.Y2035,
}

ORDINAL: Final = {1: "1st", 2: "2nd", 3: "3rd", 4: "4th"}

# Management registers set straight from the 16-bit value: subclass -> (register, words).
VALUE_REGISTERS: Final[dict[ManagementSubclass, tuple[str, str]]] = {
    ManagementSubclass.SET_MAX_POWER: ("max_power", "maximum power limit"),
    ManagementSubclass.SET_TARIFF_RATE: ("tariff_rate", "tariff rate"),
    ManagementSubclass.SET_PHASE_UNBALANCE: ("phase_unbalance", "phase power unbalance limit"),
    ManagementSubclass.SET_WATER_FACTOR: ("water_factor", "water meter factor"),
}


def decoder_key_check(key: bytes) -> str:
    """A fingerprint of a decoder key for output and logs: SHA-256's first 3 bytes, hex.

    Like a key check value it names a key without revealing it; unlike the
    card keys' KCV it needs no cipher, since STS keys are used by three.
    """
    return hashlib.sha256(key).digest()[:3].hex().upper()


def _name(member: Any) -> str:
    return str(member.name).lower()


@dataclass(frozen=True)
class KeypadOutcome:
    """What a token did to the meter (or why it did nothing)."""

    accepted: bool
    reason: str
    token_class: str | None = None
    """``transfer``, ``engineering`` or ``management``; None if the token did not decode."""
    subclass: str | None = None
    tid: int | None = None
    credited: int = 0
    """Tenths of the unit added to the credit register (0 if none)."""
    changed: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Register name -> {"from": old, "to": new}, for registers whose value changed."""
    credit: int = 0
    """The credit register after the token, tenths of the unit."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "reason": self.reason,
            "class": self.token_class,
            "subclass": self.subclass,
            "tid": self.tid,
            "credited": self.credited,
            "changed": self.changed,
            "credit": self.credit,
        }


class _Refused(Exception):
    """Inside :meth:`KeypadMeter.enter`: the token is refused, for ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class KeypadMeter:
    """One keypad meter and its registers."""

    identity: MeterIdentity
    decoder_key: bytes = field(repr=False)
    tables: StaTables | None = None
    """EA07 substitution/permutation tables; None for the standard's sample tables."""
    tables_source: str | None = None
    """Where production tables were loaded from (for status output only)."""
    transfer: TransferSubclass = TransferSubclass.ELECTRICITY
    """The credit transfer subclass this meter takes (its utility)."""
    meter_no: str | None = None
    credit: int = 0
    """Credit register, tenths of the unit (0.1 kWh for electricity)."""
    tids: list[int] = field(default_factory=list)
    """The newest :data:`TID_MEMORY` TIDs taken, ascending, in the current base date."""
    max_power: int | None = None
    phase_unbalance: int | None = None
    tariff_rate: int | None = None
    water_factor: int | None = None
    tamper: bool = False
    ken: int | None = None
    """Key expiry number of the last key change (None: none since the factory)."""
    pending_key: dict[int, KeyChangeToken] = field(default_factory=dict)
    """Key change sections held so far (section number -> section), all under the current key."""

    @classmethod
    def new(
        cls,
        identity: MeterIdentity,
        decoder_key: bytes,
        tables: StaTables | None = None,
        *,
        transfer: TransferSubclass = TransferSubclass.ELECTRICITY,
        meter_no: str | None = None,
        tables_source: str | None = None,
    ) -> KeypadMeter:
        """A factory-new meter holding ``decoder_key`` (from :func:`store_decoder_key`)."""
        wanted = identity.ea.key_size
        if len(decoder_key) != wanted:
            raise ValueError(
                f"a decoder key for EA{identity.ea.value} has {wanted} bytes, "
                f"not {len(decoder_key)}"
            )
        return cls(
            identity=identity,
            decoder_key=bytes(decoder_key),
            tables=tables,
            tables_source=tables_source,
            transfer=TransferSubclass(transfer),
            meter_no=meter_no,
        )

    # -- taking a token ---------------------------------------------------------

    def enter(self, digits: str) -> KeypadOutcome:
        """Take the token ``digits`` (20 decimal digits); a bad token is a refused outcome."""
        try:
            token = decode_token(digits, self.decoder_key, self.identity.ea, self.tables)
        except TokenError as exc:
            return self._refused(exc.reason)
        except (CardLayoutError, ValueError) as exc:
            return self._refused(str(exc))
        cls_name, sub_name, tid = _describe(token)
        try:
            if isinstance(token, EngineeringToken):
                return self._engineering(token, cls_name, sub_name)
            if isinstance(token, KeyChangeToken):
                return self._key_change(token, cls_name, sub_name)
            self._check_tid(token.tid)
            if isinstance(token, TransferToken):
                return self._transfer(token, cls_name, sub_name)
            return self._management(token, cls_name, sub_name)
        except _Refused as refusal:
            return self._refused(refusal.reason, cls_name, sub_name, tid)

    def _refused(
        self,
        reason: str,
        token_class: str | None = None,
        subclass: str | None = None,
        tid: int | None = None,
    ) -> KeypadOutcome:
        return KeypadOutcome(False, reason, token_class, subclass, tid, credit=self.credit)

    def _check_tid(self, tid: int) -> None:
        if tid in self.tids:
            raise _Refused(f"token ID {tid} was used already: a token is taken once")
        if len(self.tids) >= TID_MEMORY and tid < self.tids[0]:
            raise _Refused(
                f"token ID {tid} is older than the oldest of the last {TID_MEMORY} "
                f"tokens taken ({self.tids[0]}): too old to be checked, so refused"
            )

    def _remember(self, tid: int) -> None:
        self.tids.append(tid)
        self.tids.sort()
        del self.tids[:-TID_MEMORY]

    def _transfer(self, token: TransferToken, cls_name: str, sub_name: str) -> KeypadOutcome:
        if token.subclass is not self.transfer:
            raise _Refused(
                f"a {_name(token.subclass)} credit token: this meter takes "
                f"{_name(self.transfer)} credit only"
            )
        tenths = decode_amount(token.amount)
        before = self.credit
        self.credit += tenths
        self._remember(token.tid)
        whole, tenth = divmod(tenths, 10)
        return KeypadOutcome(
            True,
            f"{whole}.{tenth} {token.subclass.unit} credited",
            cls_name,
            sub_name,
            token.tid,
            credited=tenths,
            changed={"credit": {"from": before, "to": self.credit}},
            credit=self.credit,
        )

    def _management(self, token: ManagementToken, cls_name: str, sub_name: str) -> KeypadOutcome:
        changed: dict[str, dict[str, Any]] = {}
        if token.subclass is ManagementSubclass.CLEAR_CREDIT:
            if token.value not in (CLEAR_ALL_REGISTERS, int(self.transfer)):
                raise _Refused(
                    f"clear credit of register {token.value}: this meter has only the "
                    f"{_name(self.transfer)} register ({int(self.transfer)}) "
                    f"and {CLEAR_ALL_REGISTERS} for all"
                )
            reason = "credit register cleared"
            self._set("credit", 0, changed)
        elif token.subclass is ManagementSubclass.CLEAR_TAMPER:
            reason = "tamper condition cleared"
            self._set("tamper", False, changed)
        elif token.subclass in VALUE_REGISTERS:
            register, words = VALUE_REGISTERS[token.subclass]
            reason = f"{words} set to {token.value}"
            self._set(register, token.value, changed)
        else:  # pragma: no cover - every other management subclass is a key section
            raise _Refused(f"management subclass {_name(token.subclass)} is not handled")
        self._remember(token.tid)
        return KeypadOutcome(
            True, reason, cls_name, sub_name, token.tid, changed=changed, credit=self.credit
        )

    def _set(self, register: str, value: Any, changed: dict[str, dict[str, Any]]) -> None:
        before = getattr(self, register)
        if before != value:
            changed[register] = {"from": before, "to": value}
        setattr(self, register, value)

    def _engineering(self, token: EngineeringToken, cls_name: str, sub_name: str) -> KeypadOutcome:
        """Class 1 tokens are for every meter, not encrypted: a test token works any time.

        Its TID is not checked nor stored: anyone can make one, so it proves
        nothing, and it changes no register that a replay could abuse.
        """
        if token.subclass != 0:
            raise _Refused(
                f"engineering token subclass {token.subclass} is reserved for other equipment: "
                f"this meter acts only on 0 (initiate meter test or display)"
            )
        return KeypadOutcome(
            True,
            "meter test or display initiated",
            cls_name,
            sub_name,
            token.tid,
            credit=self.credit,
        )

    # -- key change ----------------------------------------------------------------

    def _sections_needed(self) -> int:
        return 4 if len(self.decoder_key) == 16 else 2

    def _key_change(self, token: KeyChangeToken, cls_name: str, sub_name: str) -> KeypadOutcome:
        section = token.section
        needed = self._sections_needed()
        if section > needed:
            raise _Refused(
                f"a {ORDINAL[section]} key change section: this meter's key has "
                f"{len(self.decoder_key) * 8} bits, changed in {needed} sections"
            )
        if self.pending_key.get(section) == token:
            raise _Refused(
                f"this {ORDINAL[section]} key change section was entered already; "
                f"waiting for section(s) {self._missing_text()}"
            )
        held_before = sorted(self.pending_key)
        pending = {**self.pending_key, section: token}
        if len(pending) < needed:
            self.pending_key = pending
            return KeypadOutcome(
                True,
                f"{ORDINAL[section]} key change section stored; the key changes once "
                f"section(s) {self._missing_text()} arrive",
                cls_name,
                sub_name,
                changed={"key_change_sections": {"from": held_before, "to": sorted(pending)}},
                credit=self.credit,
            )
        changed = self._complete_key_change(pending)
        return KeypadOutcome(
            True,
            f"key change complete: key revision {self.identity.krn}, key type {self.identity.kt}, "
            f"tariff index {self.identity.ti:02d}, base date {self.identity.base_date.value}",
            cls_name,
            sub_name,
            changed=changed,
            credit=self.credit,
        )

    def _missing_text(self) -> str:
        missing = [n for n in range(1, self._sections_needed() + 1) if n not in self.pending_key]
        return ", ".join(str(n) for n in missing)

    def _complete_key_change(self, sections: dict[int, KeyChangeToken]) -> dict[str, Any]:
        """Take the new key and attributes from every section; refuse an unusable one."""
        try:
            change = assemble_key_change(sections.values(), len(self.decoder_key))
        except CardLayoutError as exc:
            raise _Refused(str(exc)) from None
        new_key = change.new_key
        if new_key == self.decoder_key:
            raise _Refused(
                "the key change brings the key this meter already has: nothing to change "
                "(a key change entered twice?)"
            )
        base = self.identity.base_date
        if change.rollover:
            if base not in NEXT_BASE_DATE:
                raise _Refused(
                    f"a rollover key change, but there is no base date after {base.value}"
                )
            base = NEXT_BASE_DATE[base]
        try:
            identity = dataclasses.replace(
                self.identity, krn=change.krn, kt=change.kt, ti=change.ti, base_date=base
            )
        except (CardLayoutError, ValueError) as exc:
            raise _Refused(f"the key change carries an unusable attribute: {exc}") from None
        changed: dict[str, Any] = {
            "decoder_key": {
                "from": decoder_key_check(self.decoder_key),
                "to": decoder_key_check(new_key),
            },
            "key_change_sections": {"from": sorted(self.pending_key), "to": []},
        }
        for name in ("krn", "kt", "ti"):
            old, new = getattr(self.identity, name), getattr(identity, name)
            if old != new:
                changed[name] = {"from": old, "to": new}
        if change.ken != self.ken:
            changed["ken"] = {"from": self.ken, "to": change.ken}
        if base is not self.identity.base_date:
            changed["base_date"] = {"from": self.identity.base_date.value, "to": base.value}
            shift = (base.start - self.identity.base_date.start) // timedelta(minutes=1)
            self.tids = [tid - shift for tid in self.tids]
        self.identity = identity
        self.decoder_key = new_key
        self.ken = change.ken
        self.pending_key = {}
        return changed

    def set_tamper(self) -> None:
        """Record a tamper condition (cleared only by a clear-tamper token)."""
        self.tamper = True

    # -- JSON -------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Every register for display: the decoder key as its check value only."""
        doc = self.to_json()
        doc.pop("format")
        doc.pop("decoder_key")
        doc["decoder_key_check"] = decoder_key_check(self.decoder_key)
        doc["tables"] = "sample" if self.tables is None else "production"
        doc["pending_key"] = sorted(self.pending_key)
        return doc

    def to_json(self) -> dict[str, Any]:
        """The whole state, decoder key included: store only in the meter's secure memory."""
        ident = self.identity
        return {
            "format": KEYPAD_FORMAT,
            "kind": "keypad",
            "meter_no": self.meter_no,
            "identity": {
                "pan": ident.pan,
                "sgc": ident.sgc,
                "ti": ident.ti,
                "krn": ident.krn,
                "kt": ident.kt,
                "base_date": ident.base_date.value,
                "ea": ident.ea.value,
                "dkga": ident.dkga.value,
            },
            "decoder_key": self.decoder_key.hex().upper(),
            "tables": None
            if self.tables is None
            else {"s1": list(self.tables.s1), "s2": list(self.tables.s2), "p": list(self.tables.p)},
            "tables_source": self.tables_source,
            "transfer": _name(self.transfer),
            "credit": self.credit,
            "tids": list(self.tids),
            "max_power": self.max_power,
            "phase_unbalance": self.phase_unbalance,
            "tariff_rate": self.tariff_rate,
            "water_factor": self.water_factor,
            "tamper": self.tamper,
            "ken": self.ken,
            "pending_key": {
                str(n): {
                    "ken": s.ken,
                    "krn": s.krn,
                    "ro": s.ro,
                    "kt": s.kt,
                    "ti": s.ti,
                    "key_part": s.key_part,
                }
                for n, s in sorted(self.pending_key.items())
            },
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> KeypadMeter:
        """The meter saved by :meth:`to_json`; ``ValueError`` with a sentence if it is not one."""
        if not isinstance(doc, dict) or doc.get("format") != KEYPAD_FORMAT:
            found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
            raise ValueError(f"not a keypad meter state (format {found!r})")
        try:
            ident = doc["identity"]
            identity = MeterIdentity(
                pan=ident["pan"],
                sgc=ident["sgc"],
                ti=int(ident["ti"]),
                krn=int(ident["krn"]),
                kt=int(ident["kt"]),
                base_date=BaseDate(int(ident["base_date"])),
                ea=EncryptionAlgorithm(ident["ea"]),
                dkga=KeyGeneration(ident["dkga"]),
            )
            tables_doc = doc["tables"]
            tables = (
                None
                if tables_doc is None
                else StaTables(
                    tuple(tables_doc["s1"]), tuple(tables_doc["s2"]), tuple(tables_doc["p"])
                )
            )
            meter = cls.new(
                identity,
                bytes.fromhex(doc["decoder_key"]),
                tables,
                transfer=TransferSubclass[str(doc["transfer"]).upper()],
                meter_no=doc["meter_no"],
                tables_source=doc["tables_source"],
            )
            meter.credit = int(doc["credit"])
            meter.tids = sorted(int(t) for t in doc["tids"])
            for name in ("max_power", "phase_unbalance", "tariff_rate", "water_factor", "ken"):
                value = doc[name]
                setattr(meter, name, None if value is None else int(value))
            meter.tamper = bool(doc["tamper"])
            meter.pending_key = {
                int(n): KeyChangeToken(
                    subclass=KEY_SECTIONS[int(n) - 1],
                    ken=int(s["ken"]),
                    krn=int(s["krn"]),
                    ro=bool(s["ro"]),
                    kt=int(s["kt"]),
                    ti=int(s["ti"]),
                    key_part=int(s["key_part"]),
                )
                for n, s in doc["pending_key"].items()
            }
        except KeyError as exc:
            raise ValueError(f"keypad meter state lacks {exc}") from None
        except (TypeError, AttributeError, IndexError) as exc:
            raise ValueError(f"keypad meter state is malformed: {exc}") from None
        return meter


def _describe(token: Token) -> tuple[str, str, int | None]:
    """(class name, subclass name, TID or None) of a decoded token, for outcomes."""
    if isinstance(token, TransferToken):
        return "transfer", _name(token.subclass), token.tid
    if isinstance(token, ManagementToken):
        return "management", _name(token.subclass), token.tid
    if isinstance(token, KeyChangeToken):
        return "management", _name(token.subclass), None
    return "engineering", str(token.subclass), token.tid
