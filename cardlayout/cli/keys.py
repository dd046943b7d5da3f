"""``cardlayout keys``: create and list the master keys.

Output shows purpose, version, key check value and back end, never a key
value: the KCV is what an operator compares with the key ceremony record.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TextIO

from cardlayout.security.keys import MAX_VERSION, KeyInfo
from cardlayout.security.keystore import init_master_keys, open_keystore

KEYSTORE_HELP = (
    "key store: the path of an encrypted key file (passphrase from "
    "CARDLAYOUT_KEYSTORE_PASSPHRASE or a prompt), or a PKCS#11 URI such as "
    "'pkcs11:token=LABEL?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:PIN'"
)


def add_keystore_argument(parser: argparse.ArgumentParser) -> None:
    """Add the ``--keystore SPEC`` option (also for other command groups)."""
    parser.add_argument("--keystore", required=True, metavar="SPEC", help=KEYSTORE_HELP)


def _version(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 1 <= value <= MAX_VERSION:
        raise argparse.ArgumentTypeError(f"version {value} is outside 1..{MAX_VERSION}")
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``keys init`` and ``keys list``."""
    keys = subparsers.add_parser(
        "keys", help="master keys: create, list", description="Master keys: create, list."
    )
    actions = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")

    init = actions.add_parser(
        "init",
        help="generate every purpose's master key",
        description=(
            "Generate the master key of every purpose at one version, inside the key "
            "store. A key file that does not exist is created (the passphrase is asked "
            "twice). Existing keys are never replaced."
        ),
    )
    add_keystore_argument(init)
    init.add_argument(
        "--version", type=_version, default=1, metavar="N", help="key version (default 1)"
    )
    init.set_defaults(handler=run_init)

    listing = actions.add_parser(
        "list",
        help="list master keys with their check values",
        description="List the master keys: purpose, version, key check value, back end.",
    )
    add_keystore_argument(listing)
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    listing.set_defaults(handler=run_list)


def run_init(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """``keys init``: one line per generated key, ``card-issuer v1 KCV 1A2B3C``."""
    stream = sys.stdout if out is None else out
    with open_keystore(args.keystore, create=True) as store:
        for info in init_master_keys(store, version=args.version):
            print(info, file=stream)
    return 0


def run_list(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """``keys list``: a table, or with ``--json`` a JSON array."""
    stream = sys.stdout if out is None else out
    with open_keystore(args.keystore) as store:
        infos = store.list_keys()
        location = store.location
    if args.json:
        print(json.dumps([_as_json(info) for info in infos], indent=2), file=stream)
    elif not infos:
        print(f"no master keys in {location}", file=stream)
    else:
        width = max(len(info.purpose.value) for info in infos)
        for info in infos:
            version = f"v{info.version}"
            print(
                f"{info.purpose.value:<{width}}  {version:<4}  KCV {info.kcv_hex}  {info.backend}",
                file=stream,
            )
    return 0


def _as_json(info: KeyInfo) -> dict[str, object]:
    return {
        "purpose": info.purpose.value,
        "version": info.version,
        "kcv": info.kcv_hex,
        "backend": info.backend,
    }
