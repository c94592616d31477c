"""The spec's side of manifests: a datasource's pin is validated, measured (HOST_DATA changes with it), passed to
its mount, shown by `ccr spec explain`; a datasink's mount is told how its manifest gets signed."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml

from sidecars.common.errors import SpecError
from sidecars.renderings.explain import explain
from sidecars.renderings.render import render
from sidecars.room.group import render_group
from sidecars.spec import CleanRoomSpec, EncryptionMode, parse_spec
from sidecars.volumes.__main__ import Mount, mount_argv
from sidecars.volumes.commands import Target, _checked_manifest
from sidecars.volumes.manifest import MANIFEST_BLOB, ManifestRefused, SinkManifestMissing
from sidecars.volumes.sidecar import VolumesConfig
from tests.unit.renderings.conftest import images_for

VARIABLES = {"cgs_endpoint": "https://cgs.example", "maa_endpoint": "https://maa.example",
             "storage_url": "https://127.0.0.1:10000/devstoreaccount1", "keyvault_url": "https://kv.example"}
PIN = "ab" * 32


def example(repo: Path, pin: str | None) -> dict:
    data = yaml.safe_load((repo / "examples/cleanroomhello-job/spec.yaml").read_text())
    if pin is not None:
        data["datasources"][0]["manifest_sha256"] = pin
    return data


def rendered(spec: CleanRoomSpec):
    return render(spec, images_for(render_group(spec)))


def test_the_pin_is_measured(repo) -> None:
    unpinned = parse_spec(example(repo, None), variables=VARIABLES)
    pinned = parse_spec(example(repo, PIN), variables=VARIABLES)
    assert pinned.datasources[0].manifest_sha256 == PIN
    assert rendered(pinned).host_data != rendered(unpinned).host_data  # another manifest is another room


@pytest.mark.parametrize("pin", ["AB" * 32, "ab" * 31, "zz" * 32, ""])
def test_a_malformed_pin_is_one_line_naming_the_field(repo, pin) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(example(repo, pin), variables=VARIABLES)
    assert "datasources[0].manifest_sha256" in str(info.value) and "\n" not in str(info.value)


def test_explain_shows_which_datasources_are_bound(repo) -> None:
    pinned = parse_spec(example(repo, PIN), variables=VARIABLES)
    text = explain(pinned, rendered(pinned))
    assert f"only the objects of manifest {PIN[:16]}" in text
    assert text.count("WARNING: no manifest pinned") == 1  # partner-input has none
    assert "with a manifest signed by the room" in text


def test_mounts_are_told_about_manifests(repo, tmp_path) -> None:
    spec = parse_spec(example(repo, PIN), variables=VARIABLES)
    config = VolumesConfig(spec=spec, port=0, skr_url="http://skr", run_dir=tmp_path,
                           governance_url="http://gov", sidecar_token_file=tmp_path / "token")

    def argv(volume, kind: str) -> list[str]:
        return mount_argv(config, Mount(volume, kind, tmp_path / "m", tmp_path / "s", tmp_path / "l"))

    source, unpinned, sink = argv(spec.datasources[0], "datasource"), argv(spec.datasources[1], "datasource"), \
        argv(spec.datasinks[0], "datasink")
    assert source[source.index("--manifest-sha256") + 1] == PIN
    assert "--manifest-sha256" not in unpinned
    assert source[source.index("--governance-url") + 1] == "http://gov"  # refusals are audited
    assert sink[sink.index("--governance-url") + 1] == "http://gov"
    assert sink[sink.index("--contract-id") + 1] == spec.contract.id
    assert "--writable" in sink and "--manifest-sha256" not in sink


def test_a_sinks_download_without_the_contract_ca_is_refused_before_reading_storage(tmp_path) -> None:
    """With --spec naming a datasink, a download must check the room's signature: without --contract-ca it is
    refused (one line saying what to pass), not downloaded unverified."""
    args = argparse.Namespace(untrusted=False, manifest_sha256=None, contract_ca=None, contract=None, prefix=None)
    target = Target("https://127.0.0.1:1/acct", "results", EncryptionMode.CSE, None, "s", None, None,
                    kind="datasink", contract_id="collab")

    class NoStorage:
        account = "acct"

        def get_small(self, *_args):
            raise AssertionError("storage read before the refusal")

    with pytest.raises(ManifestRefused, match="pass --contract-ca PEM") as info:
        _checked_manifest(args, target, NoStorage(), [])
    assert "\n" not in str(info.value)


def test_a_sinks_download_before_the_room_signed_it_is_refused_as_missing_not_tampered(tmp_path) -> None:
    """Storage holds no .ccr/manifest.json yet (the room signs it when it stops): `ccr data download` refuses
    with SinkManifestMissing, which the workspace answers as "published when the room stops"."""
    ca = tmp_path / "contract-ca.pem"
    # only its PEM marker is looked at: the missing manifest is refused before the certificate is parsed
    ca.write_text("-----BEGIN CERTIFICATE-----\nnot parsed\n-----END CERTIFICATE-----\n")
    args = argparse.Namespace(untrusted=False, manifest_sha256=None, contract_ca=ca, contract=None, prefix=None,
                              volume="results")
    target = Target("https://127.0.0.1:1/acct", "results", EncryptionMode.CSE, None, "s", None, None,
                    kind="datasink", contract_id="collab")

    class UnsignedSink:
        account = "acct"

        def get_small(self, name, _limit):
            assert name == MANIFEST_BLOB
            return None

    with pytest.raises(SinkManifestMissing, match="no signed manifest") as info:
        _checked_manifest(args, target, UnsignedSink(), [])
    assert "\n" not in str(info.value)
