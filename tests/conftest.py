"""Fixtures shared by every test package.

The PC/SC tests run through the real pcscd with the vsmartcard vpcd driver
(``scripts/setup`` installs and starts both). Missing infrastructure fails
those tests rather than skipping them: a skipped end-to-end suite looks green
and proves nothing.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from collections.abc import Iterator

import pytest

VPCD_READER_PREFIX = "Virtual PCD"
VPCD_READERS_WAIT = 5.0
VPCD_LOCK_WAIT = 120.0


@pytest.fixture(scope="session")
def pcscd() -> list[str]:
    """The vpcd reader names pcscd lists, first slot (port 35963) first.

    Fails the test, with what to do, if pcscd is not running or does not
    list both Virtual PCD readers. Waits a few seconds for them, since pcscd
    registers its readers only after it has started.
    """
    from cardlayout.errors import CardIOError
    from cardlayout.transport.pcsc import list_readers

    deadline = time.monotonic() + VPCD_READERS_WAIT
    while True:
        try:
            readers = list_readers()
        except CardIOError as exc:
            pytest.fail(f"{exc}; run scripts/setup", pytrace=False)
        virtual = sorted(name for name in readers if name.startswith(VPCD_READER_PREFIX))
        if len(virtual) >= 2:
            return virtual
        if time.monotonic() > deadline:
            pytest.fail(
                f"pcscd lists {readers!r}, not the two {VPCD_READER_PREFIX!r} readers of the "
                "vsmartcard-vpcd driver; run scripts/setup (it restarts a pcscd that was "
                "started before the driver was installed)",
                pytrace=False,
            )
        time.sleep(0.2)


@pytest.fixture
def vpcd_reader(pcscd: list[str]) -> Iterator[str]:
    """The reader a :class:`~cardlayout.vcard.vpcd.VpcdBridge` on port 35963 fills.

    pcscd names a reader's slots "<name> <reader> <slot>"; vpcd's slot 0 is
    the port of reader.conf (35963), slot 1 the next port.

    The reader is the machine's, not the test run's: two test runs at once
    (a developer's and an agent's, say) would put cards into it over each
    other and talk to the wrong one. A lock file held for the test makes
    them take turns.
    """
    first_slot = [name for name in pcscd if name.endswith(" 00")]
    with _machine_lock("cardprepay-vpcd.lock"):
        yield first_slot[0] if first_slot else pcscd[0]


class _machine_lock:
    """An exclusive ``flock`` on a file in the temp directory, with a wait limit."""

    def __init__(self, name: str) -> None:
        self.path = os.path.join(tempfile.gettempdir(), name)
        self.fd = -1

    def __enter__(self) -> None:
        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o666)
        deadline = time.monotonic() + VPCD_LOCK_WAIT
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(self.fd)
                    pytest.fail(
                        f"another test run has held {self.path} for {VPCD_LOCK_WAIT:g} s",
                        pytrace=False,
                    )
                time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
