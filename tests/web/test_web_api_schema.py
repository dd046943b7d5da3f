"""The OpenAPI document against the live API: schemathesis finds no server error, anywhere.

The application runs under waitress (``live_server``) on each database;
schemathesis reads ``/api/openapi.json`` from it and, for every operation,
sends the document's examples, inputs it allows and inputs it does not,
authenticated as a supervisor client (negative cases also drop or spoil the
credentials), then checks every answer: never a 5xx; only documented status
codes, content types and headers; bodies as the document describes them;
input it allows never refused as malformed, malformed input never accepted. A
last pass sends the keypad operations' generated bodies to the world's real
meter, so arbitrary amounts and request ids reach a real vend.

(schemathesis' pytest plugin does not run under pytest 9, so each
operation's strategy is drawn with hypothesis here.)
"""

from __future__ import annotations

from typing import Any

import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from test_web_api import PAN, ApiWorld


def fields_as_documented(ctx: Any, response: Any, case: Any) -> bool | None:
    """Input the document allows never fails the API's own field checks.

    (schemathesis' ``positive_data_acceptance`` would also refuse a 400 for a
    well-formed value the centre's rules refuse, ``value_refused``: an amount
    more than one token carries is not a schema matter.)
    """
    meta = case.meta
    if meta is not None and meta.generation.mode.is_positive and response.status_code in (400, 415):
        error = response.json()["error"]
        assert error["code"] == "value_refused", f"valid input refused: {error}"
    return None


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    fields_as_documented,
]
EXAMPLES = 12
"""Cases per operation and mode: both databases' runs together take well under a minute."""


def run(strategy: st.SearchStrategy[Any], headers: dict[str, str], examples: int) -> list[int]:
    """Draw ``examples`` cases, call the live API with each, run every check; the statuses."""
    statuses: list[int] = []

    @given(case=strategy)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        statuses.append(case.call_and_validate(headers=headers, checks=CHECKS).status_code)

    check()
    return statuses


def at_the_real_meter(case: Any) -> Any:
    if isinstance(case.body, dict) and isinstance(case.body.get("meter"), str):
        case.body["meter"] = PAN
    return case


def test_no_input_makes_a_server_error(live_server: str, web_app: Flask) -> None:
    world = ApiWorld(web_app)
    headers = world.clients["agent"].headers
    schema = schemathesis.openapi.from_url(f"{live_server}/api/openapi.json")
    results: list[Any] = list(schema.get_all_operations())
    operations = [result.ok() for result in results]
    assert len(operations) >= 10  # (schemathesis leaves out the document's own path)
    vended: list[int] = []
    for operation in operations:
        for example in schema.get_strategies_from_examples(operation):
            run(example, headers, 1)
        for mode in GenerationMode:
            run(operation.as_strategy(generation_mode=mode), headers, EXAMPLES)
        if operation.path.startswith("/api/keypad/") and operation.body:
            positive = operation.as_strategy(generation_mode=GenerationMode.POSITIVE)
            vended += run(positive.map(at_the_real_meter), headers, EXAMPLES)
    assert 200 in vended and 201 in vended, vended  # trials and sales did reach the meter
