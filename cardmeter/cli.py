"""The ``cardmeter`` command line: one simulated meter in a state file.

``init`` makes a factory-new meter, ``insert`` lets it take the card in a
PC/SC reader, ``run`` consumes energy over simulated time, ``status`` prints
the registers, ``tamper`` records a tamper event. Output is JSON; errors are
one sentence and exit status 1.

``init --keypad`` makes a keypad (STS) meter instead, its decoder key derived
from the key store's vending key so that a centre on the same key store vends
tokens it takes; ``keypad`` enters one 20-digit token (exit 0 when accepted,
1 when refused, the outcome as JSON either way and the reason on stderr).
``status`` and ``tamper`` work for both kinds.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cardlayout.card.dump import jsonable
from cardlayout.cli.common import add_reader_options, open_channel, run_handler
from cardlayout.files import EventCode, Utility
from cardmeter.keypad_store import KeypadStore, is_keypad_state
from cardmeter.registers import MeterState
from cardmeter.security import SecurityModule, sam_path
from cardmeter.store import StateError, StateStore

TAMPER_KINDS = {
    "cover-open": EventCode.COVER_OPEN,
    "magnetic": EventCode.MAGNETIC_TAMPER,
    "reverse-current": EventCode.REVERSE_CURRENT,
}


class UsageError(Exception):
    """A command-line value that cannot be used."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cardmeter", description="A prepaid card meter model.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    init = sub.add_parser("init", help="create a factory-new meter")
    init.add_argument("state", help="state file to create")
    init.add_argument("--meter-no", required=True, help="12-digit meter number")
    init.add_argument("--keystore", required=True, help="key file path or pkcs11: URI")
    init.add_argument("--utility", choices=[u.value for u in Utility], default="electricity")
    init.add_argument("--timezone", default="UTC", help="IANA time zone of the meter's clock")
    init.add_argument("--clock", help="start time, ISO 8601 with offset (default 2026-01-01Z)")
    add_keypad_init_options(init)
    init.set_defaults(handler=cmd_init)

    insert = sub.add_parser("insert", help="take the card in a PC/SC reader")
    insert.add_argument("state")
    add_reader_options(insert)
    insert.set_defaults(handler=cmd_insert)

    run = sub.add_parser("run", help="consume energy over simulated time")
    run.add_argument("state")
    run.add_argument("--days", type=int, required=True)
    source = run.add_mutually_exclusive_group()
    source.add_argument("--profile", default="residential", help="residential or commercial")
    source.add_argument("--csv", help="CSV of interval readings: timestamp,quantity")
    run.add_argument("--seed", type=int, default=1)
    run.set_defaults(handler=cmd_run)

    status = sub.add_parser("status", help="print every register as JSON")
    status.add_argument("state")
    status.set_defaults(handler=cmd_status)

    tamper = sub.add_parser("tamper", help="record a tamper event")
    tamper.add_argument("state")
    tamper.add_argument("kind", choices=sorted(TAMPER_KINDS))
    tamper.set_defaults(handler=cmd_tamper)

    keypad = sub.add_parser(
        "keypad",
        help="enter a 20-digit STS token on a keypad meter",
        description="Enter one STS token on a keypad meter and print the outcome as JSON. "
        "Exit status 0: token accepted; 1: token refused (the outcome JSON still on stdout, "
        "the reason on stderr), or the command could not run (a sentence on stderr only).",
    )
    keypad.add_argument("state", help="state file of a meter made with `init --keypad`")
    keypad.add_argument("token", help="the 20 digits; spaces and dashes between them are allowed")
    keypad.set_defaults(handler=cmd_keypad)
    return parser


def add_keypad_init_options(init: argparse.ArgumentParser) -> None:
    """``init --keypad`` and the STS identity of a keypad meter."""
    sts = init.add_argument_group(
        "keypad (STS) meter",
        "with --keypad the meter takes 20-digit STS tokens instead of cards; "
        "--pan, --sgc, --ti, --krn and --kt are then required",
    )
    sts.add_argument("--keypad", action="store_true", help="make a keypad (STS) meter")
    sts.add_argument("--pan", help="18-digit primary account number (IIN, DRN, check digit)")
    sts.add_argument("--sgc", help="supply group code, 6 digits")
    sts.add_argument("--ti", help="tariff index, 2 digits")
    sts.add_argument("--krn", help="key revision number, 1 to 9")
    sts.add_argument("--kt", help="key type, 0 to 3")
    sts.add_argument(
        "--base-date", choices=["1993", "2014", "2035"], default="2014", help="default 2014"
    )
    sts.add_argument("--ea", choices=["07", "09", "11"], default="07", help="default 07 (STA)")
    sts.add_argument("--dkga", choices=["02", "04"], default="04", help="default 04")
    sts.add_argument(
        "--tables", help="production STA tables, JSON {s1, s2, p} (EA07; default: sample tables)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_handler("cardmeter", args, (StateError, UsageError, ValueError))


def _card_meter_only(path: str, command: str) -> None:
    if is_keypad_state(path):
        raise UsageError(f"{path} is a keypad meter: `{command}` is for card meters")


def _open(path: str, command: str) -> tuple[StateStore, MeterState, SecurityModule]:
    _card_meter_only(path, command)
    store = StateStore(path)
    state = store.load()
    return store, state, SecurityModule.load(sam_path(path))


def cmd_init(args: argparse.Namespace) -> int:
    from cardlayout.codec import encode_digits
    from cardlayout.security.diversify import CardKeys
    from cardlayout.security.keystore import open_keystore

    encode_digits(args.meter_no, 6, field="meter_no")
    if set(args.meter_no) == {"0"}:
        raise UsageError("meter number 000000000000 means 'any meter' and cannot be a meter's own")
    if args.keypad:
        return cmd_init_keypad(args)
    given = [
        f"--{name}" for name in ("pan", "sgc", "ti", "krn", "kt", "tables") if getattr(args, name)
    ]
    if given:
        raise UsageError(f"{', '.join(given)} describe a keypad meter: add --keypad")
    try:
        ZoneInfo(args.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"unknown time zone {args.timezone!r}") from None
    store = StateStore(args.state)
    if store.exists():
        raise UsageError(f"{args.state} exists already: a meter is made once")
    clock = datetime.fromisoformat(args.clock) if args.clock else MeterState("0").clock
    if clock.tzinfo is None:
        raise UsageError("--clock needs a UTC offset, e.g. 2026-01-01T00:00+08:00")
    with open_keystore(args.keystore) as keystore:
        sam = SecurityModule.provision(CardKeys(keystore), args.meter_no)
    state = MeterState(
        meter_no=args.meter_no, utility=args.utility, timezone=args.timezone, clock=clock
    )
    sam.save(sam_path(args.state))
    store.save(state)
    print(json.dumps({"meter_no": args.meter_no, "keys": sam.check_values()}))
    return 0


def _int_option(args: argparse.Namespace, name: str) -> int:
    text = getattr(args, name)
    if not text.isdigit():
        raise UsageError(f"--{name} must be a decimal number, not {text!r}")
    return int(text)


def cmd_init_keypad(args: argparse.Namespace) -> int:
    """A keypad meter whose decoder key the key store derives, as the centre's does."""
    from cardlayout.security.keystore import open_keystore
    from cardlayout.sts.identity import (
        BaseDate,
        EncryptionAlgorithm,
        KeyGeneration,
        MeterIdentity,
    )
    from cardlayout.sts.tables import load_tables
    from cardlayout.sts.tokens import TransferSubclass
    from cardlayout.sts.vending import store_decoder_key
    from cardmeter.keypad import KeypadMeter, decoder_key_check

    missing = [f"--{n}" for n in ("pan", "sgc", "ti", "krn", "kt") if getattr(args, n) is None]
    if missing:
        raise UsageError(f"a keypad meter needs {', '.join(missing)}")
    if args.clock:
        raise UsageError("--clock is for card meters: a keypad meter keeps STS time (UTC)")
    if args.tables and args.ea != "07":
        raise UsageError(f"--tables are STA (EA07) tables; EA{args.ea} does not use them")
    identity = MeterIdentity(
        pan=args.pan,
        sgc=args.sgc,
        ti=_int_option(args, "ti"),
        krn=_int_option(args, "krn"),
        kt=_int_option(args, "kt"),
        base_date=BaseDate(int(args.base_date)),
        ea=EncryptionAlgorithm(args.ea),
        dkga=KeyGeneration(args.dkga),
    )
    tables = load_tables(Path(args.tables)) if args.tables else None
    store = KeypadStore(args.state)
    if store.exists():
        raise UsageError(f"{args.state} exists already: a meter is made once")
    with open_keystore(args.keystore) as keystore:
        decoder_key = store_decoder_key(keystore, identity)
    meter = KeypadMeter.new(
        identity,
        decoder_key,
        tables,
        transfer=TransferSubclass[Utility(args.utility).name],
        meter_no=args.meter_no,
        tables_source=str(Path(args.tables).resolve()) if args.tables else None,
    )
    store.save(meter)
    print(
        json.dumps(
            {
                "meter_no": args.meter_no,
                "keypad": True,
                "pan": identity.pan,
                "decoder_key_check": decoder_key_check(decoder_key),
            }
        )
    )
    return 0


def cmd_keypad(args: argparse.Namespace) -> int:
    store = KeypadStore(args.state)
    meter = store.load()
    digits = "".join(args.token.split()).replace("-", "")
    outcome = meter.enter(digits)
    if outcome.accepted:
        store.save(meter)
    print(json.dumps(outcome.as_dict()))
    if not outcome.accepted:
        print(f"cardmeter: token refused: {outcome.reason}", file=sys.stderr)
        return 1
    return 0


def cmd_insert(args: argparse.Namespace) -> int:
    from cardmeter.insertion import Insertion

    store, state, sam = _open(args.state, "insert")
    state.power_up()
    store.save(state)
    channel = open_channel(args)
    try:
        outcome = Insertion(state, sam, store.save).take(channel)
    finally:
        channel.close()
    state.running = False
    store.save(state)
    print(json.dumps(outcome.to_json()))
    return 0


def _intervals(args: argparse.Namespace, state: MeterState) -> Iterable[tuple[datetime, int]]:
    from cardmeter import profiles

    if args.csv:
        return profiles.from_csv(Path(args.csv))
    if args.profile not in profiles.PROFILES:
        raise UsageError(
            f"unknown profile {args.profile!r}; choose one of {', '.join(profiles.PROFILES)}"
        )
    return profiles.PROFILES[args.profile](state.clock, args.days, args.seed)


def cmd_run(args: argparse.Namespace) -> int:
    from cardmeter.metering import advance

    if args.days < 1:
        raise UsageError("--days must be 1 or more")
    _card_meter_only(args.state, "run")
    store = StateStore(args.state)
    state = store.load()
    before_used, before_quantity = state.cumulative_used, state.cumulative_quantity
    events_before = len(state.events)
    state.power_up()  # a power loss since the last run shows in this run's events
    intervals = list(_intervals(args, state))
    if intervals and intervals[0][0] < state.clock:
        raise UsageError(
            f"the readings start at {intervals[0][0].isoformat()}, before the meter's clock "
            f"{state.clock.isoformat()}: they would be billed twice"
        )
    total = len(intervals)
    for done, (start, quantity) in enumerate(intervals, 1):
        advance(state, start, quantity)
        store.save(state)  # power may go at any moment: at most this interval is lost
        if sys.stderr.isatty() and (done % 96 == 0 or done == total):
            print(f"\rday {done // 96} of {args.days}", end="", file=sys.stderr, flush=True)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    state.running = False
    store.save(state)
    summary = {
        "intervals": total,
        "energy": state.cumulative_quantity - before_quantity,
        "charged": state.cumulative_used - before_used,
        "remaining": state.remaining,
        "relay": "closed" if state.relay_closed else "open",
        "events": jsonable(state.events[events_before:]),
    }
    print(json.dumps(summary))
    return 0


def status_json(state: MeterState, sam: SecurityModule | None = None) -> dict[str, Any]:
    """Every register, decoded; keys as check values only."""
    from cardmeter import credit

    doc = state.to_json()
    doc.pop("format", None)
    for name in ("parameters_frame", "current_tariff_frame", "backup_tariff_frame"):
        doc.pop(name, None)
    doc["parameters"] = jsonable(state.parameters)
    doc["current_tariff"] = jsonable(state.current_tariff)
    doc["backup_tariff"] = jsonable(state.backup_tariff)
    doc["supply"] = credit.supply_state(state)
    doc["overdraft_used"] = state.overdraft_used
    if sam is not None:
        doc["key_check_values"] = sam.check_values()
    return doc


def cmd_status(args: argparse.Namespace) -> int:
    if is_keypad_state(args.state):
        print(json.dumps(KeypadStore(args.state).load().status(), indent=2))
        return 0
    _, state, sam = _open(args.state, "status")
    print(json.dumps(status_json(state, sam), indent=2))
    return 0


def cmd_tamper(args: argparse.Namespace) -> int:
    if is_keypad_state(args.state):
        keypad_store = KeypadStore(args.state)
        meter = keypad_store.load()
        meter.set_tamper()
        keypad_store.save(meter)
        print(json.dumps({"tamper": args.kind, "keypad": True}))
        return 0
    store = StateStore(args.state)
    state = store.load()
    state.tamper = True
    state.record(TAMPER_KINDS[args.kind], state.clock)
    store.save(state)
    print(json.dumps({"tamper": args.kind, "time": state.clock.isoformat()}))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
