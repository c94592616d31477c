from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sidecars.common.errors import SpecError
from sidecars.renderings.azure_spec import import_azure_spec, validate_import
from sidecars.room.group import render_group
from sidecars.spec import load_spec

from .conftest import images_for

AZURE_SPEC = Path(__file__).parent / "data" / "azure-cleanroom-spec.yaml"


@pytest.fixture
def imported():
    return import_azure_spec(AZURE_SPEC)


def test_contract_becomes_a_ccr_spec(imported):
    spec = validate_import(imported)
    assert spec.name == "demo-app" and spec.contract.id == "collab-7"
    assert str(spec.contract.governance.endpoint) == "https://cgs.contoso.test/"
    assert str(spec.maa_endpoint) == "https://sharedneu.neu.attest.azure.net/"
    source = spec.datasources[0]
    assert (source.name, source.path_in_app) == ("publisher-input", "/mnt/remote/input")
    assert str(source.store.account_url) == "https://publisher.blob.core.windows.net/"
    assert source.store.identity.client_id == "11111111-1111-1111-1111-111111111111"
    assert source.encryption.mode.value == "CSE"
    assert source.encryption.key.kek_name == "publisher-kek"
    assert str(source.encryption.key.vault_url) == "https://publisher-hsm.managedhsm.azure.net/"
    assert source.encryption.key.dek_vault_url == "https://publisher-kv.vault.azure.net/"
    sink = spec.datasinks[0]
    assert sink.encryption.mode.value == "CPK", "base64 configuration is decoded"
    assert sink.path_in_app == "/mnt/remote/output"
    app = spec.application
    assert app.image.endswith("@sha256:" + "1" * 64) and app.command == ["python3", "/app/main.py"]
    assert app.env == {"MODE": "batch"} and app.mode == "api"
    assert (app.resources.cpu, app.resources.memory_gb) == (1.0, 2.0)
    assert [(e.port, e.policy) for e in spec.endpoints] == [(8080, "port-8080.rego")]
    assert [(r.host, r.port, r.protocol) for r in spec.egress.allow] == [("10.0.0.5", 5432, "tcp")]
    assert spec.egress.dns == "tcp"
    # The contract's app log sink is SSE, which a ccr room never exports to: named, not carried over.
    assert spec.telemetry.log_sink is None
    assert spec.telemetry.telemetry_sink.store.container == "infra-traces"
    assert spec.telemetry.telemetry_sink.encryption.mode.value == "CSE"
    assert spec.telemetry.telemetry_sink.encryption.key.kek_name == "consumer-kek"


def test_unsupported_fields_are_named_never_dropped(imported):
    named = "\n".join(imported.not_carried)
    for path in ("sandbox.privacyPolicy", "applications[1]", "network.http.outbound",
                 "governance.telemetry.infrastructure.metrics", "applications[0].image.enforcementPolicy",
                 "datasources[0].protection.encryptionSecretAccessIdentity"):
        assert path in named, path
    assert ("governance.telemetry.application.logs.protection: encryption mode SSE: ccr exports telemetry and logs "
            "only client-side encrypted (CSE)") in named
    assert "sidekick" in named


def test_unknown_top_level_field_is_named(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(AZURE_SPEC.read_text() + "\nexperimental: {anything: 1}\n")
    assert any(line.startswith("experimental:") for line in import_azure_spec(path).not_carried)


def test_unsupported_store_type_is_an_error(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(AZURE_SPEC.read_text().replace("type: Azure_BlobStorage\n      id: /subscriptions",
                                                   "type: Azure_OneLake\n      id: /subscriptions"))
    with pytest.raises(SpecError, match=r"datasources\[0\].store.type: 'Azure_OneLake' is not supported"):
        import_azure_spec(path)


def test_cli_writes_a_spec_that_loads_and_renders(tmp_path):
    out = tmp_path / "room" / "spec.yaml"
    done = subprocess.run([sys.executable, "-m", "sidecars", "spec", "import-azure", str(AZURE_SPEC), "-o", str(out)],
                          capture_output=True, text=True, check=True)
    assert "not carried over: applications[1]" in done.stderr
    text = out.read_text()
    assert "# Not carried over" in text and "#   network.http.outbound" in text
    assert (out.parent / "port-8080.rego").read_text().startswith("package envoy.authz")
    spec = load_spec(out)
    group = render_group(spec)
    assert group.app.image == spec.application.image
    assert images_for(group).resolve(group.app.image).layers
