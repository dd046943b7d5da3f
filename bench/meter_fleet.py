"""How fast the numpy fleet meters, and how fast it writes the card write-backs.

Run: ``.venv/bin/python bench/meter_fleet.py [--meters 100000] [--days 30] [--seed 1]
[--out FILE] [--jobs N]``

Builds a fleet (:meth:`cardmeter.fleet.Fleet.build`, default tariff mix),
runs it in 15-minute intervals with customers visiting and buying, then has
every customer insert the card once more and produces the MAC'd write-back
and history of each meter with master keys made for the run in a temporary
key file (low scrypt cost: the key file is thrown away). With ``--out`` the
records are written as JSON lines (the offline card writer's format,
:mod:`cardmeter.fleet`), else only made and counted. A progress line goes to
stderr; the figures go to stdout.

The simulation is one process (numpy array operations). The write-backs are
four AES-CMACs per meter in Python (key diversification in the key store,
history MAC, write-back MAC), so they are made by ``--jobs`` forked worker
processes (default: one per CPU), each on a slice of the fleet: the workers
inherit the fleet and the opened key store by ``fork`` and write their slice
to a part file, which the parent joins in meter order.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cardlayout.security.diversify import CardKeys
from cardlayout.security.keystore import init_master_keys, open_keystore
from cardmeter.fleet import SLOT_MINUTES, Fleet, WriteBackRecord, write_records

START = datetime(2026, 3, 1, tzinfo=UTC)
PASSPHRASE = "bench meter fleet"


class ProgressLine:
    """A progress line on stderr: percent, items done of total, elapsed seconds.

    On a terminal the line overwrites itself at most 10 times a second; into
    a file or pipe a new line is written every 10 s, so a log stays short.
    """

    def __init__(self, what: str, total: int) -> None:
        self.what = what
        self.total = total
        self.started = time.perf_counter()
        self.tty = sys.stderr.isatty()
        self.every = 0.1 if self.tty else 10.0
        self.shown = -self.every
        self.last = ""

    def __call__(self, done: int, total: int | None = None) -> None:
        total = self.total if total is None else total
        elapsed = time.perf_counter() - self.started
        percent = 100 * done / total if total else 100.0
        self.last = f"{self.what}: {percent:5.1f} %  {done:,} of {total:,}  {elapsed:7.1f} s"
        if elapsed - self.shown >= self.every:
            self.shown = elapsed
            self._show()

    def _show(self) -> None:
        if self.tty:
            print(f"\r{self.last}", end="", file=sys.stderr, flush=True)
        else:
            print(self.last, file=sys.stderr, flush=True)

    def end(self) -> None:
        """Show the final state and end the line."""
        if self.tty:
            print(f"\r{self.last}", file=sys.stderr, flush=True)
        elif self.last:
            print(self.last, file=sys.stderr, flush=True)


def counted(records: Iterator[WriteBackRecord]) -> int:
    """Make every record without storing it; return how many."""
    return sum(1 for _ in records)


@dataclass(frozen=True)
class Job:
    """What a forked worker needs: inherited, never pickled."""

    fleet: Fleet
    keys: CardKeys
    written_at: datetime
    parts: Path | None


_JOB: Job | None = None
"""Set in the parent just before the workers are forked."""


def make_slice(task: tuple[int, int, int]) -> int:
    """Worker: the records of meters ``start..stop`` into part file ``number`` (or counted)."""
    number, start, stop = task
    assert _JOB is not None, "make_slice runs in a worker forked after _JOB is set"
    records = _JOB.fleet.records(_JOB.keys, _JOB.written_at, range(start, stop))
    if _JOB.parts is None:
        return counted(records)
    return write_records(_JOB.parts / f"{number:06d}.jsonl", records)


def make_write_backs(
    fleet: Fleet, keys: CardKeys, out: Path | None, jobs: int, progress: ProgressLine
) -> int:
    """Insert every card, then make the records with ``jobs`` workers; return how many."""
    global _JOB
    written_at = fleet.clock
    fleet.insert_cards(written_at)
    chunk = max(1, min(2_000, fleet.n // (jobs * 4) or 1))
    tasks = [
        (k, start, min(start + chunk, fleet.n)) for k, start in enumerate(range(0, fleet.n, chunk))
    ]
    with tempfile.TemporaryDirectory(prefix="meter-fleet-parts-") as tmp:
        parts = Path(tmp) if out is not None else None
        _JOB = Job(fleet, keys, written_at, parts)
        done = 0
        try:
            if jobs == 1:
                for task in tasks:
                    done += make_slice(task)
                    progress(done)
            else:
                with multiprocessing.get_context("fork").Pool(jobs) as pool:
                    for count in pool.imap_unordered(make_slice, tasks):
                        done += count
                        progress(done)
        finally:
            _JOB = None
        if out is not None and parts is not None:
            join_parts([parts / f"{number:06d}.jsonl" for number, _, _ in tasks], out)
    return done


def join_parts(parts: Sequence[Path], out: Path) -> None:
    """Concatenate the part files into ``out``, which appears whole or not at all."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as joined:
            for path in parts:
                with path.open("rb") as part:
                    shutil.copyfileobj(part, joined)
            joined.flush()
            os.fsync(joined.fileno())
        os.replace(tmp_name, out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise


def peak_rss_mb() -> tuple[float, float]:
    """Peak resident set size (MB) of this process and of its largest worker (Linux: KiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, children


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--meters", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, help="write the records here (JSON lines)")
    parser.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, help="worker processes for the write-backs"
    )
    args = parser.parse_args(argv)
    if args.meters < 1 or args.days < 1 or args.jobs < 1:
        parser.error("--meters, --days and --jobs must be 1 or more")

    started = time.perf_counter()
    fleet = Fleet.build(args.meters, args.seed, START)
    build_s = time.perf_counter() - started

    line = ProgressLine("simulation", 0)
    started = time.perf_counter()
    run = fleet.run(args.days, SLOT_MINUTES, progress=line)
    sim_s = time.perf_counter() - started
    line.end()

    with tempfile.TemporaryDirectory(prefix="meter-fleet-") as tmp:
        store = open_keystore(
            str(Path(tmp) / "keys.json"), passphrase=PASSPHRASE, create=True, scrypt_n=2**10
        )
        init_master_keys(store)
        keys = CardKeys(store)
        line = ProgressLine("write-backs", args.meters)
        started = time.perf_counter()
        written = make_write_backs(fleet, keys, args.out, args.jobs, line)
        wb_s = time.perf_counter() - started
        line.end()

    meter_intervals = run.meter_intervals
    figures = [
        ("meters", f"{args.meters:,}"),
        ("days", f"{args.days}"),
        ("intervals", f"{run.intervals:,} of {SLOT_MINUTES} min"),
        ("meter-intervals", f"{meter_intervals:,}"),
        ("build (s)", f"{build_s:.2f}"),
        ("simulation (s)", f"{sim_s:.2f}"),
        ("meter-intervals per second", f"{meter_intervals / sim_s:,.0f}"),
        ("write-back records", f"{written:,}" + (f" -> {args.out}" if args.out else "")),
        ("write-backs (s)", f"{wb_s:.2f} with {args.jobs} process(es)"),
        ("write-backs per second", f"{written / wb_s:,.0f}"),
        ("purchases in the run", f"{run.purchases:,}"),
        ("relay trips / closes", f"{run.trips:,} / {run.closes:,}"),
        (
            "energy (kWh) / charged (currency)",
            f"{run.quantity / 100:,.2f} / {run.charged / 100:,.2f}",
        ),
        ("peak RSS (MB), main / largest worker", "{:,.0f} / {:,.0f}".format(*peak_rss_mb())),
    ]
    width = max(len(name) for name, _ in figures)
    for name, value in figures:
        print(f"{name:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
