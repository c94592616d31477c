"""Strict loading into official SDK models: every key must be a property the model defines.

The SDKs' own deserializers silently ignore unknown keys (a misspelled `volumeMount` would just vanish),
so this walks the models' attribute maps and fails on any key they do not define, naming its path."""

from __future__ import annotations

import enum
import re
from typing import Any


class UnknownProperty(AssertionError):
    pass


def _split_key(key: str) -> list[str]:
    return [part.replace("\\.", ".") for part in re.split(r"(?<!\\)\.", key)]


def check_msrest(models: Any, model: type, data: Any, path: str = "$") -> None:
    """azure-mgmt-* models: `_attribute_map` = {attr: {key: 'properties.x', type: 'T'}}."""
    if not isinstance(data, dict):
        raise UnknownProperty(f"{path}: expected an object for {model.__name__}")
    tree: dict[str, Any] = {}
    for spec in model._attribute_map.values():
        node = tree
        parts = _split_key(spec["key"])
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = spec["type"]
    _walk_msrest(models, tree, data, path)


def _walk_msrest(models: Any, tree: dict, data: dict, path: str) -> None:
    for key, value in data.items():
        if key not in tree:
            raise UnknownProperty(f"{path}.{key}: unknown property (known: {', '.join(sorted(tree))})")
        expected = tree[key]
        if isinstance(expected, dict):
            _walk_msrest(models, expected, value, f"{path}.{key}")
        else:
            _check_msrest_type(models, expected, value, f"{path}.{key}")


def _check_msrest_type(models: Any, type_name: str, value: Any, path: str) -> None:
    if type_name.startswith("[") and type_name.endswith("]"):
        for i, item in enumerate(value):
            _check_msrest_type(models, type_name[1:-1], item, f"{path}[{i}]")
        return
    if type_name.startswith("{") and type_name.endswith("}"):
        for k, item in value.items():
            _check_msrest_type(models, type_name[1:-1], item, f"{path}.{k}")
        return
    cls = getattr(models, type_name, None)
    if cls is None:
        return  # a primitive (str, int, bool, float, object)
    if isinstance(cls, type) and issubclass(cls, enum.Enum):
        if value not in {m.value for m in cls}:
            raise UnknownProperty(f"{path}: {value!r} is not a {type_name}")
        return
    check_msrest(models, cls, value, path)


def check_openapi(client_module: Any, type_name: str, data: Any, path: str = "$") -> None:
    """kubernetes client models: `openapi_types` = {attr: 'T'}, `attribute_map` = {attr: jsonKey}."""
    if type_name.lower().startswith("list[") and type_name.endswith("]"):
        for i, item in enumerate(data):
            check_openapi(client_module, type_name[5:-1], item, f"{path}[{i}]")
        return
    if type_name.lower().startswith("dict"):
        return
    cls = getattr(client_module, type_name, None)
    if cls is None:
        return
    if not isinstance(data, dict):
        raise UnknownProperty(f"{path}: expected an object for {type_name}")
    by_json = {json_key: attr for attr, json_key in cls.attribute_map.items()}
    for key, value in data.items():
        if key not in by_json:
            raise UnknownProperty(f"{path}.{key}: unknown property of {type_name}")
        check_openapi(client_module, cls.openapi_types[by_json[key]], value, f"{path}.{key}")
