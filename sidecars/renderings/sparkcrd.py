"""Validation of a rendered `SparkApplication` against the Kubeflow Spark Operator's CRD (vendored in crds/).

The API server checks a custom resource against the CRD's openAPIV3Schema and, with strict field
validation (`kubectl apply --validate=strict`, the default since kubectl 1.27), refuses a field the schema
does not declare. A structural schema says so by omission: an object schema with `properties` and neither
`additionalProperties` nor `x-kubernetes-preserve-unknown-fields` holds only those properties. The schema is
rewritten to say it explicitly (`additionalProperties: false`) and checked with `jsonschema`.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import jsonschema
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
def _validator() -> jsonschema.Draft7Validator:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the file is 0.8 MB: libyaml reads it 10x faster
    crd = yaml.load(CRD_FILE.read_text(), Loader=loader)
    group, version = API_VERSION.split("/")
    if crd["spec"]["group"] != group or crd["spec"]["names"]["kind"] != KIND:
        raise ConfigError(f"{CRD_FILE.name} is not the {KIND} CRD of {group}")
    served = next(v for v in crd["spec"]["versions"] if v["name"] == version)
    return jsonschema.Draft7Validator(strict(copy.deepcopy(served["schema"]["openAPIV3Schema"])))


def schema_problems(document: Any) -> list[str]:
    """Each place the document breaks the CRD's schema, as `path: what` (empty: it validates)."""
    errors = sorted(_validator().iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    problems = []
    for error in errors:
        path = ".".join(str(p) for p in error.absolute_path) or "(top)"
        # jsonschema's message repeats the offending value, which may be a whole container: keep the line short
        problems.append(f"{path}: {error.message[:160]}")
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
