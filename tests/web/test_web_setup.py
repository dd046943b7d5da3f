"""The application's configuration, translations and per-request desk."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from babel.messages.mofile import read_mo
from flask import Flask, g
from sqlalchemy import select
from web_support import add_web_operator

from cardcenter.core.errors import InvalidInputError
from cardcenter.operators.models import Operator
from cardcenter.web import db, i18n
from cardcenter.web.config import SECRET_KEY_FILE, WebConfig
from cardcenter.web.i18n import TRANSLATIONS, compile_translations
from cardcenter.web.state import state


def test_configuration_from_the_environment(tmp_path: Path) -> None:
    env = {"CARDCENTER_DATA_DIR": str(tmp_path), "CARDCENTER_SITE": "East"}
    config = WebConfig.from_env(env)
    key_file = tmp_path / SECRET_KEY_FILE
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert config.secret_key == key_file.read_text().strip() and len(config.secret_key) == 64
    assert WebConfig.from_env(env).secret_key == config.secret_key  # kept across restarts
    assert config.secret_key not in repr(config)
    assert (config.site, config.session_minutes, config.reader) == ("East", 15, None)
    assert config.core.database_url == f"sqlite:///{tmp_path / 'cardcenter.db'}"
    assert config.login_policy.max_failures == 5
    assert config.login_policy.lockout.total_seconds() == 15 * 60

    custom = WebConfig.from_env(
        {
            **env,
            "CARDCENTER_SECRET_KEY": "k" * 40,
            "CARDCENTER_SESSION_MINUTES": "30",
            "CARDCENTER_READER": "ACS",
            "CARDCENTER_TIMEZONE": "Asia/Shanghai",
        }
    )
    assert custom.secret_key == "k" * 40 and custom.session_minutes == 30
    assert (custom.reader, custom.timezone) == ("ACS", "Asia/Shanghai")
    with pytest.raises(InvalidInputError, match="CARDCENTER_SESSION_MINUTES"):
        WebConfig.from_env({**env, "CARDCENTER_SESSION_MINUTES": "0"})


def test_translations_are_compiled_when_missing_or_older(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "translations"
    shutil.copytree(TRANSLATIONS, source, ignore=shutil.ignore_patterns("*.mo"))
    po = source / "zh_Hans_CN" / "LC_MESSAGES" / "messages.po"
    mo = po.with_suffix(".mo")
    assert compile_translations(source) == source and mo.exists()
    os.utime(mo, (1, 1))
    compile_translations(source)
    assert mo.stat().st_mtime >= po.stat().st_mtime  # made again, being older
    # a package directory nobody may write to: compiled into the data directory instead
    os.utime(mo, (1, 1))
    write = i18n._compile_locale

    def read_only_package(messages: Path, mo_file: Path) -> None:
        if mo_file.is_relative_to(source):
            raise PermissionError(13, "Permission denied", str(mo_file))
        write(messages, mo_file)

    monkeypatch.setattr(i18n, "_compile_locale", read_only_package)
    target = tmp_path / "data"
    assert compile_translations(source, target) == target
    assert (target / "zh_Hans_CN" / "LC_MESSAGES" / "messages.mo").exists()
    with pytest.raises(PermissionError):
        compile_translations(source)


def test_a_part_of_the_application_brings_its_own_translations(tmp_path: Path) -> None:
    source = tmp_path / "translations"
    shutil.copytree(TRANSLATIONS, source, ignore=shutil.ignore_patterns("*.mo"))
    messages = source / "zh_Hans_CN" / "LC_MESSAGES"
    (messages / "zz_part.po").write_text(
        'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n\n'
        'msgid "Top up"\nmsgstr "充值"\n',
        encoding="utf-8",
    )
    compile_translations(source)
    with (messages / "messages.mo").open("rb") as mo:
        catalogue = read_mo(mo)
    assert catalogue["Top up"].string == "充值"
    assert len(catalogue) > 2  # messages.po is in it too


def test_the_desk_is_the_logged_in_operators(web_app: Flask) -> None:
    add_web_operator(web_app, "nan")
    with web_app.test_request_context("/"):
        session = db.session()
        assert db.session() is session
        g.operator = session.scalars(select(Operator).where(Operator.username == "nan")).one()
        assert session.in_transaction()
        desk = db.desk()
        assert not session.in_transaction()  # committed: the desk may take the write lock
        assert db.desk() is desk
        assert (desk.operator, desk.site) == ("nan", "HQ")
        assert desk.keys is state(web_app).keys and desk.sessions is state(web_app).sessions
    with web_app.test_request_context("/"), pytest.raises(RuntimeError, match="logged-in"):
        g.operator = None
        db.desk()
