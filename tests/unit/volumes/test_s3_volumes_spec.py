"""A spec with S3 volumes, through the room's renderings and the volumes sidecar: the mount is told the store
(bucket, prefix, the name of the CGS secret or the role) and where to ask for credentials, never a key; the
ARM template, CCE policy and `ccr spec explain` take S3 stores as they take Blob ones."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml

from sidecars.renderings.explain import explain
from sidecars.renderings.render import render
from sidecars.room.group import render_group
from sidecars.spec import S3Store, parse_spec
from sidecars.volumes.__main__ import Mount, mount_argv
from sidecars.volumes.sidecar import VolumesConfig
from tests.unit.renderings.conftest import images_for

VARIABLES = {"cgs_endpoint": "https://cgs.example", "maa_endpoint": "https://maa.example",
             "storage_url": "https://127.0.0.1:10000/devstoreaccount1", "keyvault_url": "https://kv.example"}
SECRET_ID = "5d0c8a_publisher-s3"
ROLE = "arn:aws:iam::123456789012:role/s3core-consumer-room"


def s3_spec(repo):
    data = yaml.safe_load((repo / "examples/cleanroomhello-job/spec.yaml").read_text())
    data["datasources"][0]["store"] = {"kind": "s3", "region": "eu-west-1", "bucket": "publisher-input",
                                       "prefix": "2026", "credentials": {"secret": SECRET_ID}}
    data["datasources"][0]["encryption"]["mode"] = "SSE-C"
    data["datasinks"][0]["store"] = {"kind": "s3", "region": "eu-west-1", "bucket": "consumer-output",
                                     "credentials": {"role_arn": ROLE}}
    return parse_spec(data, variables=VARIABLES)


def test_the_mount_gets_the_store_and_governance_never_a_key(repo, tmp_path):
    spec = s3_spec(repo)
    config = VolumesConfig(spec=spec, port=0, skr_url="http://skr", run_dir=tmp_path,
                           governance_url="http://gov", sidecar_token_file=tmp_path / "token")
    files = (tmp_path / "m", tmp_path / "s", tmp_path / "l")
    source = mount_argv(config, Mount(spec.datasources[0], "datasource", *files))
    sink = mount_argv(config, Mount(spec.datasinks[0], "datasink", *files))
    for argv, store in ((source, spec.datasources[0].store), (sink, spec.datasinks[0].store)):
        assert "--storage-url" not in argv and "--s3-credentials-file" not in argv
        assert S3Store.model_validate_json(argv[argv.index("--s3-store") + 1]) == store
        assert argv[argv.index("--governance-url") + 1] == "http://gov"
    assert source[source.index("--mode") + 1] == "SSE-C"
    assert json.loads(source[source.index("--s3-store") + 1])["credentials"] == {"secret": SECRET_ID, "role_arn": None}


def test_renderings_and_explain_take_s3_stores(repo):
    spec = s3_spec(repo)
    rendered = render(spec, images_for(render_group(spec)))
    assert rendered.host_data  # measured like any spec: the store, its prefix and its credentials' names
    text = explain(spec, rendered)
    assert "(S3 bucket publisher-input prefix 2026/)" in text
    assert "to https://s3.eu-west-1.amazonaws.com S3 bucket consumer-output, encrypted (CSE)" in text


def test_a_room_without_s3_volumes_never_loads_boto3(repo):
    # The sidecars' runtime image carries only the runtime's requirements: the S3 backend is loaded by kind.
    code = ("import sys, sidecars.volumes.mount, sidecars.volumes.commands, sidecars.volumes.__main__; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore', 'moto')))")
    result = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
