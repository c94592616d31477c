"""The spec loader on arbitrary input: the answer is a valid CleanRoomSpec or the project's spec error (one
line per problem, one line in all), never another exception and never a hang.

Four sources of input: arbitrary bytes, YAML-ish text (the characters YAML gives meaning to), arbitrary
JSON-like trees, and a valid spec with one subtree replaced by an arbitrary one (which reaches the field
rules, not only the top-level shape check). Each example has a deadline; the examples are bounded so the
file runs in a few seconds."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecars.common.errors import SpecError
from sidecars.spec import CleanRoomSpec, load_spec, parse_spec

REPO = Path(__file__).resolve().parents[2]
LOCAL = {
    "cgs_endpoint": "https://127.0.0.1:9001",
    "maa_endpoint": "https://127.0.0.1:9002",
    "keyvault_url": "https://127.0.0.1:9003",
    "storage_url": "https://127.0.0.1:9004/devstoreaccount1",
}
BOUNDED = settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                         HealthCheck.too_slow])
VALID = yaml.safe_load((REPO / "examples/cleanroomhello-job/spec.yaml").read_text())

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=40),
                    st.sampled_from(["${cgs_endpoint}", "${undefined}", "${x:-y}", "0:0", "127.0.0.1", "..",
                                     "/etc/passwd", "https://a.example", "http://127.0.0.1:1/a", "CSE", "tcp",
                                     "localhost", "a@sha256:" + "0" * 64]))
keys = st.one_of(st.text(max_size=12), st.sampled_from(sorted(CleanRoomSpec.model_fields) + [
    "apiVersion", "image", "user", "host", "port", "protocol", "policy", "policy_rego", "mounts", "mount_path",
    "allow", "store", "encryption", "key", "mode"]))
trees = st.recursive(scalars, lambda children: st.one_of(st.lists(children, max_size=5),
                                                          st.dictionaries(keys, children, max_size=5)),
                     max_leaves=40)
YAML_ALPHABET = "{}[]:,&*!|>-?#%@`'\"\\ \t\nabcxyz019.$_/~=<"


def assert_spec_or_one_line_error(load) -> None:
    try:
        result = load()
    except SpecError as exc:
        assert exc.problems and all(p and "\n" not in p for p in exc.problems), exc.problems
        assert "\n" not in str(exc)
        return
    assert isinstance(result, CleanRoomSpec)


def load_bytes(folder: Path, content: bytes) -> CleanRoomSpec:
    spec = folder / "spec.yaml"
    spec.write_bytes(content)
    return load_spec(spec, variables=LOCAL)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("property")


@BOUNDED
@given(st.binary(max_size=400))
def test_arbitrary_bytes(folder, content):
    assert_spec_or_one_line_error(lambda: load_bytes(folder, content))


@BOUNDED
@given(st.text(alphabet=YAML_ALPHABET, max_size=300))
def test_yaml_ish_text(folder, text):
    assert_spec_or_one_line_error(lambda: load_bytes(folder, text.encode("utf-8", "surrogatepass")))


@BOUNDED
@given(trees)
def test_arbitrary_trees(data):
    assert_spec_or_one_line_error(lambda: parse_spec(data, variables=LOCAL))


def _paths(value: Any, path: tuple = ()) -> list[tuple]:
    found = [path]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*path, index))
    return found


VALID_PATHS = _paths(VALID)


@BOUNDED
@given(st.sampled_from(VALID_PATHS), trees)
def test_a_valid_spec_with_one_subtree_replaced(path, subtree):
    data = copy.deepcopy(VALID)
    if not path:
        data = subtree
    else:
        target = data
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = subtree
    assert_spec_or_one_line_error(lambda: parse_spec(data, variables=LOCAL))


@BOUNDED
@given(st.sampled_from(VALID_PATHS), trees)
def test_the_same_as_yaml_text(folder, path, subtree):
    """The replaced spec written as YAML (with aliases where PyYAML makes them) and loaded from the file."""
    data = copy.deepcopy(VALID)
    target = data
    for step in path[:-1]:
        target = target[step]
    if path:
        target[path[-1]] = subtree
    text = yaml.safe_dump(data, allow_unicode=True)
    assert_spec_or_one_line_error(lambda: load_bytes(folder, text.encode("utf-8", "surrogatepass")))


def test_the_valid_spec_is_valid():
    """The positive control: the base of the replacements loads."""
    assert parse_spec(copy.deepcopy(VALID), variables=LOCAL).name == "cleanroomhello-job"
