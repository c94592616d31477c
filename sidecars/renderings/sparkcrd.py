"""Validation of a rendered `SparkApplication` against the Kubeflow Spark Operator's CRD (vendored in crds/).

The API server checks a custom resource against the CRD's openAPIV3Schema and, with strict field
validation (`kubectl apply --validate=strict`, the default since kubectl 1.27), refuses a field the schema
does not declare. A structural schema says so by omission: an object schema with `properties` and neither
`additionalProperties` nor `x-kubernetes-preserve-unknown-fields` holds only those properties; `strict()`
writes that out as `additionalProperties: false`.

The check itself is a small structural validator of the keywords the CRD uses (type, required, enum,
properties, additionalProperties, items, anyOf, pattern, minimum/maximum, nullable): `jsonschema` is only a
development dependency, and the command must check what it writes wherever ccr is installed. The tests hold
it to `jsonschema`'s verdict on the same strict schema. `format` (int32, int64, date-time) is not checked.

A role's `template` (a pod template) is an open object in the CRD: it is checked against a schema made of
the CRD's own schemas of what a template of ours holds (containers as the sidecars' Container schema, init
containers, volumes, node selector, tolerations; and two booleans, service links and the service account
token), strictly, since the pod is what the template says.
"""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path
from typing import Any

import yaml

from ..common.errors import ConfigError

CRD_FILE = Path(__file__).parent / "crds" / "sparkoperator.k8s.io_sparkapplications.yaml"
API_VERSION = "sparkoperator.k8s.io/v1beta2"
KIND = "SparkApplication"
#: problems listed in one error line at most (the rest are counted)
MAX_PROBLEMS = 5
_PRESERVE = "x-kubernetes-preserve-unknown-fields"


def strict(schema: Any) -> Any:
    """The schema with every closed object (see the module's docstring) marked `additionalProperties: false`."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: strict(value) for key, value in schema.items()}
    if "properties" in schema and "additionalProperties" not in schema and not schema.get(_PRESERVE):
        out["additionalProperties"] = False
    return out


@functools.cache
def crd_schema() -> dict[str, Any]:
    """The served version's openAPIV3Schema, made strict."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the file is 0.8 MB: libyaml reads it 10x faster
    crd = yaml.load(CRD_FILE.read_text(), Loader=loader)
    group, version = API_VERSION.split("/")
    if crd["spec"]["group"] != group or crd["spec"]["names"]["kind"] != KIND:
        raise ConfigError(f"{CRD_FILE.name} is not the {KIND} CRD of {group}")
    served = next(v for v in crd["spec"]["versions"] if v["name"] == version)
    return strict(copy.deepcopy(served["schema"]["openAPIV3Schema"]))


_TYPES: dict[str, tuple[type, ...]] = {"object": (dict,), "array": (list,), "string": (str,), "boolean": (bool,),
                                       "integer": (int,), "number": (int, float)}


def _is(value: Any, kind: str) -> bool:
    # bool is an int in Python, never in JSON
    return isinstance(value, _TYPES[kind]) and not (kind in ("integer", "number") and isinstance(value, bool))


def _check(schema: dict[str, Any], value: Any, path: str, problems: list[str]) -> None:
    if value is None and schema.get("nullable"):
        return
    if "anyOf" in schema and all(_problems(option, value) for option in schema["anyOf"]):
        problems.append(f"{path}: {_short(value)} matches none of {len(schema['anyOf'])} allowed forms")
        return
    kind = schema.get("type")
    if kind and not _is(value, kind):
        problems.append(f"{path}: {_short(value)} is not of type {kind!r}")
        return
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{path}: {_short(value)} is not one of {schema['enum']}")
    if isinstance(value, str) and "pattern" in schema and not re.search(schema["pattern"], value):
        problems.append(f"{path}: {_short(value)} does not match {schema['pattern']!r}")
    if _is(value, "number"):
        if "minimum" in schema and value < schema["minimum"]:
            problems.append(f"{path}: {value} is less than the minimum of {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            problems.append(f"{path}: {value} is greater than the maximum of {schema['maximum']}")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            _check(schema["items"], item, f"{path}.{i}", problems)
    if isinstance(value, dict):
        _check_object(schema, value, path, problems)


def _check_object(schema: dict[str, Any], value: dict[str, Any], path: str, problems: list[str]) -> None:
    prefix = f"{path}." if path != "(top)" else ""
    problems += [f"{path}: {name!r} is a required property" for name in schema.get("required", ())
                 if name not in value]
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        if key in properties:
            _check(properties[key], item, f"{prefix}{key}", problems)
        elif extra is False:
            problems.append(f"{path}: additional property {str(key)[:60]!r} is not allowed")
        elif isinstance(extra, dict):
            _check(extra, item, f"{prefix}{key}", problems)


def _problems(schema: dict[str, Any], value: Any) -> list[str]:
    found: list[str] = []
    _check(schema, value, "(top)", found)
    return found


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@functools.cache
def pod_template_schema() -> dict[str, Any]:
    """What a role's `template` may hold, each part with the CRD's schema of it."""
    spec = crd_schema()["properties"]["spec"]["properties"]
    driver = spec["driver"]["properties"]
    strings = {"type": "object", "additionalProperties": {"type": "string"}}
    return {"type": "object", "additionalProperties": False, "properties": {
        "metadata": {"type": "object", "additionalProperties": False,
                     "properties": {"labels": strings, "annotations": strings}},
        "spec": {"type": "object", "additionalProperties": False, "required": ["containers"], "properties": {
            "containers": driver["sidecars"], "initContainers": driver["initContainers"], "volumes": spec["volumes"],
            "nodeSelector": driver["nodeSelector"], "tolerations": driver["tolerations"],
            "enableServiceLinks": {"type": "boolean"}, "automountServiceAccountToken": {"type": "boolean"}}},
    }}


def schema_problems(document: Any) -> list[str]:
    """Each place the document breaks the CRD's schema, as `path: what` (empty: it validates)."""
    problems = _problems(crd_schema(), document)
    spec = document.get("spec") if isinstance(document, dict) else None
    for role in ("driver", "executor"):
        section = spec.get(role) if isinstance(spec, dict) else None
        if isinstance(section, dict) and "template" in section:
            _check(pod_template_schema(), section["template"], f"spec.{role}.template", problems)
    return problems


def check_spark_application(document: Any) -> None:
    """ConfigError naming the first problems, unless the document is a valid SparkApplication."""
    if not isinstance(document, dict) or document.get("apiVersion") != API_VERSION or document.get("kind") != KIND:
        raise ConfigError(f"not a {KIND} of {API_VERSION}")
    problems = schema_problems(document)
    if problems:
        more = len(problems) - MAX_PROBLEMS
        raise ConfigError(f"the {KIND} does not validate against the operator's CRD: "
                          + "; ".join(problems[:MAX_PROBLEMS]) + (f" (and {more} more)" if more > 0 else ""))
