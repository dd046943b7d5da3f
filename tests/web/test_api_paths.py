"""Paths under ``/api/`` that no operation takes keep the API's error shape, whatever they hold."""

from __future__ import annotations

import pytest
from flask import Flask
from test_web_api import ApiWorld, error_of


@pytest.fixture
def world(web_app: Flask) -> ApiWorld:
    return ApiWorld(web_app)


@pytest.mark.parametrize(
    "path",
    [
        "/api/card/sales/%0A/confirm",  # a line break, which werkzeug's ``path`` stops at
        "/api/keypad/sales/%0A%F1%82/reprint",
        "/api/nothing%0Ahere",
    ],
)
def test_a_line_break_in_a_path_is_an_api_404(world: ApiWorld, path: str) -> None:
    headers = world.clients["bank"].headers
    error_of(world.http.post(path, json={}, headers=headers), 404, "not_found")
    error_of(world.http.post(path, json={}), 401, "unauthenticated")
