"""`trust.ca_certificates` and `entra_endpoint`: what a spec may make the room trust, attacked."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sidecars.common.errors import SpecError
from sidecars.common.tls import LocalCA
from sidecars.spec import MAX_CA_CERTIFICATES, load_spec, parse_spec
from tests.unit.renderings.conftest import VARIABLES


@pytest.fixture(scope="module")
def ca_pem(tmp_path_factory) -> str:
    return LocalCA.create(tmp_path_factory.mktemp("ca")).cert_file.read_text()


@pytest.fixture(scope="module")
def base(repo: Path) -> dict:
    return load_spec(repo / "examples/cleanroomhello-job/spec.yaml", variables=VARIABLES).model_dump(
        mode="json", by_alias=True)


def problems_of(base: dict, **changes) -> list[str]:
    try:
        parse_spec({**base, **changes})
    except SpecError as exc:
        return exc.problems
    return []


def test_a_spec_carries_its_cas_and_they_are_measured(base, ca_pem):
    spec = parse_spec({**base, "trust": {"ca_certificates": ca_pem}})
    assert spec.trust.certificates_pem() == ca_pem
    # in the canonical JSON every sidecar gets, so the CCE policy (HOST_DATA) changes with it
    assert ca_pem.strip().splitlines()[1] in spec.canonical_json()
    assert spec.canonical_json() != parse_spec(base).canonical_json()


def _key_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@pytest.mark.parametrize("attack, problem", [
    (lambda ca: ca + _key_pem(), "block 2 is a 'PRIVATE KEY', not a CERTIFICATE"),
    (lambda ca: "trust me\n" + ca, "only PEM CERTIFICATE blocks"),
    (lambda ca: ca.replace("MI", "XX", 3), "certificate 1 does not parse as an X.509 certificate"),
    (lambda ca: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
     "certificate 1 does not parse"),
    (lambda ca: ca * (MAX_CA_CERTIFICATES + 1), f"{MAX_CA_CERTIFICATES + 1} certificates, over the 16 allowed"),
    (lambda ca: ca + " " * 70_000, "bytes, over the 65536 allowed"),
    (lambda ca: ca.replace("-----END CERTIFICATE-----", "-----END CERTIFICATE"), "only PEM CERTIFICATE blocks"),
])
def test_hostile_ca_certificates_are_one_line(base, ca_pem, attack, problem):
    started = time.monotonic()
    problems = problems_of(base, trust={"ca_certificates": attack(ca_pem)})
    assert len(problems) == 1 and problems[0].startswith("trust.ca_certificates: ") and problem in problems[0]
    assert "\n" not in problems[0] and time.monotonic() - started < 2


@pytest.mark.parametrize("trust, problem", [
    ({"ca_certificates": ["x"]}, "trust.ca_certificates: Input should be a valid string"),
    ({"ca_bundle": "/etc/evil.pem"}, "trust.ca_bundle: unknown field (check the spelling)"),
])
def test_trust_has_no_other_shape(base, trust, problem):
    assert problems_of(base, trust=trust) == [problem]


def test_an_empty_ca_list_trusts_the_system_store_alone(base):
    spec = parse_spec({**base, "trust": {"ca_certificates": "  \n"}})
    assert spec.trust.ca_certificates == "" and spec.trust.certificates_pem() == ""


@pytest.mark.parametrize("endpoint, problem", [
    ("http://login.example.test", "entra_endpoint: URL scheme should be 'https'"),
    ("login.example.test", "entra_endpoint: Input should be a valid URL"),
])
def test_entra_endpoint_is_https(base, endpoint, problem):
    problems = problems_of(base, entra_endpoint=endpoint)
    assert len(problems) == 1 and problems[0].startswith(problem)


def test_the_examples_take_the_stand_ins_ca_and_entra_from_the_endpoints_file(repo, ca_pem):
    for example in ("cleanroomhello-job", "cleanroomhello-api", "db-access"):
        variables = {**VARIABLES, "db_config_secret": "db-config", "db_host": "192.0.2.10"}
        spec = load_spec(repo / f"examples/{example}/spec.yaml",
                         variables={**variables, "ca_certificates": ca_pem, "entra_endpoint": "https://127.0.0.1:9"})
        assert spec.trust.certificates_pem() == ca_pem and str(spec.entra_endpoint) == "https://127.0.0.1:9/"
        bare = load_spec(repo / f"examples/{example}/spec.yaml", variables=variables)
        assert bare.trust.ca_certificates == ""
        assert str(bare.entra_endpoint) == "https://login.microsoftonline.com/"
