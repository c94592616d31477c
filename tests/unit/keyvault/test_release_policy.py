"""The secure key release policy grammar and its evaluation."""

from __future__ import annotations

import json

import pytest

from sidecars.common.errors import BadRequest, PolicyDenied
from sidecars.common.release_policy import ReleasePolicy, normalize_authority, sevsnp_policy

MAA = "https://maa.example.attest.azure.net"
CLAIMS = {"x-ms-attestation-type": "sevsnpvm", "x-ms-sevsnpvm-hostdata": "ab" * 32,
          "x-ms-sevsnpvm-is-debuggable": False, "x-ms-sevsnpvm-guestsvn": 10,
          "x-ms-compliance-status": "azure-compliant-uvm",
          "x-ms-isolation-tee": {"x-ms-attestation-type": "sevsnpvm", "x-ms-compliance-status": "azure-compliant-cvm"}}


def policy(*conditions, mode="allOf", authority=MAA) -> ReleasePolicy:
    return ReleasePolicy.parse(json.dumps({"version": "1.0.0", "anyOf": [{"authority": authority,
                                                                           mode: list(conditions)}]}))


@pytest.mark.parametrize("condition", [
    {"claim": "x-ms-sevsnpvm-hostdata", "equals": "ab" * 32},
    {"claim": "x-ms-sevsnpvm-is-debuggable", "equals": "false"},
    {"claim": "x-ms-sevsnpvm-is-debuggable", "equals": False},
    {"claim": "x-ms-sevsnpvm-guestsvn", "greaterOrEquals": 9},
    {"claim": "x-ms-sevsnpvm-guestsvn", "greater": "9"},
    {"claim": "x-ms-sevsnpvm-guestsvn", "lessOrEquals": 10},
    {"claim": "x-ms-sevsnpvm-guestsvn", "less": 11},
    {"claim": "x-ms-attestation-type", "notEquals": "sgx"},
    {"claim": "x-ms-compliance-status", "exists": True},
    {"claim": "x-ms-sgx-mrsigner", "exists": False},
    {"claim": "x-ms-isolation-tee.x-ms-compliance-status", "equals": "azure-compliant-cvm"},
    {"anyOf": [{"claim": "x-ms-attestation-type", "equals": "sgx"},
               {"claim": "x-ms-attestation-type", "equals": "sevsnpvm"}]},
])
def test_conditions_that_hold(condition):
    policy(condition).evaluate(MAA, CLAIMS)


@pytest.mark.parametrize("condition, named", [
    ({"claim": "x-ms-sevsnpvm-hostdata", "equals": "cd" * 32}, "x-ms-sevsnpvm-hostdata"),
    ({"claim": "x-ms-sevsnpvm-is-debuggable", "equals": True}, "x-ms-sevsnpvm-is-debuggable"),
    ({"claim": "x-ms-sevsnpvm-guestsvn", "greaterOrEquals": 11}, "x-ms-sevsnpvm-guestsvn"),
    ({"claim": "x-ms-sevsnpvm-guestsvn", "less": 10}, "x-ms-sevsnpvm-guestsvn"),
    ({"claim": "x-ms-compliance-status", "exists": False}, "x-ms-compliance-status"),
    ({"claim": "x-ms-sgx-mrsigner", "equals": "00"}, "x-ms-sgx-mrsigner"),
    ({"claim": "x-ms-isolation-tee.x-ms-attestation-type", "equals": "tdxvm"}, "x-ms-isolation-tee"),
    ({"allOf": [{"claim": "x-ms-attestation-type", "equals": "sevsnpvm"},
                {"claim": "x-ms-sevsnpvm-hostdata", "notEquals": "ab" * 32}]}, "x-ms-sevsnpvm-hostdata"),
])
def test_conditions_that_fail_name_the_claim(condition, named):
    with pytest.raises(PolicyDenied) as err:
        policy(condition).evaluate(MAA, CLAIMS)
    assert named in str(err.value)


def test_numeric_ordering_is_not_lexicographic():
    policy({"claim": "x-ms-sevsnpvm-guestsvn", "greater": 9}).evaluate(MAA, CLAIMS)  # "10" < "9" as text


@pytest.mark.parametrize("issuer", [MAA, MAA + "/", "maa.example.attest.azure.net", "HTTPS://MAA.example.attest.azure.net:443/"])
def test_issuer_matches_authority_after_normalisation(issuer):
    policy({"claim": "x-ms-attestation-type", "equals": "sevsnpvm"}).evaluate(issuer, CLAIMS)


def test_other_authority_is_refused():
    with pytest.raises(PolicyDenied, match="not an authority"):
        policy({"claim": "x-ms-attestation-type", "equals": "sevsnpvm"}).evaluate("https://evil.example", CLAIMS)
    assert normalize_authority("https://127.0.0.1:8443/") != normalize_authority("https://127.0.0.1:8444")


def test_any_of_authorities_one_suffices():
    doc = {"version": "1.0.0", "anyOf": [
        {"authority": "https://other.example", "allOf": [{"claim": "x", "equals": "1"}]},
        {"authority": MAA, "allOf": [{"claim": "x-ms-attestation-type", "equals": "sevsnpvm"}]}]}
    ReleasePolicy.parse(doc).evaluate(MAA, CLAIMS)


@pytest.mark.parametrize("doc, where", [
    ({"anyOf": []}, "version"),
    ({"version": "2.0", "anyOf": []}, "version"),
    ({"version": "1.0.0", "anyOf": []}, "anyOf"),
    ({"version": "1.0.0", "anyOf": [{"allOf": [{"claim": "a", "equals": "b"}]}]}, "anyOf[0].authority"),
    ({"version": "1.0.0", "anyOf": [{"authority": MAA}]}, "anyOf[0]"),
    ({"version": "1.0.0", "anyOf": [{"authority": MAA, "allOf": [{"claim": "a", "like": "b"}]}]},
     "anyOf[0].allOf[0]"),
    ({"version": "1.0.0", "anyOf": [{"authority": MAA, "allOf": [{"claim": "a", "equals": "b", "less": 1}]}]},
     "anyOf[0].allOf[0]"),
    ({"version": "1.0.0", "anyOf": [{"authority": MAA, "allOf": [{"claim": "a", "equals": {"x": 1}}]}]},
     "anyOf[0].allOf[0].equals"),
])
def test_malformed_policies_name_the_path(doc, where):
    with pytest.raises(BadRequest) as err:
        ReleasePolicy.parse(doc)
    assert where in str(err.value)


def test_member_names_are_case_insensitive():
    doc = {"Version": "1.0.0", "anyof": [{"Authority": MAA, "allof": [{"Claim": "x-ms-attestation-type",
                                                                         "EQUALS": "sevsnpvm"}]}]}
    ReleasePolicy.parse(doc).evaluate(MAA, CLAIMS)


def test_sevsnp_policy_binds_host_data_and_refuses_debug():
    parsed = ReleasePolicy.parse(sevsnp_policy(MAA, "AB" * 32))
    parsed.evaluate(MAA, CLAIMS)
    with pytest.raises(PolicyDenied, match="is-debuggable"):
        parsed.evaluate(MAA, {**CLAIMS, "x-ms-sevsnpvm-is-debuggable": True})
