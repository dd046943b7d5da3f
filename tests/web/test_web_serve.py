"""`cardcenter serve` and `cardcenter operator add` as an administrator runs them."""

from __future__ import annotations

import http.cookiejar
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from centre_support import KEYSTORE_PASSPHRASE, make_keystore
from sqlalchemy import select
from werkzeug.security import check_password_hash

from cardcenter.cli.serve import THREADS
from cardcenter.core.db import make_engine, session_factory
from cardcenter.operators.models import Operator, Role

CLI = str(Path(sys.executable).with_name("cardcenter"))
START_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def environment(tmp_path: Path) -> dict[str, str]:
    make_keystore(tmp_path / "keys.json").close()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CARDCENTER_") or k.endswith("PG_URL")
    }
    env.update(
        CARDCENTER_DATA_DIR=str(tmp_path),
        CARDLAYOUT_KEYSTORE_PASSPHRASE=KEYSTORE_PASSPHRASE,
        CARDCENTER_SITE="East",
    )
    return env


def wait_for(url: str, process: subprocess.Popen[str]) -> int:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                status: int = answer.status
                return status
        except (urllib.error.URLError, ConnectionError):
            if process.poll() is not None:
                raise AssertionError(f"cardcenter serve ended: {process.communicate()}") from None
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing answers at {url}") from None
            time.sleep(0.1)


def stop(process: subprocess.Popen[str]) -> tuple[int, str]:
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=20)
    return process.returncode, err


def burst(url: str, clients: int, each: int = 4) -> list[int]:
    """``clients`` threads at once, ``each`` requests apiece: the statuses."""
    start = threading.Barrier(clients)
    statuses: list[int] = []

    def client() -> None:
        start.wait()
        for _ in range(each):
            with urllib.request.urlopen(url, timeout=20) as answer:
                statuses.append(answer.status)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def test_serve_migrates_gives_admin_a_password_and_serves(tmp_path: Path) -> None:
    env = environment(tmp_path)
    port = free_port()
    process = subprocess.Popen(
        [CLI, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        assert wait_for(f"{base}/login", process) == 200
        # log in as admin through the real server, with the password printed at start
        assert process.stderr is not None
        first = process.stderr.readline()
        match = re.search(r"the password (\S+) \(shown this once", first)
        assert match, first
        cookies = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )
        form = cookies.open(f"{base}/login").read().decode()
        token = re.search(r'name="csrf_token" value="([^"]+)"', form)
        assert token is not None
        body = urllib.parse.urlencode(
            {"username": "admin", "password": match.group(1), "csrf_token": token.group(1)}
        ).encode()
        dashboard = cookies.open(f"{base}/login", data=body).read().decode()
        assert 'id="reader-panel"' in dashboard and "East" in dashboard
        assert burst(f"{base}/login", clients=3 * THREADS) == [200] * 3 * THREADS * 4
    finally:
        status, err = stop(process)
    assert status == 0, err
    assert err.rstrip().endswith("cardcenter: stopped")
    # requests waited for waitress's threads in the burst, and that is no news to log
    assert "Task queue depth" not in err
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600
    engine = make_engine(f"sqlite:///{tmp_path / 'cardcenter.db'}")
    try:
        with session_factory(engine)() as session:
            admin = session.scalars(select(Operator)).one()
            assert (admin.username, admin.role, admin.site) == ("admin", Role.ADMINISTRATOR, "East")
            assert admin.password_hash and check_password_hash(admin.password_hash, match.group(1))
    finally:
        engine.dispose()


def test_operator_add_for_scripts_then_serve_makes_no_admin(tmp_path: Path) -> None:
    env = environment(tmp_path)
    subprocess.run([CLI, "init"], env=env, check=True, capture_output=True, timeout=60)
    added = subprocess.run(
        [CLI, "operator", "add", "mei", "--role", "supervisor", "--password-stdin", "--json"],
        env=env,
        input="mei-secret-pass\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert added.returncode == 0, added.stderr
    assert '"role": "supervisor"' in added.stdout
    short = subprocess.run(
        [CLI, "operator", "add", "nia", "--password-stdin"],
        env=env,
        input="short\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert short.returncode == 1 and short.stderr.startswith("cardcenter: password: give 8")
    port = free_port()
    process = subprocess.Popen(
        [CLI, "serve", "--port", str(port)],
        env={**env, "CARDCENTER_ADMIN_PASSWORD": "unused-admin-password"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_for(f"http://127.0.0.1:{port}/login", process) == 200
    finally:
        status, err = stop(process)
    assert status == 0 and "password" not in err, err


def test_what_the_start_made_is_kept_out_of_full_collections() -> None:
    """spare_the_collector: what is alive at the start is frozen (no full collection walks
    it again), not freed; garbage made later is still collected."""
    import gc

    from cardcenter.cli.serve import spare_the_collector

    kept = [[n] for n in range(1000)]  # lists: objects the collector tracks
    try:
        spare_the_collector()
        assert gc.get_freeze_count() >= len(kept)
        walked = {id(obj) for obj in gc.get_objects()}
        assert not any(id(obj) in walked for obj in kept)
        assert [obj[0] for obj in kept] == list(range(1000))
        cycle: list[object] = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1
    finally:
        gc.unfreeze()
