"""The billing centre's throughput: sales, reconciliations, a 100,000-customer bulk import.

Run: ``.venv/bin/python bench/centre.py [--db sqlite|postgresql|both] [--sales N]
[--customers N]``

- **sales/s**: whole sales through the desk's own steps (record pending with
  reconciliation check, pricing and the stale-card lock; then confirm with the
  journal), each step its own committed transaction (the pending one waits
  for the disk), with card I/O excluded: the card is replaced by what reading
  it would give. The cards carry no write-back, so no reconciliation is in it.
- **the database's own work for a sale**: the same statements, compiled once
  and run on the driver, in the same two transactions (the pending one
  waiting for the disk), with no pricing, planning or objects around them:
  the most any code could reach on this machine's disk.
- **reconciliations/s and the bulk import**: write-back records as an offline
  card reader collects them (sealed with each meter's write-back key), for
  ``--customers`` customers, imported with ``cardcenter.reconciliation.bulk``
  end to end (MAC checks included, in a forked process beside the writing
  one); the checking stage is also timed alone on one core, and the CPU time
  per write-back of each process is printed.

The machine's speed at the start and the end is printed too (``bench/machine.py``).

Targets on the 2-core machine (issue 4): 1,000 sales/s and 20,000
reconciliations/s on SQLite.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from machine import reference  # bench/machine.py, beside this file
from sqlalchemy import insert, text

from cardcenter.cards.models import Card, CardStatus
from cardcenter.cards.reading import CardReading
from cardcenter.core.db import (
    connection_transaction,
    make_engine,
    session_factory,
    transaction,
    upgrade,
)
from cardcenter.customers.models import Category, Customer, Meter
from cardcenter.reconciliation.bulk import default_batch_size, import_records
from cardcenter.sales import ledger, services
from cardcenter.sales.desk import _SALE_VISIT, Desk, SaleStart
from cardcenter.sales.services import PendingAction
from cardcenter.tariffs.models import Tariff, TariffKind, TariffVersion
from cardlayout.card.operations import (
    decode_history,
    decode_write_back,
    seal_meter_report,
    verify_meter_files_many,
)
from cardlayout.card.snapshot import CardSnapshot, FileState, FileStatus
from cardlayout.files import (
    HISTORY,
    PARAMETERS,
    PURSE,
    WRITE_BACK,
    CardType,
    History,
    InsertionResult,
    Parameters,
    Purse,
    UserType,
    Utility,
    WriteBack,
)
from cardlayout.security.diversify import CardKeys
from cardlayout.security.keystore import init_master_keys, open_keystore

PG_URL = os.environ.get("CARDCENTER_BENCH_PG_URL", "postgresql://root@127.0.0.1:5432/test")
START = datetime(2026, 1, 1, tzinfo=UTC)
PRICE = 5283


def database(kind: str, work: Path) -> tuple[str, object]:
    """A fresh migrated database: a SQLite file or a new PostgreSQL schema."""
    if kind == "sqlite":
        url = f"sqlite:///{work / 'bench.db'}"
        engine = make_engine(url)
        upgrade(engine)
        return url, engine
    schema = f"cc_bench_{uuid.uuid4().hex[:10]}"
    admin = make_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    url = f"{PG_URL}{'&' if '?' in PG_URL else '?'}options=-csearch_path%3D{schema}"
    engine = make_engine(url)
    upgrade(engine)
    return url, engine


def drop(kind: str, url: str) -> None:
    if kind == "postgresql":
        schema = url.rsplit("%3D", 1)[1]
        admin = make_engine(PG_URL)
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def meter_no(i: int) -> str:
    return f"{10_000_000 + i:012d}"


def customer_no(i: int) -> str:
    return f"{100_000_000_000 + i:012d}"


def serial(i: int) -> str:
    return f"5B{i:014X}"


def populate(engine: object, customers: int) -> None:
    """Customers, meters and active cards in bulk, as a migration from an old system would."""
    sessions = session_factory(engine)  # type: ignore[arg-type]
    with transaction(sessions) as session:
        category = Category(code="residential", name="Residential")
        session.add(category)
        session.flush()
        tariff = Tariff(name="flat", category_id=category.id)
        session.add(tariff)
        session.flush()
        session.add(
            TariffVersion(
                tariff_id=tariff.id,
                version=1,
                kind=TariffKind.FLAT,
                active_from=START - timedelta(days=365),
                structure={
                    "rate_prices": [PRICE],
                    "periods": [],
                    "tier_thresholds": [],
                    "tier_prices": [],
                    "settlement_dates": [],
                },
            )
        )
        cat_id = category.id
    chunk = 10_000
    with engine.begin() as conn:  # type: ignore[attr-defined]
        for lo in range(0, customers, chunk):
            ids = range(lo + 1, min(lo + chunk, customers) + 1)
            conn.execute(
                insert(Customer),
                [
                    {"id": i, "customer_no": customer_no(i), "name": f"Customer {i}",
                     "category_id": cat_id, "opened_at": START, "parameter_version": 1}
                    for i in ids
                ],
            )  # fmt: skip
            conn.execute(
                insert(Meter),
                [
                    {"id": i, "meter_no": meter_no(i), "customer_id": i, "installed_at": START,
                     "cumulative_quantity": 0, "cumulative_used": 0, "remaining": 0,
                     "parameter_version": 1, "tariff_version_id": 1, "loaded_count": 1,
                     "last_write_back_at": START}
                    for i in ids
                ],
            )  # fmt: skip
            conn.execute(
                insert(Card),
                [
                    {"id": i, "serial": serial(i), "customer_id": i, "meter_id": i,
                     "status": CardStatus.ACTIVE, "issued_at": START, "purchase_count": 1,
                     "purse_amount": 0, "registered": True}
                    for i in ids
                ],
            )  # fmt: skip
    if engine.dialect.name == "postgresql":  # type: ignore[attr-defined]
        with engine.begin() as conn:  # type: ignore[attr-defined]
            for table in ("customers", "meters", "cards"):
                conn.execute(
                    text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {customers})")
                )


def reading(i: int, count: int, amount: int) -> CardReading:
    """What reading card ``i`` would give: its purse as the books wrote it, no write-back."""
    params = Parameters(
        user_type=UserType.SINGLE_RATE,
        card_type=CardType.PURCHASE,
        meter_no=meter_no(i),
        customer_no=customer_no(i),
    )
    purse = Purse(amount=amount, purchase_count=count)
    files = {
        PARAMETERS.name: FileState(PARAMETERS, FileStatus.OK, b"", params),
        PURSE.name: FileState(PURSE, FileStatus.OK, b"", purse),
        WRITE_BACK.name: FileState(WRITE_BACK, FileStatus.CLEARED, b"", None),
    }
    snapshot = CardSnapshot(b"", bytes.fromhex(serial(i)), Utility.ELECTRICITY, files)
    return CardReading(snapshot, params, purse, None, FileStatus.CLEARED, None)


def bench_sales(engine: object, keys: CardKeys, sales: int, customers: int) -> tuple[float, float]:
    """Sales per second, and the CPU seconds per sale (a figure a busy machine barely moves)."""
    desk = Desk(session_factory(engine), keys, operator="bench", site="HQ")  # type: ignore[arg-type]
    purses = {i: (1, 0) for i in range(1, customers + 1)}
    cpu = time.process_time()
    begun = time.perf_counter()
    for n in range(sales):
        i = n % customers + 1
        count, amount = purses[i]
        started = desk.begin_sale(reading(i, count, amount), 1000, f"bench-{n}")
        assert isinstance(started, SaleStart)
        desk.finish_sale(started)  # the card was written and read back here
        purses[i] = (started.write.purse.purchase_count, started.write.purse.amount)
    elapsed = time.perf_counter() - begun
    return sales / elapsed, (time.process_time() - cpu) / sales


def bench_floor(engine: object, sales: int, customers: range) -> float:
    """Sales per second of the database's own work for a sale, with no Python work around it.

    The desk's statements, compiled once and run on the driver (the sale's
    look-up, its pending INSERT and the card's announcement, committed
    waiting for the disk; then the card's confirmation, the sale written and
    its three journal rows, committed without waiting), with nothing of the
    desk's own work between them: no pricing, no card write to plan, no
    objects. What any code on this machine's disk could reach at most.
    ``customers`` are ids no other sale has touched; operator 1 is the desk's (bench_sales made it).
    """
    factory = session_factory(engine)  # type: ignore[arg-type]
    look_up = _SALE_VISIT  # the desk's own, compiled once
    at = datetime.now(UTC)
    purses = {i: (1, 0) for i in customers}
    begun = time.perf_counter()
    for n in range(sales):
        i = customers[n % len(customers)]
        count, amount = purses[i]
        with connection_transaction(factory) as conn:
            look_up.first(conn, {"serial": serial(i), "request_id": f"floor-{n}", "at": at})
            sale_id = services._INSERT_SALE.scalar(
                conn,
                {"request_id": f"floor-{n}", "kind": "sale", "status": "pending",
                 "customer_id": i, "meter_id": i, "card_id": i, "operator_id": 1,
                 "site": "HQ", "tariff_version_id": 1, "purchase_count": count + 1,
                 "tendered": 1000, "fixed_charge": 0, "tax": 0, "credit": 1000,
                 "card_amount": amount + 1000, "parameter_version": 1, "breakdown": {},
                 "created_at": at, "written_at": None, "delivered_at": None,
                 "reversed_at": None, "reversed_by": None, "note": ""},
            )  # fmt: skip
            announced = services._ANNOUNCE.rowcount(
                conn,
                {"card_id": i, "was_count": count, "was_amount": amount,
                 "new_pending_action": "sale", "new_pending_count": count + 1,
                 "new_pending_amount": amount + 1000, "new_pending_sale_id": sale_id},
            )  # fmt: skip
            assert announced == 1
        with connection_transaction(factory, durable=False) as conn:
            services.commit_purse(conn, i, action=PendingAction.SALE, sale_id=sale_id,
                                  count=count + 1, amount=amount + 1000, at=at)  # fmt: skip
            services._WRITTEN.rowcount(conn, {"sale_id": sale_id, "at": at})
            ledger.post_all(
                conn,
                [("till:HQ", f"transit:{i}", 900, "credit"), ("till:HQ", "tax", 100, "tax"),
                 ("till:HQ", "fixed", 0, "fixed charge")],
                customer_id=i, sale_id=sale_id, operator_id=1,
            )  # fmt: skip
        purses[i] = (count + 1, amount + 1000)
    return sales / (time.perf_counter() - begun)


def records(keys: CardKeys, customers: int) -> tuple[list[str], float]:
    """One write-back per customer, a month after its baseline; sealed by its meter's key."""
    lines = []
    begun = time.perf_counter()
    meter_keys = keys.writeback_keys(meter_no(i) for i in range(1, customers + 1))
    for i in range(1, customers + 1):
        used = 4000 + i % 3000
        quantity = used * 10_000 // PRICE
        wb = WriteBack(
            user_type=UserType.SINGLE_RATE, ct_ratio=1, pt_ratio=1, meter_no=meter_no(i),
            customer_no=customer_no(i), remaining_amount=0, purchase_count=1,
            insertion_result=InsertionResult.NOTHING_TO_LOAD,
            written_at=START + timedelta(days=30), overdraft_used=used,
        )  # fmt: skip
        history = History(cumulative_used=used, cumulative_quantity=quantity)
        sealed, sealed_history = seal_meter_report(
            meter_keys[meter_no(i)], bytes.fromhex(serial(i)), wb, history
        )
        lines.append(
            json.dumps(
                {
                    "meter_no": meter_no(i),
                    "customer_no": customer_no(i),
                    "card_serial": serial(i),
                    "write_back": WRITE_BACK.encode(sealed).hex(),
                    "history": HISTORY.encode(sealed_history).hex(),
                }
            )
        )
    return lines, time.perf_counter() - begun


def mac_checks(keys: CardKeys, lines: list[str], batch: int) -> float:
    """Seconds to check every record in this process, as the import's checking stage does.

    JSON, hex, the two files decoded, the keys of a batch's meters derived at
    once and the batch's MACs checked together over the files' bytes (the
    import's ``cardcenter.reconciliation.bulk._check``, here with the public
    calls).
    """
    begun = time.perf_counter()
    for start in range(0, len(lines), batch):
        files = []
        for line in lines[start : start + batch]:
            record = json.loads(line)
            raw, raw_history = bytes.fromhex(record["write_back"]), bytes.fromhex(record["history"])
            wb, history = decode_write_back(raw), decode_history(raw_history)
            assert wb is not None
            files.append((bytes.fromhex(record["card_serial"]), wb, raw, history, raw_history))
        meter_keys = keys.writeback_keys(wb.meter_no for _, wb, _, _, _ in files)
        outcomes = verify_meter_files_many(
            [
                (meter_keys.value(wb.meter_no), card, wb, raw, history, raw_history)
                for card, wb, raw, history, raw_history in files
            ]
        )
        assert outcomes == [None] * len(files)
    return time.perf_counter() - begun


def _cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def run(kind: str, args: argparse.Namespace, keys: CardKeys) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url, engine = database(kind, Path(tmp))
        try:
            begun = time.perf_counter()
            populate(engine, args.customers)
            print(f"{kind}: {args.customers:,} customers with meters and cards loaded in "
                  f"{time.perf_counter() - begun:.1f} s")  # fmt: skip
            rate, cpu = bench_sales(engine, keys, args.sales, min(args.customers, args.sales))
            print(f"{kind}: {rate:,.0f} sales/s ({args.sales:,} sales, card I/O excluded; "
                  f"{cpu * 1e6:,.0f} us of CPU per sale in this process)")  # fmt: skip
            touched = min(args.customers, args.sales)  # the customers bench_sales sold to
            fresh = range(touched + 1, args.customers + 1)
            if not fresh:
                raise SystemExit("give --customers above --sales: the floor sells to fresh cards")
            floor = bench_floor(engine, args.sales, fresh)
            print(f"{kind}: the database's own work for a sale alone (its statements and two "
                  f"commits on the driver, nothing around them): {floor:,.0f} sales/s")  # fmt: skip
            lines, sealing = records(keys, args.customers)
            print(f"{kind}: {len(lines):,} write-back records sealed in {sealing:.1f} s "
                  "(the meters' work, not the centre's)")  # fmt: skip
            batch = args.batch or default_batch_size(kind)
            checking = mac_checks(keys, lines, batch)
            print(f"{kind}: checking alone (JSON, decoding, keys, both MACs) on one core: "
                  f"{len(lines) / checking:,.0f} records/s")  # fmt: skip
            done = [0]

            def progress(n: int, total: int | None) -> None:
                done[0] = n

            own = resource.getrusage(resource.RUSAGE_SELF)
            children = resource.getrusage(resource.RUSAGE_CHILDREN)
            begun = time.perf_counter()
            summary = import_records(
                session_factory(engine),  # type: ignore[arg-type]
                keys,
                lines,
                total=len(lines),
                progress=progress,
                batch_size=batch,
            )
            elapsed = time.perf_counter() - begun
            assert done[0] == summary.records == summary.reconciled == len(lines)
            print(
                f"{kind}: bulk reconciliation of {summary.records:,} write-backs end to end, "
                f"MAC checks included: {elapsed:.1f} s, {summary.records / elapsed:,.0f} "
                f"write-backs/s ({summary.reconciled:,} reconciled, {summary.findings:,} "
                f"findings, {len(summary.refused)} refused)"
            )
            writing = _cpu(resource.getrusage(resource.RUSAGE_SELF)) - _cpu(own)
            checking = _cpu(resource.getrusage(resource.RUSAGE_CHILDREN)) - _cpu(children)
            print(
                f"{kind}: CPU per write-back: {writing / summary.records * 1e6:.0f} us in this "
                f"process (the books, and the first batch's checks), "
                f"{checking / summary.records * 1e6:.0f} us in the checking process beside it"
            )
        finally:
            engine.dispose()  # type: ignore[attr-defined]
            drop(kind, url)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--sales", type=int, default=5000)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument(
        "--batch", type=int, default=None, help="lines a batch (the import's default)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = open_keystore(str(Path(tmp) / "k.json"), passphrase="bench", create=True,
                              scrypt_n=2**10)  # fmt: skip
        init_master_keys(store)
        keys = CardKeys(store)
        print(reference())
        for kind in ("sqlite", "postgresql") if args.db == "both" else (args.db,):
            run(kind, args, keys)
        print(reference())
    return 0


if __name__ == "__main__":
    sys.exit(main())
