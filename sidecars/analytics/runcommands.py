"""`ccr analytics run QUERY` and `ccr analytics runs`: a member calls the room's run API.

Each request is signed with the member's identity (`CCR-Member` header over method, path?query, time and
the body's hash) and sent over TLS verified against the contract's CA (`--contract-ca`): the room's
endpoint certificate is issued by that CA only to an attested room, so a caller that trusts nothing else
talks only to the room. `run --wait` polls the run and prints each status change; the exit code is 0 only for
`succeeded` and `validated` (a dry run); otherwise 1, with the one-line reason.
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from ..common.errors import CcrError, ConfigError, RemoteServiceError
from ..common.memberauth import MemberIdentity

SUCCESS = ("succeeded", "validated")
FINAL = ("succeeded", "validated", "refused", "failed", "revoked")
POLL_INTERVAL_S = 0.5


class RunApi:
    def __init__(self, url: str, contract_ca: str, identity: MemberIdentity,
                 timeout: float | httpx.Timeout = 30.0):
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.netloc:
            raise ConfigError(f"--url {url!r}: the run API is reached over https only (https://HOST:PORT)")
        if not Path(contract_ca).is_file():
            raise ConfigError(f"--contract-ca {contract_ca}: no such file")
        try:
            context = ssl.create_default_context(cafile=contract_ca)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"--contract-ca {contract_ca}: not a PEM certificate ({exc})") from None
        self.prefix = parts.path.rstrip("/")
        self.identity = identity
        self._http = httpx.Client(base_url=f"https://{parts.netloc}", verify=context, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        target = self.prefix + path
        content = json.dumps(body).encode() if body is not None else b""
        headers = {"authorization": self.identity.authorization(method, target, content)}
        if body is not None:
            headers["content-type"] = "application/json"
        try:
            response = self._http.request(method, target, content=content, headers=headers)
        except httpx.HTTPError as exc:
            raise RemoteServiceError("analytics", f"{self._http.base_url} unreachable: {exc}") from None
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if response.status_code >= 400:
            error = answer.get("error") if isinstance(answer, dict) else None
            if isinstance(error, dict):
                raise CcrError(f"{error.get('code')}: {error.get('message')}", code=str(error.get("code")),
                               http_status=response.status_code)
            raise RemoteServiceError("analytics", f"HTTP {response.status_code}: {response.text[:200]}",
                                     status=response.status_code)
        if not isinstance(answer, dict):
            raise RemoteServiceError("analytics", f"HTTP {response.status_code}: the answer is not a JSON object")
        return response.status_code, answer


def _api(args: argparse.Namespace) -> RunApi:
    return RunApi(args.url, args.contract_ca, MemberIdentity.load(args.identity))


def _describe(run: dict[str, Any]) -> str:
    line = f"run {run.get('runId')}: {run.get('status')}"
    error = run.get("error")
    if isinstance(error, dict) and error.get("code"):
        line += f" ({error.get('code')}: {error.get('message')})"
    elif run.get("status") == "succeeded":
        line += (f", {run.get('rowsWritten')} rows written, {run.get('groupsSuppressed')} groups suppressed: "
                 + ", ".join(run.get("output") or []))
    return line


def cmd_run(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {}
    if args.run_id:
        body["runId"] = args.run_id
    if args.dry_run:
        body["dryRun"] = True
    if args.start_date:
        body["startDate"] = args.start_date
    if args.end_date:
        body["endDate"] = args.end_date
    api = _api(args)
    try:
        _, answer = api.call("POST", f"/queries/{quote(args.query, safe='')}/run", body)
        run_id, status = str(answer.get("runId")), str(answer.get("status"))
        print(f"run {run_id}: {status}", flush=True)
        if not args.wait or status in FINAL:
            if status in FINAL and status not in SUCCESS:
                return _failed(answer)
            return 0
        deadline = time.monotonic() + args.timeout
        while True:
            _, run = api.call("GET", f"/runs/{quote(run_id, safe='')}")
            if run.get("status") != status:
                status = str(run.get("status"))
                print(_describe(run), flush=True)
            if status in FINAL:
                return 0 if status in SUCCESS else _failed(run)
            if time.monotonic() >= deadline:
                print(f"ccr: error: run {run_id} is still {status} after {args.timeout:g} s", file=sys.stderr)
                return 1
            time.sleep(POLL_INTERVAL_S)
    finally:
        api.close()


def _failed(run: dict[str, Any]) -> int:
    error = run.get("error") if isinstance(run.get("error"), dict) else {}
    print(f"ccr: error: run {run.get('runId')} {run.get('status')}: {error.get('code')}: {error.get('message')}",
          file=sys.stderr)
    return 1


def cmd_runs(args: argparse.Namespace) -> int:
    if bool(args.query) == bool(args.run):
        raise ConfigError("name exactly one of --query ID (its runs) or --run RUN_ID")
    api = _api(args)
    try:
        if args.run:
            _, run = api.call("GET", f"/runs/{quote(args.run, safe='')}")
            print(json.dumps(run, indent=2))
            return 0
        _, answer = api.call("GET", f"/queries/{quote(args.query, safe='')}/runs")
        for run in answer.get("value") or []:
            print(_describe(run) if isinstance(run, dict) else "?")
        return 0
    finally:
        api.close()
