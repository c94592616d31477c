"""Schemathesis against the OpenAPI of every HTTP service we run, anonymous and with valid credentials.

Each operation gets generated requests that fit its schema and requests that do not (wrong types, missing
fields, bad path and query values), plus hostile headers the schema does not describe (malformed
`Authorization`, wrong `Content-Type`). An anonymous request to a service that authenticates its callers must
never be served (no 2xx) outside its open paths. Every answer must be a non-5xx (a service whose upstream is down may
say 502/503, in its error shape) and every 4xx must have the service's own error shape (each operation's
schema is given a `4XX` answer with that shape, which `response_schema_conformance` then checks). Runs are
derandomized (the same examples every run) and bounded: `FUZZ_EXAMPLES` per operation and mode, a 10 s
timeout per request.
"""

from __future__ import annotations

import copy
import os
import time
from collections import Counter
from typing import Any

import jsonschema
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import response_schema_conformance

from . import services
from .services import Service

FUZZ_EXAMPLES = int(os.environ.get("CCR_FUZZ_EXAMPLES", "12"))
REQUEST_TIMEOUT_S = 10
# Latin-1 text a client can put in a header: no control characters, no leading whitespace (`requests` refuses both).
HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
                      max_size=80).map(str.lstrip)
HOSTILE_AUTHORIZATION = st.one_of(
    st.none(), HEADER_TEXT, st.builds("Bearer {}".format, HEADER_TEXT),
    st.just("Bearer a.b.c"), st.just("Bearer e30.e30.e30"), st.just("Bearer ey.ey"),
    st.builds("CCR-Member id={}, ts={}, sig={}".format, st.just("ab" * 32), st.integers(0, 10**13),
              st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=", min_size=1, max_size=12)),
)
HOSTILE_CONTENT_TYPE = st.sampled_from([None, "application/json", "text/plain", "application/x-www-form-urlencoded",
                                        "multipart/form-data", "application/json; charset=latin-1", "garbage/"])


def openapi_under_test(service: Service) -> dict[str, Any]:
    """The app's own OpenAPI, plus what its routes do not declare: every operation may answer 4XX in the service's
    error shape (FastAPI's 422 is ours 400), and a route reading a body it does not describe gets any JSON."""
    document = copy.deepcopy(service.app.openapi())
    for item in document["paths"].values():
        for method, operation in item.items():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            refused = {"description": "refused", "content": {"application/json": {"schema": service.error_schema}}}
            responses["4XX"] = refused
            for status in service.upstream_statuses:
                responses[str(status)] = refused
            for parameter in operation.get("parameters", []):
                known = service.path_values.get(parameter["name"]) if parameter.get("in") == "path" else None
                if known:
                    parameter["schema"] = {"anyOf": [{"enum": list(known)}, parameter.get("schema", {})]}
            if method in ("post", "put", "patch") and "requestBody" not in operation:
                operation["requestBody"] = {"required": False, "content": {"application/json": {"schema": {}}}}
    return document


def strategies_for(operation) -> Any:
    modes = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        try:
            modes.append(operation.as_strategy(generation_mode=mode))
        except Exception:  # noqa: BLE001 - an operation with nothing to negate has no negative strategy
            continue
    return st.one_of(*modes)


def fuzz_operation(service: Service, client, operation, statuses: Counter, *, anonymous: bool) -> list[str]:
    failures: list[str] = []
    hostile_headers = anonymous
    guarded = anonymous and service.open_paths is not None and not service.open_paths.match(operation.path)

    @settings(max_examples=FUZZ_EXAMPLES, derandomize=True, database=None, deadline=None, report_multiple_bugs=False,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=strategies_for(operation), authorization=HOSTILE_AUTHORIZATION, content_type=HOSTILE_CONTENT_TYPE)
    def run(case, authorization, content_type) -> None:
        headers = {}
        if hostile_headers and authorization is not None:
            headers["authorization"] = authorization
        if hostile_headers and content_type is not None and case.body is not None:
            headers["content-type"] = content_type
        response = case.call(session=client, headers=headers, timeout=REQUEST_TIMEOUT_S)
        statuses[response.status_code] += 1
        if guarded:
            assert not 200 <= response.status_code < 300, \
                f"an anonymous request was served ({response.status_code}): {case.as_curl_command(headers=headers)}"
        if response.status_code in service.upstream_statuses:
            jsonschema.validate(response.json(), service.error_schema)
            return
        case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])

    try:
        run()
    except Exception as exc:  # noqa: BLE001 - every operation's first failure is collected, then all are reported
        parts = exc.exceptions if isinstance(exc, BaseExceptionGroup) else (exc,)
        failures.append(f"{operation.label}: " + "\n".join(str(part).strip()[:1500] for part in parts))
    return failures


@pytest.mark.slow
@pytest.mark.parametrize("authenticated", [False, True], ids=["anonymous", "authenticated"])
@pytest.mark.parametrize("name", ["cgs", "keyvault", "maa", "entra", "skr", "governance", "identity", "telemetry",
                                  "launcher"])
def test_fuzz(all_services, name, authenticated):
    service = all_services[name]
    app = service.authenticated if authenticated else services.WithoutLifespan(service.app)
    schema = schemathesis.openapi.from_dict(openapi_under_test(service))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations, f"{name}: no operations in its OpenAPI"
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    started = time.monotonic()
    with asgi.get_client(app) as client:
        for operation in operations:
            failures += fuzz_operation(service, client, operation, statuses, anonymous=not authenticated)
    elapsed = time.monotonic() - started
    print(f"{name} {'authenticated' if authenticated else 'anonymous'}: {sum(statuses.values())} requests to "
          f"{len(operations)} operations in {elapsed:.1f} s; answers {dict(sorted(statuses.items()))}")
    assert not failures, f"{name} ({len(failures)} of {len(operations)} operations, {elapsed:.1f} s):\n\n" + \
        "\n\n".join(failures)
    if authenticated:
        # The credentials work: requests got past authentication and were served.
        assert any(200 <= status < 300 for status in statuses), statuses
