"""Production mode: a sidecar in a container of the rendered ARM template configures itself from the
template's environment (CCR_SPEC, CCR_SIDECAR) and what Confidential ACI adds (UVM_SECURITY_CONTEXT_DIR),
nothing else: no endpoints file, no host-data variable, no mock platform, no dev tokens."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from sidecars.common.errors import ConfigError
from sidecars.common.room import Room
from sidecars.common.tls import LocalCA
from sidecars.renderings.arm import arm_template
from sidecars.renderings.cce import render_policy
from sidecars.room.group import render_group
from sidecars.room.registry import REGISTRY
from sidecars.skr.__main__ import NO_PLATFORM, choose_platform
from sidecars.spec import load_spec
from tests.unit.renderings.conftest import VARIABLES, images_for

ENTRA = "https://login.example.test"


@pytest.fixture(scope="module")
def party_ca(tmp_path_factory) -> str:
    """A party's private CA, carried in the spec."""
    return LocalCA.create(tmp_path_factory.mktemp("ca"), "a party's private CA").cert_file.read_text()


@pytest.fixture(scope="module")
def template(repo, party_ca) -> dict:
    spec = load_spec(repo / "examples/cleanroomhello-job/spec.yaml",
                     variables={**VARIABLES, "ca_certificates": party_ca, "entra_endpoint": ENTRA})
    group = render_group(spec)
    return arm_template(group, render_policy(group, images_for(group)))


def _unescaped(value: str) -> str:
    return value[1:] if value.startswith("[[") else value  # ARM's escape of a literal "["


@pytest.fixture
def containers(template, tmp_path) -> dict[str, dict[str, str]]:
    """Each sidecar container's environment exactly as the template gives it, plus what the platform adds."""
    properties = template["resources"][0]["properties"]
    context_dir = tmp_path / "security-context"
    context_dir.mkdir()
    environments = {}
    for container in [*properties["initContainers"], *properties["containers"]]:
        env = {e["name"]: _unescaped(e["value"]) for e in container["properties"]["environmentVariables"]}
        environments[env["CCR_SIDECAR"]] = {**env, "UVM_SECURITY_CONTEXT_DIR": str(context_dir),
                                             "HOSTNAME": "SandboxHost-1", "TERM": "xterm"}
    return environments


def test_the_template_gives_each_sidecar_only_its_spec_and_name(containers):
    assert set(containers) == set(REGISTRY.names)
    for env in containers.values():
        assert {k for k in env if k.startswith("CCR_")} == {"CCR_SPEC", "CCR_SIDECAR"}


def test_every_sidecar_configures_itself_from_the_template_alone(containers, party_ca, tmp_path):
    configs = {}
    for name, env in containers.items():
        room = Room.from_environment(env, REGISTRY.layout())
        assert room.emulation is None  # no stand-ins: nothing mock can be configured
        configs[name] = REGISTRY.get(name).configure(room)
    bundle = "/run/ccr/trust/ca-bundle.pem"
    identity_url = f"http://127.0.0.1:{REGISTRY.get('identity').port()}"

    skr = configs["skr"]
    assert (skr.platform, skr.mock_platform_dir, skr.host_data, skr.dev_tokens_dir) == ("auto", None, None, None)
    assert skr.identity_url == identity_url and skr.ca_bundle == bundle
    assert skr.security_context_dir == str(tmp_path / "security-context")
    assert skr.destinations.attestation == {"https://maa.example.test"}

    volumes = configs["volumes"]
    assert volumes.dev_tokens_dir is None and volumes.identity_url == identity_url and volumes.ca_bundle == bundle
    telemetry = configs["telemetry"]
    assert telemetry.identity_url == identity_url and telemetry.ca_bundle == bundle
    governance = configs["governance"]
    assert governance.cgs_endpoint.rstrip("/") == "https://cgs.example.test" and governance.cgs_ca_bundle == bundle
    identity = configs["identity"]
    assert identity.entra_endpoint == ENTRA and identity.entra_ca_bundle == bundle
    assert configs["proxy"].upstream_ca == bundle
    launcher = configs["launcher"]
    # the firewall is an init container: gone before the launcher starts, never waited for or watched
    assert "firewall" not in launcher.sidecar_status_urls and "firewall" not in launcher.sidecar_failure_policies
    assert configs["firewall"].backend == "nftables"


def test_the_ca_bundle_is_the_system_store_plus_the_specs_ca(containers, party_ca, tmp_path):
    room = Room.from_environment(containers["skr"], REGISTRY.layout())
    room = dataclasses.replace(room, placement=dataclasses.replace(room.placement, run_dir=tmp_path / "run"))
    path = room.write_ca_bundle()
    assert path == tmp_path / "run/trust/ca-bundle.pem" and str(path) == room.ca_bundle
    text = path.read_text()
    system = Path("/etc/ssl/certs/ca-certificates.crt").read_text()
    assert text.startswith(system) and text.endswith(party_ca)
    assert text.count("BEGIN CERTIFICATE") == system.count("BEGIN CERTIFICATE") + 1


def test_a_spec_without_private_cas_trusts_the_system_store_alone(repo, containers):
    spec = load_spec(repo / "examples/cleanroomhello-job/spec.yaml", variables=VARIABLES)
    env = {**containers["skr"], "CCR_SPEC": spec.canonical_json()}
    room = Room.from_environment(env, REGISTRY.layout())
    assert room.ca_bundle is None and room.write_ca_bundle() is None
    assert REGISTRY.get("skr").configure(room).ca_bundle is None
    assert str(room.spec.entra_endpoint).rstrip("/") == "https://login.microsoftonline.com"


def test_skr_in_a_container_without_sev_snp_refuses_to_start(containers, tmp_path, monkeypatch):
    """Attack: run the rendered skr anywhere but on C-ACI (or the simulator) hoping for a mock platform."""
    room = Room.from_environment(containers["skr"], REGISTRY.layout())
    config = REGISTRY.get("skr").configure(room)
    monkeypatch.setattr("sidecars.skr.__main__.RealSnpProvider.available", staticmethod(lambda *a: False))
    with pytest.raises(ConfigError) as refused:
        choose_platform(config)
    assert str(refused.value) == NO_PLATFORM
    # the simulator's report socket in the security-context directory: simulated, and says so
    (tmp_path / "security-context" / "ccr-simulated-sev-guest.sock").touch()
    assert choose_platform(config) == "simulated"
    monkeypatch.setattr("sidecars.skr.__main__.RealSnpProvider.available", staticmethod(lambda *a: True))
    assert choose_platform(config) == "sev-snp"
