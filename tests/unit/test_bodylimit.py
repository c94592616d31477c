"""The body limit every app gets from `create_app`: declared and streamed bodies are counted, the answer is the
service's own error shape, and a body at the limit still goes through."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, Request
from pydantic import BaseModel

from sidecars.common.bodies import json_body
from sidecars.common.http import create_app, plain_error_body

LIMIT = 1000
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def app():
    app = create_app("limited", error_body=plain_error_body, max_body_bytes=LIMIT)
    reads: list[int] = []
    app.state.reads = reads

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        body = await request.body()
        reads.append(len(body))
        return {"length": len(body)}

    return app


async def post(app, content, headers=None) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://limited") as client:
        return await client.post("/echo", content=content, headers=headers)


async def test_a_body_at_the_limit_is_served(app):
    answer = await post(app, b"x" * LIMIT)
    assert answer.status_code == 200 and answer.json() == {"length": LIMIT}


async def test_a_declared_body_over_the_limit_is_refused_before_the_app_runs(app):
    answer = await post(app, b"x" * (LIMIT + 1))
    assert answer.status_code == 413
    assert answer.json() == {"error": f"the request body is larger than this service accepts ({LIMIT} bytes)"}
    assert app.state.reads == []


async def test_a_streamed_body_is_counted_as_it_arrives(app):
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 300

    answer = await post(app, chunks())
    assert answer.status_code == 413 and "error" in answer.json()
    assert app.state.reads == []


async def test_a_content_length_that_is_not_a_number_is_400(app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://limited") as client:
        request = client.build_request("POST", "/echo", content=b"{}")
        request.headers["content-length"] = "12abc"
        answer = await client.send(request)
    assert answer.status_code == 400 and answer.json() == {"error": "Content-Length: not a byte count"}


async def test_unknown_routes_answer_in_the_services_shape(app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://limited") as client:
        assert (await client.get("/nowhere")).json() == {"error": "Not Found"}
        assert (await client.get("/echo")).json() == {"error": "Method Not Allowed"}


class Named(BaseModel):
    name: str


async def test_json_body_is_read_after_the_dependencies_before_it(app):
    order: list[str] = []

    async def authenticate() -> None:
        order.append("authenticated")

    @app.post("/named", dependencies=[Depends(authenticate)])
    async def named(body: Annotated[Named, json_body(Named)]) -> dict[str, str]:
        order.append("body")
        return {"name": body.name}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://limited") as client:
        assert (await client.post("/named", content=b'{"name": "x"}')).json() == {"name": "x"}
        bad = await client.post("/named", content=b'{"name": 5}')
    assert bad.status_code == 400 and bad.json() == {"error": "name: Input should be a valid string"}
    assert order == ["authenticated", "body", "authenticated"]
