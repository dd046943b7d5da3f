"""``cardcenter report``, ``cardcenter findings`` and ``cardcenter import``."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path
from typing import Any

from cardcenter.cli.context import (
    add_common,
    config_of,
    emit,
    money_arg,
    progress_bar,
    sessions_of,
)
from cardcenter.core.db import transaction, utcnow
from cardcenter.core.errors import InvalidInputError
from cardcenter.operators.services import ensure_operator
from cardcenter.reconciliation.bulk import BATCH_SIZE, SERVER_BATCH_SIZE, import_records
from cardcenter.reconciliation.models import FindingStatus
from cardcenter.reconciliation.services import close_finding, list_findings
from cardcenter.reports.export import to_csv, to_json, to_text
from cardcenter.reports.services import REPORTS
from cardlayout.security.diversify import CardKeys
from cardlayout.security.keystore import open_keystore


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    report = sub.add_parser(
        "report",
        help="reports: " + ", ".join(REPORTS),
        description="Print a report as a table, CSV (--csv) or JSON (--json).",
    )
    report.add_argument("kind", choices=sorted(REPORTS))
    report.add_argument("--from", dest="start", type=date.fromisoformat, help="sales: first day")
    report.add_argument("--to", dest="end", type=date.fromisoformat, help="sales: last day")
    report.add_argument("--site", help="sales: one site")
    report.add_argument("--operator", help="sales: one operator")
    report.add_argument(
        "--timezone",
        help="sales: days in this IANA time zone (default CARDCENTER_TIMEZONE, else TZ, else UTC)",
    )
    report.add_argument("--months", type=int, default=12, help="consumption: months back")
    report.add_argument("--category", help="consumption: one customer category")
    report.add_argument("--days", type=int, default=30, help="non-buying: days without a sale")
    report.add_argument("--threshold", type=money_arg, help="low-credit: below this balance")
    report.add_argument("--status", default="open", help="findings: open, closed or all")
    report.add_argument("--csv", action="store_true", help="print CSV")
    report.add_argument("--output", type=Path, help="write to this file instead of stdout")
    add_common(report)
    report.set_defaults(handler=run_report)

    findings = sub.add_parser("findings", help="reconciliation findings: list, close")
    actions = findings.add_subparsers(dest="findings_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="list findings")
    listing.add_argument("--status", choices=("open", "closed", "all"), default="open")
    add_common(listing)
    listing.set_defaults(handler=run_findings_list)
    close = actions.add_parser("close", help="close a finding with a note")
    close.add_argument("finding", type=int, metavar="ID")
    close.add_argument("--note", required=True, help="what was found and done")
    add_common(close)
    close.set_defaults(handler=run_findings_close)

    bulk = sub.add_parser(
        "import",
        help="import write-backs collected by reading cards (JSON lines)",
        description="Verify and reconcile the write-back records of an offline card reader "
        "(one JSON object per line: meter_no, customer_no, card_serial, write_back, history). "
        "Re-importing a file reconciles nothing twice.",
    )
    bulk.add_argument("file", type=Path)
    bulk.add_argument(
        "--batch",
        type=int,
        default=None,
        help=(
            f"lines per transaction, blank ones count ({BATCH_SIZE:,} on SQLite, "
            f"{SERVER_BATCH_SIZE:,} on PostgreSQL)"
        ),
    )
    add_common(bulk, keys=True)
    bulk.set_defaults(handler=run_import)


def _filters(args: argparse.Namespace) -> dict[str, Any]:
    kind = args.kind
    if kind == "sales":
        return {
            "start": args.start,
            "end": args.end,
            "site": args.site,
            "operator": args.operator,
            "timezone": args.timezone or config_of(args).timezone,
        }
    if kind == "consumption":
        return {"months": args.months, "category": args.category}
    if kind == "non-buying":
        return {"days": args.days, "now": utcnow()}
    if kind == "low-credit":
        return {"threshold": args.threshold}
    return {"status": args.status}


def run_report(args: argparse.Namespace) -> int:
    with sessions_of(args) as sessions, sessions() as session:
        report = REPORTS[args.kind](session, **_filters(args))
    text = to_json(report) if args.json else to_csv(report) if args.csv else to_text(report)
    if args.output:
        args.output.write_text(text, encoding="utf-8", newline="")
        print(f"{args.kind} report: {len(report.rows)} rows written to {args.output}")
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def _finding(f: Any) -> dict[str, Any]:
    return {
        "id": f.id,
        "kind": str(f.kind),
        "status": str(f.status),
        "customer_id": f.customer_id,
        "meter_id": f.meter_id,
        "detail": f.detail,
        "created_at": f.created_at.isoformat(),
        "note": f.note,
    }


def run_findings_list(args: argparse.Namespace) -> int:
    status = None if args.status == "all" else FindingStatus(args.status)
    with sessions_of(args) as sessions, sessions() as session:
        rows = [_finding(f) for f in list_findings(session, status=status)]
    return emit(
        args,
        rows,
        lambda rs: (
            "\n".join(f"#{r['id']} {r['status']} {r['kind']}: {r['detail']}" for r in rs)
            or "no findings"
        ),
    )


def run_findings_close(args: argparse.Namespace) -> int:
    config = config_of(args)
    with sessions_of(args) as sessions, transaction(sessions) as session:
        operator = ensure_operator(session, config.operator, site=config.site)
        finding = close_finding(session, args.finding, operator_id=operator.id, note=args.note)
        result = _finding(finding)
    return emit(args, result)


def run_import(args: argparse.Namespace) -> int:
    if args.batch is not None and args.batch < 1:
        raise InvalidInputError("--batch", "give 1 or more")
    path: Path = args.file
    with path.open(encoding="utf-8") as handle:
        total = sum(1 for _ in handle)
    config = config_of(args)
    show = None if args.json else progress_bar(f"importing {path.name}")
    with (
        sessions_of(args) as sessions,
        open_keystore(config.keystore) as store,
        path.open(encoding="utf-8") as handle,
    ):
        summary = import_records(
            sessions, CardKeys(store), handle, total=total, progress=show, batch_size=args.batch
        )
    result = {
        "records": summary.records,
        "reconciled": summary.reconciled,
        "duplicates": summary.duplicates,
        "stale": summary.stale,
        "findings": summary.findings,
        "refused": [f"line {line}: {reason}" for line, reason in summary.refused],
    }
    return emit(args, result)
