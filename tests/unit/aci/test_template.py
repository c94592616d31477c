"""`ccr aci run` reads a template as the resource provider would, and refuses what it cannot simulate."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from sidecars.aci.template import SIMULATED_LOCATION, load_group, load_group_files, template_sha256
from sidecars.cli import main
from sidecars.common.errors import ConfigError

from .conftest import container_properties, group_properties


def test_the_rendered_template_loads_with_every_container_as_written(job_template):
    group = load_group(job_template)
    assert group.name == "cleanroomhello-job"
    assert group.location == SIMULATED_LOCATION  # [resourceGroup().location] through the parameter default
    assert [c.name for c in group.init_containers] == ["ccr-firewall"]
    skr = next(c for c in group.containers if c.name == "ccr-skr")
    written = container_properties(job_template, "ccr-skr")
    assert skr.image == written["image"] and list(skr.command) == written["command"]
    assert dict(skr.env) == {e["name"]: e["value"] for e in written["environmentVariables"]}
    assert skr.privileged and skr.cpu == written["resources"]["requests"]["cpu"]
    policy = base64.b64decode(group_properties(job_template)["confidentialComputeProperties"]["ccePolicy"])
    assert group.host_data == hashlib.sha256(policy).hexdigest()


def test_parameters_file_names_the_group(job_template):
    group = load_group(job_template, {"parameters": {"containerGroupName": {"value": "other-room"}}})
    assert group.name == "other-room"


def test_the_template_hash_is_of_its_canonical_json(job_template):
    spaced = json.loads(json.dumps(job_template, indent=4))
    assert template_sha256(spaced) == template_sha256(job_template)
    container_properties(job_template, "ccr-skr")["command"].append("--x")
    assert template_sha256(spaced) != template_sha256(job_template)


@pytest.mark.parametrize("change, refusal", [
    (lambda p: p["volumes"].append({"name": "share", "azureFile": {"shareName": "s", "storageAccountName": "a"}}),
     "only emptyDir volumes"),
    (lambda p: p["containers"][0]["properties"].update(livenessProbe={"exec": {"command": ["true"]}}),
     "livenessProbe is not simulated"),
    (lambda p: p["containers"][0]["properties"]["environmentVariables"].append({"name": "S", "secureValue": "x"}),
     "secureValue"),
    (lambda p: p["containers"][0]["properties"].update(securityContext={"runAsUser": 1000}),
     "runAsUser"),
    (lambda p: p.update(sku="Standard"), "sku must be Confidential"),
    (lambda p: p.pop("confidentialComputeProperties"), "ccePolicy is missing"),
    (lambda p: p["containers"][0]["properties"].update(gpuz=1), r"containers\[0\]\.properties\.gpuz is not a field"),
    (lambda p: p["containers"][0]["properties"].pop("image"), "image is required"),
    (lambda p: p["containers"][0]["properties"]["volumeMounts"].append({"name": "nope", "mountPath": "/x"}),
     "mounts volume 'nope'"),
    (lambda p: p["containers"][0]["properties"].update(command=["[concat('a','b')]"]), "cannot be simulated"),
    (lambda p: p.update(restartPolicy="Always"), "restartPolicy Always"),
])
def test_what_cannot_be_simulated_is_refused_in_one_line(job_template, change, refusal):
    change(group_properties(job_template))
    with pytest.raises(ConfigError, match=refusal) as raised:
        load_group(job_template)
    assert "\n" not in str(raised.value)


def test_a_hostile_template_file_is_refused_in_one_line(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ConfigError, match="nested deeper|not JSON"):
        load_group_files(deep)
    huge = tmp_path / "huge.json"
    huge.write_bytes(b"{" + b" " * (2 * 1024 * 1024) + b"}")
    with pytest.raises(ConfigError, match="limit"):
        load_group_files(huge)
    with pytest.raises(ConfigError, match="expected a JSON object"):
        (tmp_path / "list.json").write_text("[]")
        load_group_files(tmp_path / "list.json")


def test_a_parameter_the_template_does_not_declare_is_refused(job_template):
    with pytest.raises(ConfigError, match="does not declare: nope"):
        load_group(job_template, {"parameters": {"nope": {"value": 1}}})


def test_an_invalid_group_name_from_parameters_is_refused(job_template):
    with pytest.raises(ConfigError, match="not a valid ACI name"):
        load_group(job_template, {"parameters": {"containerGroupName": {"value": "../../etc"}}})


def test_a_group_name_that_is_a_path_is_refused_by_status_and_delete(capsys):
    for verb in ("status", "delete"):
        assert main(["aci", verb, "../../etc"]) == 1
        assert "is not a container group name" in capsys.readouterr().err
