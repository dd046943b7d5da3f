"""The vending API's throughput and latency, from a second process on loopback.

Run: ``.venv/bin/python bench/web.py [--db sqlite|postgresql|both] [--requests N]
[--clients 1,16] [--meters N]``

For each database: a fresh one (a SQLite file, or a new PostgreSQL schema
as ``bench/centre.py`` makes), a key store, ``--meters`` keypad customers
and one API client; then ``cardcenter serve`` in its own process (waitress,
8 threads), driven from this process over HTTP/1.1 keep-alive connections
(``http.client``, one per client thread). Each client thread sends
``--requests`` requests one after the other (after a few unmeasured ones to
warm up), each a new sale with its own request id, to a meter picked at
random:

- **sale**: ``POST /api/keypad/sales``, a token vend: price, energy, the STS
  token made and encrypted, recorded with the sale, its journal entries and
  its audit entry in one transaction, committed to disk;
- **trial**: ``POST /api/keypad/trial``, the same pricing and key change plan,
  nothing made or written.

Printed: requests per second and the 50th and 99th percentile latency per
operation and number of concurrent clients, and the server's CPU time per
request (user + system, warm-up requests included), which a busy machine
does not distort as it does the rates. The machine's speed at the start and the
end is printed too (``bench/machine.py``). Card I/O is excluded: a card
sale's card write is made by the channel's own terminal, outside this
process and the centre. Target (issue 6): p99 under 50 ms at 16 clients.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from machine import reference  # bench/machine.py, beside this file
from sqlalchemy import text

from cardcenter.core.db import make_engine, session_factory, transaction, upgrade, utcnow
from cardcenter.customers.services import open_keypad_account
from cardcenter.operators.models import Role
from cardcenter.operators.services import add_api_client
from cardcenter.tariffs.models import TariffKind
from cardcenter.tariffs.services import add_tariff, get_or_create_category
from cardlayout.security.keystore import init_master_keys, open_keystore

PG_URL = os.environ.get("CARDCENTER_BENCH_PG_URL", "postgresql://root@127.0.0.1:5432/test")
PASSPHRASE = "bench"
PRICE = 5283
WARM_UP = 5
SERVE_WAIT = 60.0


@dataclass(frozen=True)
class Centre:
    url: str
    base: str
    auth: str
    pans: list[str]


def database(kind: str, work: Path) -> str:
    """A fresh migrated database: a SQLite file or a new PostgreSQL schema."""
    if kind == "sqlite":
        url = f"sqlite:///{work / 'bench.db'}"
    else:
        schema = f"cc_webbench_{uuid.uuid4().hex[:10]}"
        admin = make_engine(PG_URL)
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        admin.dispose()
        url = f"{PG_URL}{'&' if '?' in PG_URL else '?'}options=-csearch_path%3D{schema}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


def drop(url: str) -> None:
    if url.startswith("postgresql"):
        schema = url.rsplit("%3D", 1)[1]
        admin = make_engine(PG_URL)
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def populate(url: str, meters: int) -> tuple[list[str], str]:
    """A flat tariff, ``meters`` keypad customers and an API client: the PANs and credentials."""
    engine = make_engine(url)
    now = utcnow()
    pans = [f"600727{i:011d}0" for i in range(1, meters + 1)]
    try:
        with transaction(session_factory(engine)) as session:
            category = get_or_create_category(session, "residential", "Residential")
            add_tariff(
                session,
                "flat",
                TariffKind.FLAT,
                {"rate_prices": [PRICE]},
                category="residential",
                active_from=now - timedelta(days=30),
                now=now,
            )
            for n, pan in enumerate(pans):
                open_keypad_account(
                    session,
                    name=f"Customer {n}",
                    category_id=category.id,
                    pan=pan,
                    sgc="123456",
                    ti=1,
                    krn=1,
                    kt=2,
                    now=now,
                )
            client, secret = add_api_client(session, "bench", Role.CASHIER)
            token = base64.b64encode(f"{client.key_id}:{secret}".encode()).decode()
    finally:
        engine.dispose()
    return pans, f"Basic {token}"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serve(url: str, work: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CARDCENTER_DATABASE_URL": url,
        "CARDCENTER_KEYSTORE": str(work / "keys.json"),
        "CARDCENTER_DATA_DIR": str(work / "data"),
        "CARDLAYOUT_KEYSTORE_PASSPHRASE": PASSPHRASE,
        "CARDCENTER_ADMIN_PASSWORD": secrets.token_urlsafe(12),
        "CARDCENTER_SITE": "HQ",
    }
    cardcenter = Path(sys.executable).with_name("cardcenter")
    log = (work / "serve.log").open("wb")
    process = subprocess.Popen(
        [str(cardcenter), "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + SERVE_WAIT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"cardcenter serve ended: {(work / 'serve.log').read_text()}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/api/openapi.json")
            if conn.getresponse().status == 200:
                conn.close()
                return process
        except OSError:
            time.sleep(0.2)
    process.terminate()
    raise RuntimeError("cardcenter serve did not answer in time")


def server_cpu(process: subprocess.Popen[bytes]) -> float:
    """CPU seconds the server process has used (user + system, from ``/proc``).

    Its CPU time per request is the server's cost whatever else the machine
    runs, where the rates and latencies measured on a busy machine are not.
    """
    fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drive(centre: Centre, operation: str, clients: int, requests: int) -> dict[str, float]:
    """``clients`` threads, each sending ``requests`` requests in a row; the figures."""
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    start_line = threading.Barrier(clients + 1)
    host, port = centre.base.split(":")
    path = "/api/keypad/sales" if operation == "sale" else "/api/keypad/trial"

    def client(n: int) -> None:
        rng = random.Random(n)
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        mine: list[float] = []
        try:
            for i in range(WARM_UP + requests):
                if i == WARM_UP:
                    start_line.wait()
                body = {"meter": rng.choice(centre.pans), "amount": "100"}
                if operation == "sale":
                    body["request_id"] = f"bench-{uuid.uuid4().hex}"
                payload = json.dumps(body)
                headers = {"Authorization": centre.auth, "Content-Type": "application/json"}
                began = time.perf_counter()
                conn.request("POST", path, payload, headers)
                answer = conn.getresponse()
                data = answer.read()
                took = time.perf_counter() - began
                if answer.status not in (200, 201):
                    with lock:
                        failures.append(f"{answer.status} {data[:200]!r}")
                if i >= WARM_UP:
                    mine.append(took)
        finally:
            conn.close()
            with lock:
                latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    start_line.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed, e.g. {failures[0]}")
    ordered = sorted(latencies)
    return {
        "per_second": len(ordered) / elapsed,
        "p50_ms": 1000 * statistics.median(ordered),
        "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
        "requests": len(ordered),
    }


def bench(kind: str, args: argparse.Namespace) -> list[dict[str, object]]:
    work = Path(tempfile.mkdtemp(prefix="cc-webbench-"))
    url = database(kind, work)
    rows: list[dict[str, object]] = []
    process: subprocess.Popen[bytes] | None = None
    try:
        store = open_keystore(
            str(work / "keys.json"), passphrase=PASSPHRASE, create=True, scrypt_n=2**14
        )
        init_master_keys(store)
        store.close()
        pans, auth = populate(url, args.meters)
        port = free_port()
        process = serve(url, work, port)
        centre = Centre(url, f"127.0.0.1:{port}", auth, pans)
        for operation in ("sale", "trial"):
            for clients in args.clients:
                cpu = server_cpu(process)
                figures = drive(centre, operation, clients, args.requests)
                figures["server_cpu_ms"] = (
                    1000 * (server_cpu(process) - cpu) / (clients * (WARM_UP + args.requests))
                )
                rows.append({"db": kind, "operation": operation, "clients": clients, **figures})
                print(
                    f"{kind:10} {operation:5} {clients:3} clients: "
                    f"{figures['per_second']:7.1f} /s  p50 {figures['p50_ms']:6.1f} ms  "
                    f"p99 {figures['p99_ms']:6.1f} ms  "
                    f"server CPU {figures['server_cpu_ms']:4.1f} ms/request  "
                    f"({figures['requests']:.0f} requests)",
                    flush=True,
                )
    finally:
        if process is not None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
        drop(url)
        shutil.rmtree(work, ignore_errors=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="sqlite")
    parser.add_argument(
        "--requests", type=int, default=200, help="measured requests per client thread (200)"
    )
    parser.add_argument(
        "--clients",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[1, 16],
        help="numbers of concurrent clients, comma-separated (1,16)",
    )
    parser.add_argument("--meters", type=int, default=200, help="keypad customers (200)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    print(reference())
    rows = [row for kind in kinds for row in bench(kind, args)]
    print(reference())
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
