"""The API room from its compose rendering, run for real with podman-compose: the proxy enforces the policy
its spec carries, though no container has the spec's policy file.

The endpoint's Rego reaches the containers only inside CCR_SPEC (measured by HOST_DATA): the compose file
mounts nothing from the spec's folder. The members agree on the contract and enable the contract CA; the
consumer's log-sink key is bound to HOST_DATA; then the room starts and a client in the group's network
namespace calls the inbound proxy over TLS, trusting only the contract CA: `GET /hello` reaches the app,
`GET /healthz` (which the app would answer with 200) and `GET /secret` are refused with 403.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl

import pytest
import yaml

from sidecars.common.process import wait_until
from sidecars.localroom.netns import entered
from sidecars.localroom.roomhttp import room_status

from .conftest import ccr

pytestmark = [pytest.mark.root, pytest.mark.slow]
LAUNCHER_PORT = 8200
PROXY_INBOUND_PORT = 15001
MEMBERS = ("publisher", "consumer")


def https_get(netns: str, port: int, path: str, ca_file: str) -> tuple[int, bytes]:
    """GET https://127.0.0.1:PORT/PATH inside `netns`, verifying the server against `ca_file` only."""
    with entered(netns):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    context = ssl.create_default_context(cafile=ca_file)
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
    conn.sock = context.wrap_socket(sock, server_hostname="127.0.0.1")
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def vote(command: tuple[str, ...], endpoints: str, members, netns: str) -> None:
    """The first member proposes (and votes accept), the others vote accept."""
    proposal = ccr(*command, "--endpoints", endpoints, "--identity", str(members / MEMBERS[0]), netns=netns)
    for member in MEMBERS[1:]:
        ccr("governance", "proposal", "vote", proposal.split()[1], "--endpoints", endpoints, "--identity",
            str(members / member), netns=netns)


def test_api_room_enforces_the_policy_its_spec_carries_under_podman_compose(compose_room, tmp_path):
    room = compose_room("cleanroomhello-api")
    rego = (room.spec.parent / "allow-get-hello.rego").read_text()
    project = yaml.safe_load(room.compose.file.read_text())
    proxy_env = project["services"]["proxy"]["environment"]
    assert json.loads(proxy_env["CCR_SPEC"].replace("$$", "$"))["endpoints"][0]["policy_rego"] == rego
    mounted = [str(v["source"]) for service in project["services"].values() for v in service.get("volumes", [])]
    assert not [source for source in mounted if source.startswith(str(room.spec.parent))]

    endpoints, netns, contract = room.endpoints, room.netns, "collab-hello-api"
    host_data = ccr("spec", "render", "policy-hash", str(room.spec), "--endpoints", endpoints).strip()
    assert f"CCR_HOST_DATA={host_data}" in (room.emulation / "compose.env").read_text()
    members = tmp_path / "members"
    ccr("governance", "setup", str(room.spec), "--endpoints", endpoints, "--members-dir", str(members), netns=netns)
    vote(("governance", "ca", "enable", contract), endpoints, members, netns)
    ccr("governance", "ca", "generate-key", contract, "--endpoints", endpoints, "--identity", str(members / MEMBERS[0]),
        netns=netns)
    ca_file = tmp_path / "contract-ca.pem"
    ca_file.write_text(ccr("governance", "ca", "show", contract, "--endpoints", endpoints,
                           "--identity", str(members / MEMBERS[0]), netns=netns))
    ccr("keys", "create-kek", "--endpoints", endpoints, "--name", "consumer-kek", "--host-data", host_data,
        netns=netns)
    vault = json.loads(room.emulation.joinpath("endpoints.json").read_text())["keyvault_url"]
    (tmp_path / "empty").mkdir()
    ccr("data", "publish", str(tmp_path / "empty"), "--container", "consumer-logs", "--secret", "consumer-logs-dek",
        "--kek", f"{vault}/keys/consumer-kek", "--endpoints", endpoints,
        "--dek-file", str(members / "consumer-logs-dek.json"), netns=netns)

    room.compose.run("up", "-d")
    sidecars = ("skr", "governance", "identity", "volumes", "proxy", "telemetry", "launcher")

    def app_running() -> bool:
        answer = room_status(netns, LAUNCHER_PORT)
        body = answer.json() if answer is not None and answer.body[:1] == b"{" else {}
        if body.get("status") in ("exited", "failed", "stopped"):
            pytest.fail(f"the app is {body['status']}: {json.dumps(body)}\n" + room.compose.logs(sidecars))
        return body.get("status") == "running"

    answers: dict[str, tuple[int, bytes]] = {}

    def hello_answers() -> bool:
        try:
            answers["/hello"] = https_get(netns, PROXY_INBOUND_PORT, "/hello", str(ca_file))
        except OSError:  # the proxy is not listening yet
            return False
        return answers["/hello"][0] == 200

    try:
        wait_until(app_running, 120, "the app to run", interval=0.5)
        wait_until(hello_answers, 30, "GET /hello through the proxy", interval=0.5)
    except Exception as exc:
        pytest.fail(f"{exc} (last answer {answers.get('/hello')})\n" + room.compose.logs(sidecars))

    assert json.loads(answers["/hello"][1]) == {"message": "Hello from the clean room!"}
    for denied in ("/healthz", "/secret"):
        status, body = https_get(netns, PROXY_INBOUND_PORT, denied, str(ca_file))
        assert status == 403, (denied, status, body)
        assert b"Hello" not in body and b"not found" not in body  # the proxy answered, not the app
