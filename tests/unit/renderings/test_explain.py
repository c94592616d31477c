"""`ccr spec explain` is what a party reads before accepting a contract someone else wrote: it must name every
channel out of the room and what the contract embeds beyond the spec file (each policy's exact Rego)."""

from __future__ import annotations

import copy
import hashlib

import yaml

from sidecars.renderings.explain import explain
from sidecars.renderings.render import render
from sidecars.room.group import render_group
from sidecars.spec import load_spec

from .conftest import VARIABLES, images_for


def everything_spec(repo, tmp_path):
    """The API example with one of every channel: a datasink, both sinks, egress of each kind with DNS, and
    every sidecar API, so no channel can be left out of the explanation unnoticed."""
    data = yaml.safe_load((repo / "examples/cleanroomhello-api/spec.yaml").read_text())
    job = yaml.safe_load((repo / "examples/cleanroomhello-job/spec.yaml").read_text())
    data["datasinks"] = job["datasinks"]
    sink = copy.deepcopy(data["telemetry"]["log_sink"])
    sink["store"]["container"] = "consumer-telemetry"
    sink["export_interval_s"] = 30
    data["telemetry"]["telemetry_sink"] = sink
    data["egress"] = {"dns": "tcp", "allow": [{"host": "api.example.com", "port": 443, "protocol": "https"},
                                              {"host": "feed.example.com", "port": 80, "protocol": "http"},
                                              {"host": "10.0.0.7", "port": 5432, "protocol": "tcp"}]}
    data["application"]["sidecar_apis"] = ["governance", "skr", "identity", "telemetry"]
    data["application"]["key_vaults"] = ["https://extra.vault.example"]
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(data))
    (tmp_path / "allow-get-hello.rego").write_bytes((repo / "examples/cleanroomhello-api/allow-get-hello.rego")
                                                    .read_bytes())
    return load_spec(tmp_path / "spec.yaml", variables=VARIABLES)


def test_explain_names_every_channel_out_and_the_embedded_policy(repo, tmp_path):
    spec = everything_spec(repo, tmp_path)
    text = explain(spec, render(spec, images_for(render_group(spec))))
    channels = text.split("Every channel out of the room:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    rego = (tmp_path / "allow-get-hello.rego").read_bytes()
    storage = VARIABLES["storage_url"]
    expected = [
        "datasink consumer-output: what the app writes at /mnt/remote/consumer-output",
        "egress https to api.example.com:443: HTTPS requests whose host is api.example.com, TLS verified",
        "egress http to feed.example.com:80: HTTP requests whose host is feed.example.com",
        "egress tcp to 10.0.0.7:5432: any TCP stream",
        "DNS over TCP",
        f"API hello (app port 8080): clients outside call it over TLS via the proxy and read its answers, filtered "
        f"by the Rego policy allow-get-hello.rego ({len(rego)} bytes, sha256 {hashlib.sha256(rego).hexdigest()}, "
        "embedded in the contract)",
        f"export telemetry (traces, metrics, sidecar logs) to {storage} container "
        "consumer-telemetry, encrypted to consumer-kek",
        "every 30 s",
        f"export the app's logs (stdout, stderr) to {storage} container consumer-logs",
        "call the governance sidecar API: read the contract's secrets, write audit events",
        "call the skr sidecar API: get attestation reports and MAA tokens, and release keys from the vaults "
        f"https://extra.vault.example/, {VARIABLES['keyvault_url']}/ (the volumes' keys among them)",
        "call the identity sidecar API: get managed identity tokens for the spec's federated identities "
        "(consumer-room-identity)",
        "call the telemetry sidecar API: send OTLP",
    ]
    for part in expected:
        assert sum(part in line for line in channels) == 1, (part, channels)
    assert len(channels) == 12, channels  # one line per channel: nothing unexplained, nothing twice


def test_explain_of_a_closed_room_says_so(repo, tmp_path):
    spec = load_spec(repo / "examples/cleanroomhello-job/spec.yaml", variables=VARIABLES)
    text = explain(spec, render(spec, images_for(render_group(spec))))
    for line in ("egress: none, all egress is blocked", "inbound: none, the room accepts no connection",
                 "telemetry (traces, metrics, sidecar logs): not exported (no sink)",
                 "sidecar APIs: the app may call none"):
        assert f"  - {line}\n" in text, text
