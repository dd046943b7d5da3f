"""Writing a :class:`~cardcenter.reports.services.Report` out: JSON, CSV, a terminal table.

The edge where integers become decimal text. JSON keeps the books' integers (minor units,
0.01 units) and names the columns that carry them, so a program reads exact values and can
rebuild the report (:func:`from_json`); CSV and text are for people and spreadsheets and show
those columns as decimals ("12.34", "-0.05"), computed with integer arithmetic, never float.

CSV holds the rows only (one header, one line per row, RFC 4180 quoting and CRLF line ends
as the :mod:`csv` module writes them), so a spreadsheet can sum or filter it; the totals are
in the JSON and at the foot of the text table.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from cardcenter.reports.services import Report


def decimal_text(value: int, places: int = 2) -> str:
    """``1234`` as ``"12.34"``, ``-5`` as ``"-0.05"``: integer units of 10**-places as text."""
    sign = "-" if value < 0 else ""
    whole, fraction = divmod(abs(value), 10**places)
    return f"{sign}{whole}.{fraction:0{places}d}" if places else f"{sign}{whole}"


def to_json(report: Report) -> str:
    """The report as one JSON object: kind, columns, rows, totals and the unit columns.

    Money and quantities stay integers (minor units and 0.01 units): ``money_columns`` and
    ``quantity_columns`` say which. Keys keep the report's order.
    """
    return json.dumps(
        {
            "kind": report.kind,
            "columns": list(report.columns),
            "rows": report.rows,
            "totals": report.totals,
            "money_columns": list(report.money_columns),
            "quantity_columns": list(report.quantity_columns),
        },
        ensure_ascii=False,
    )


def from_json(text: str) -> Report:
    """The report :func:`to_json` wrote, rebuilt (for a client of the API, and the tests)."""
    data = json.loads(text)
    return Report(
        kind=data["kind"],
        columns=tuple(data["columns"]),
        rows=data["rows"],
        totals=data["totals"],
        money_columns=tuple(data.get("money_columns", ())),
        quantity_columns=tuple(data.get("quantity_columns", ())),
    )


def _cell(report: Report, column: str, value: Any) -> str:
    """One value as text: unit columns as decimals, None as empty (CSV and text alike)."""
    if value is None:
        return ""
    units = column in report.money_columns or column in report.quantity_columns
    if units and isinstance(value, int) and not isinstance(value, bool):
        return decimal_text(value)
    return str(value)


def to_csv(report: Report) -> str:
    """The rows as CSV: a header of the column names, then one record per row."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(report.columns)
    for row in report.rows:
        writer.writerow([_cell(report, column, row.get(column)) for column in report.columns])
    return out.getvalue()


def _flatten(totals: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, str, Any]]:
    """``(dotted path, leaf key, value)`` for every leaf of a nested totals dict."""
    for key, value in totals.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _flatten(value, f"{path}.")
        else:
            yield path, key, value


def _one_line(text: str) -> str:
    """A cell for a terminal table: line breaks and tabs would break the columns."""
    return " ".join(text.splitlines()).replace("\t", " ")


def to_text(report: Report) -> str:
    """An aligned table for a terminal, then the totals, one per line (nested keys dotted).

    Numbers (and decimal columns) are right-aligned, text left-aligned; line breaks inside a
    value become spaces; an empty report says so rather than printing a bare header.
    """
    header = list(report.columns)
    cells = [
        [_one_line(_cell(report, c, row.get(c))) for c in report.columns] for row in report.rows
    ]
    numeric = [
        c in report.money_columns
        or c in report.quantity_columns
        or any(
            isinstance(row.get(c), int) and not isinstance(row.get(c), bool) for row in report.rows
        )
        for c in report.columns
    ]
    widths = [max([len(h)] + [len(line[i]) for line in cells]) for i, h in enumerate(header)]

    def line(values: list[str]) -> str:
        parts = [
            value.rjust(width) if right else value.ljust(width)
            for value, width, right in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    lines = [f"{report.kind} report", "", line(header), "  ".join("-" * w for w in widths)]
    lines += [line(values) for values in cells] if cells else ["(no rows)"]
    leaves = list(_flatten(report.totals))
    if leaves:
        lines.append("")
        texts = [(path, _one_line(_cell(report, key, value))) for path, key, value in leaves]
        left = max(len(path) for path, _ in texts)
        right = max(len(text) for _, text in texts)
        lines += [f"{path.ljust(left)}  {text.rjust(right)}" for path, text in texts]
    return "\n".join(lines) + "\n"
