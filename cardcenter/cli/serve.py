"""``cardcenter serve`` runs the service-hall application; ``cardcenter operator add`` for scripts.

``serve`` makes or upgrades the database (the migrations, the default
customer categories), and on a database where nobody can log in yet gives
the administrator ``admin`` a password: ``CARDCENTER_ADMIN_PASSWORD``, or a
random one printed once on stderr. It then serves the application with
waitress (8 threads), not Flask's development server, until interrupted.
The key store must exist (``cardcenter init``); its passphrase is read once,
at start.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from sqlalchemy import select

from cardcenter.cli.context import add_common, emit, engine_of
from cardcenter.cli.setup import DEFAULT_CATEGORIES
from cardcenter.core.config import Config
from cardcenter.core.db import session_factory, transaction, upgrade
from cardcenter.core.errors import InvalidInputError, NotFoundError
from cardcenter.operators.models import Operator, Role
from cardcenter.operators.services import add_operator, ensure_operator, new_password, set_password
from cardcenter.tariffs.services import get_or_create_category

THREADS = 8
ADMIN = "admin"
ADMIN_PASSWORD_ENV = "CARDCENTER_ADMIN_PASSWORD"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = sub.add_parser(
        "serve",
        help="run the service-hall web application",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=int, default=5000, help="port to listen on (5000)")
    serve.set_defaults(handler=run_serve)

    operator = sub.add_parser("operator", help="operators of the service hall: add one")
    actions = operator.add_subparsers(dest="operator_command", required=True, metavar="ACTION")
    add = actions.add_parser(
        "add",
        help="add an operator who logs in to the web application",
        description=(
            "Add operator NAME with a role and a password: asked for twice at a terminal, "
            "or read from the first line of standard input with --password-stdin."
        ),
    )
    add.add_argument("name", metavar="NAME", help="the user name to log in with")
    add.add_argument("--role", choices=[r.value for r in Role], default=Role.CASHIER.value)
    add.add_argument("--full-name", help="the name shown on pages (default: NAME)")
    add.add_argument("--site", help="the operator's service hall (default CARDCENTER_SITE)")
    add.add_argument("--locale", choices=["en", "zh_Hans_CN"], default="en")
    add.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    add_common(add)
    add.set_defaults(handler=run_operator_add)


def prepare_database(config: Config) -> str | None:
    """Migrate, add the default categories, and make sure an administrator can log in.

    Nobody can log in while no operator has a password (a fresh database, or
    one the command line made): ``admin`` then becomes an active
    administrator with ``CARDCENTER_ADMIN_PASSWORD`` or a made-up password,
    which is returned to be shown once (None otherwise).
    """
    engine = engine_of(config, must_exist=False)
    try:
        upgrade(engine)
        with transaction(session_factory(engine)) as session:
            for code, name in DEFAULT_CATEGORIES.items():
                get_or_create_category(session, code, name)
            if session.scalar(
                select(Operator.id).where(Operator.password_hash.is_not(None)).limit(1)
            ):
                return None
            given = os.environ.get(ADMIN_PASSWORD_ENV)
            password = given or new_password()
            admin = ensure_operator(session, ADMIN, site=config.site, role=Role.ADMINISTRATOR)
            admin.role = Role.ADMINISTRATOR
            admin.active = True
            set_password(admin, password)
            return None if given else password
    finally:
        engine.dispose()


def run_serve(args: argparse.Namespace) -> int:
    from waitress import create_server

    from cardcenter.web import close_app, create_app
    from cardcenter.web.config import WebConfig

    config = WebConfig.from_env()
    keystore = config.core.keystore
    if not keystore.startswith("pkcs11:") and not Path(keystore).exists():
        raise NotFoundError(f"there is no key store at {keystore}: run `cardcenter init` first")
    password = prepare_database(config.core)
    if password is not None:
        print(
            f"cardcenter: nobody could log in yet, so the administrator {ADMIN!r} was given the "
            f"password {password} (shown this once; change it after logging in)",
            file=sys.stderr,
            flush=True,
        )
    app = create_app(config)
    server = create_server(app, host=args.host, port=args.port, threads=THREADS)
    quiet_queue_warnings()
    spare_the_collector()

    def stop(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    print(
        f"cardcenter: the service hall {config.site} is at http://{args.host}:{args.port}/ "
        "(Ctrl-C stops it)",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.run()  # returns after Ctrl-C or SIGTERM (waitress closes its sockets)
    finally:
        server.close()
        close_app(app)
    print("cardcenter: stopped", file=sys.stderr)
    return 0


def spare_the_collector() -> None:
    """Keep what the start made (the application, its modules, the models) out of the
    garbage collector's full passes.

    Those objects live as long as the server, yet a full collection walks all
    of them whenever the younger ones have grown enough: about 40 ms with
    every thread stopped, so each request queued then (16 at a time under a
    payment channel's load) waited 40 ms longer. Frozen, they are skipped,
    and a full pass walks only what was made since (about 1 ms).
    """
    gc.collect()
    gc.freeze()


def quiet_queue_warnings() -> None:
    """Keep waitress from warning each time a request waits for one of its threads.

    Under a payment channel's load every request waits its turn at the
    database anyway (the API's one-at-a-time lock on SQLite), so waitress
    would log "Task queue depth is N" for nearly every request: a log line
    made, formatted and written each time (about 3 % of the server's CPU
    for the vending API at 16 clients), saying nothing an operator acts on.
    Its errors are still logged.
    """
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise InvalidInputError(
            "password", "give --password-stdin when standard input is no terminal"
        )
    import getpass

    first = getpass.getpass("Password: ")
    if getpass.getpass("Repeat the password: ") != first:
        raise InvalidInputError("password", "the two passwords differ; nobody was added")
    return first


def run_operator_add(args: argparse.Namespace) -> int:
    from cardcenter.cli.context import config_of, sessions_of

    password = _read_password(args.password_stdin)
    config = config_of(args)
    with sessions_of(args) as sessions, transaction(sessions) as session:
        operator = add_operator(
            session,
            args.name,
            name=args.full_name or args.name,
            role=Role(args.role),
            site=args.site or config.site,
            password=password,
            locale=args.locale,
        )
        result = {
            "id": operator.id,
            "username": operator.username,
            "role": operator.role.value,
            "site": operator.site,
            "locale": operator.locale,
        }
    return emit(args, result)
