"""The ``cardmeter`` command line: one simulated meter in a state file.

``init`` makes a factory-new meter, ``insert`` lets it take the card in a
PC/SC reader, ``run`` consumes energy over simulated time, ``status`` prints
the registers, ``tamper`` records a tamper event. Output is JSON; errors are
one sentence and exit status 1.
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_handler("cardmeter", args, (StateError, UsageError, ValueError))


def _open(path: str) -> tuple[StateStore, MeterState, SecurityModule]:
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


def cmd_insert(args: argparse.Namespace) -> int:
    from cardmeter.insertion import Insertion

    store, state, sam = _open(args.state)
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
    _, state, sam = _open(args.state)
    print(json.dumps(status_json(state, sam), indent=2))
    return 0


def cmd_tamper(args: argparse.Namespace) -> int:
    store = StateStore(args.state)
    state = store.load()
    state.tamper = True
    state.record(TAMPER_KINDS[args.kind], state.clock)
    store.save(state)
    print(json.dumps({"tamper": args.kind, "time": state.clock.isoformat()}))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
