"""``cardlayout vcard new`` and ``cardlayout vcard attach``: the virtual card."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from types import FrameType
from typing import Any

from cardlayout.errors import FormatError
from cardlayout.vcard.cos import VirtualCard, new_image
from cardlayout.vcard.image import CardImage


def register(sub: Any) -> None:
    """Add the virtual card commands to the top-level parser."""
    vcard = sub.add_parser("vcard", help="make and attach virtual cards")
    vsub = vcard.add_subparsers(dest="vcard_command", required=True, metavar="ACTION")

    new = vsub.add_parser("new", help="make a factory-blank card image")
    new.add_argument("image", help="image file to create")
    new.add_argument("--serial", required=True, help="card serial, 16 hex digits")
    new.add_argument("--force", action="store_true", help="overwrite an existing image")
    new.set_defaults(handler=cmd_new)

    attach = vsub.add_parser(
        "attach", help="insert the card into a vpcd reader until interrupted (= pulled)"
    )
    attach.add_argument("image", help="image file; every write is kept in it")
    attach.add_argument(
        "--port", type=int, default=35963, help="vpcd port: 35963 first reader, 35964 second"
    )
    attach.add_argument("--host", default="127.0.0.1", help="vpcd host (default 127.0.0.1)")
    attach.add_argument(
        "--tear-after",
        type=int,
        default=None,
        metavar="N",
        help="pull the card after N more bytes have been written (for testing)",
    )
    attach.set_defaults(handler=cmd_attach)


def parse_serial(text: str) -> bytes:
    """A card serial from the command line: exactly 16 hex digits."""
    try:
        serial = bytes.fromhex(text)
    except ValueError:
        serial = b""
    if len(serial) != 8:
        raise FormatError(f"card serial {text!r} is not 16 hex digits", field="serial")
    return serial


def cmd_new(args: argparse.Namespace) -> int:
    serial = parse_serial(args.serial)
    if os.path.exists(args.image) and not args.force:
        raise FormatError(f"{args.image} exists; use --force to replace it")
    image = new_image(serial, args.image)
    image.save()
    print(f"made blank card {serial.hex().upper()} in {args.image}")
    return 0


def cmd_attach(args: argparse.Namespace) -> int:
    from cardlayout.vcard.vpcd import VpcdBridge

    card = VirtualCard(CardImage.load(args.image))
    if args.tear_after is not None:
        card.arm_tear(args.tear_after)
    bridge = VpcdBridge(card, host=args.host, port=args.port)
    # SIGTERM (kill, a service manager) pulls the card as Ctrl-C does; a
    # background job of a script cannot get SIGINT at all.
    signal.signal(signal.SIGTERM, _interrupt)
    print(
        f"card {card.image.serial.hex().upper()} inserted at vpcd {args.host}:{args.port}; "
        "interrupt to pull it",
        file=sys.stderr,
        flush=True,
    )
    try:
        bridge.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        bridge.remove()
    print(f"card {card.image.serial.hex().upper()} pulled", file=sys.stderr)
    return 0


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
