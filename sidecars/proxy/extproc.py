"""Response inspection: an Envoy ext_proc server (gRPC, `envoy.service.ext_proc.v3`) that judges the
app's response with the endpoint's `data.envoy.authz.response` rule before it leaves the room.

Per request Envoy opens one stream: request headers (kept as the policy's request context), response
headers, then the buffered response body. The decision is a boolean or an object: denied → the client
gets the policy's status and body instead of the app's response; allowed with a `body` → the body is
replaced (redaction). An undefined or malformed decision denies (fail closed), and so does a broken
stream: the filter is configured with `failure_mode_allow: false`.

    python -m sidecars.proxy.extproc --config policies.json --port PORT [--ready-file F]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc
from envoy.type.v3 import http_status_pb2

from ..common.errors import CcrError, ConfigError
from ..common.logs import configure_logging
from ..common.process import write_ready_file
from .decision import Decision
from .opa_input import InputError, build_input
from .policies import PolicyConfig, PolicySet

log = logging.getLogger(__name__)


def _headers(message: pb.HttpHeaders) -> dict[str, str]:
    out: dict[str, str] = {}
    for header in message.headers.headers:
        value = header.raw_value.decode("latin-1") if header.raw_value else header.value
        out[header.key.lower()] = f"{out[header.key.lower()]},{value}" if header.key.lower() in out else value
    return out


def _header_options(headers: dict[str, str]) -> list[base_pb2.HeaderValueOption]:
    return [base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=name, raw_value=value.encode()),
        append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD) for name, value in headers.items()]


def _immediate(decision: Decision) -> pb.ProcessingResponse:
    return pb.ProcessingResponse(immediate_response=pb.ImmediateResponse(
        status=http_status_pb2.HttpStatus(code=decision.http_status),
        headers=pb.HeaderMutation(set_headers=_header_options(decision.headers)),
        body=decision.body.encode(),
        details="ccr_response_policy_denied"))


class ResponseInspector(pb_grpc.ExternalProcessorServicer):
    def __init__(self, policies: PolicySet):
        self.policies = policies

    async def Process(self, request_iterator: AsyncIterator[pb.ProcessingRequest],
                      context: grpc.aio.ServicerContext) -> AsyncIterator[pb.ProcessingResponse]:
        endpoint = dict(context.invocation_metadata() or ()).get("x-ccr-endpoint", "")
        request_input: dict[str, Any] = {}
        status = 0
        response_headers: dict[str, str] = {}
        async for message in request_iterator:
            kind = message.WhichOneof("request")
            if kind == "request_headers":
                headers = _headers(message.request_headers)
                try:
                    request_input = build_input(method=headers.get(":method", ""), path=headers.get(":path", "/"),
                                                headers={k: v for k, v in headers.items()
                                                         if not k.startswith(":")})
                except InputError as exc:
                    yield _immediate(Decision.deny(f"denied: {exc.message}", 400))
                    return
                yield pb.ProcessingResponse(request_headers=pb.HeadersResponse())
            elif kind == "response_headers":
                response_headers = _headers(message.response_headers)
                status = int(response_headers.pop(":status", "0") or 0)
                if message.response_headers.end_of_stream:
                    decision = self._judge(endpoint, request_input, status, response_headers, b"")
                    if not decision.allowed:
                        yield _immediate(decision)
                        return
                yield pb.ProcessingResponse(response_headers=pb.HeadersResponse())
            elif kind == "response_body":
                body = message.response_body.body
                decision = self._judge(endpoint, request_input, status, response_headers, body)
                if not decision.allowed:
                    yield _immediate(decision)
                    return
                yield pb.ProcessingResponse(response_body=pb.BodyResponse(response=self._allowed(decision)))
            else:
                # Modes are fixed in the filter's config; anything else means a mismatch: refuse.
                yield _immediate(Decision.deny(f"denied: unexpected ext_proc message {kind}", 500))
                return

    def _judge(self, endpoint: str, request_input: dict[str, Any], status: int, headers: dict[str, str],
               body: bytes) -> Decision:
        decision = self.policies.check_response(endpoint, request_input, status=status, headers=headers, body=body)
        if not decision.allowed:
            log.info("response of %s on %s blocked: %s", request_input.get("attributes", {}).get("request", {})
                     .get("http", {}).get("path"), endpoint, decision.reason)
        return decision

    @staticmethod
    def _allowed(decision: Decision) -> pb.CommonResponse:
        common = pb.CommonResponse()
        headers = dict(decision.headers)
        if decision.replace_body is not None:
            body = decision.replace_body.encode()
            common.body_mutation.CopyFrom(pb.BodyMutation(body=body))
            # Buffered mode holds the headers back until the body is judged, so they can still say the
            # new length (Envoy refuses a body whose length contradicts content-length).
            headers["content-length"] = str(len(body))
        if headers:
            common.header_mutation.CopyFrom(pb.HeaderMutation(set_headers=_header_options(headers)))
        return common


async def serve(policies: PolicySet, host: str, port: int, ready_file: str | None) -> None:
    server = grpc.aio.server()
    pb_grpc.add_ExternalProcessorServicer_to_server(ResponseInspector(policies), server)
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc}") from None
    await server.start()
    if ready_file:
        write_ready_file(ready_file, bound)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(grace=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ccr-proxy-extproc", description="The proxy's response inspection server.")
    parser.add_argument("--config", required=True, help="policy configuration (JSON) written by the proxy sidecar")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ready-file", help="written with {port} once the server accepts streams")
    args = parser.parse_args(argv)
    configure_logging()
    try:
        policies = PolicySet(PolicyConfig.read(args.config))
        asyncio.run(serve(policies, args.host, args.port, args.ready_file))
    except CcrError as exc:
        print(f"ccr-proxy-extproc: error: {exc.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
