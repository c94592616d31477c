"""Reading what a party hands the others: a spec, its policy files, an endpoints file, an Azure contract.

Any of it may be hostile, and every command that reads it (validate, explain, render, governance setup,
room up, each sidecar at start) must answer with one line naming the problem, in bounded time and memory:

- a document is at most `max_bytes` of strict UTF-8 (a spec fits CCR_SPEC, 128 KiB of JSON, so 1 MiB of
  YAML leaves room for comments while refusing what could only be an attack);
- YAML aliases share nodes, so a few hundred bytes can stand for 10^9 nodes ("billion laughs") once a
  consumer walks the tree (`${var}` substitution copies it; pydantic validates each copy): the tree is
  measured *after* expansion, by nodes and by scalar characters, before anything walks it;
- nesting is bounded (`max_depth`), which also keeps PyYAML's recursive composer, json's decoder and our
  own walks far from Python's recursion limit, and an alias refering to a node that contains it
  (a cycle, which would expand forever) is refused;
- a file a document names (an endpoint's policy) resolves inside the document's own folder, symlinks
  included, and is a regular file of bounded size, so a spec cannot inline /etc/shadow or block on a FIFO.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

MIB = 1024 * 1024


class UntrustedInputError(ValueError):
    """A document or a file it names is refused; the message is one line naming why."""


@dataclass(frozen=True)
class DocumentLimits:
    max_bytes: int = MIB
    #: mappings and sequences inside each other; a spec needs about 8
    max_depth: int = 64
    #: nodes after alias expansion: a resolved spec fits 128 KiB of JSON, 2 bytes a node at the least
    max_nodes: int = 65536
    #: scalar characters after alias expansion
    max_chars: int = MIB
    max_aliases: int = 1024


SPEC_LIMITS = DocumentLimits()


def decode_utf8(data: bytes, limits: DocumentLimits = SPEC_LIMITS) -> str:
    if len(data) > limits.max_bytes:
        raise UntrustedInputError(f"is {len(data)} bytes, over the limit of {limits.max_bytes}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise UntrustedInputError(f"is not UTF-8 text (byte {exc.start}, line {line})") from None


def read_bounded(path: Path, limits: DocumentLimits = SPEC_LIMITS) -> str:
    """A whole file as UTF-8 text, refused (without reading it all) when it is over the limit or not a regular
    file. OSError (cannot open) is left to the caller, which knows what the file is."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as file:
        return decode_utf8(_read_regular(file, limits.max_bytes), limits)


def _read_regular(file: Any, max_bytes: int) -> bytes:
    mode = os.fstat(file.fileno()).st_mode
    if not stat.S_ISREG(mode):
        raise UntrustedInputError("is not a regular file")
    data = file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UntrustedInputError(f"is over the limit of {max_bytes} bytes")
    return data


# --- YAML ----------------------------------------------------------------------------------------------

class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with nesting depth and alias count bounded as the document is composed."""

    def __init__(self, stream: str, limits: DocumentLimits):
        super().__init__(stream)
        self.limits = limits
        self.depth = 0
        self.aliases = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > self.limits.max_aliases:
                raise UntrustedInputError(f"uses more than {self.limits.max_aliases} aliases{self._where()}")
            return super().compose_node(parent, index)
        self.depth += 1
        try:
            if self.depth > self.limits.max_depth:
                raise UntrustedInputError(f"is nested deeper than {self.limits.max_depth} levels{self._where()}")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def _where(self) -> str:
        mark = self.peek_event().start_mark
        return f" at line {mark.line + 1}" if mark else ""


def _children(node: yaml.Node) -> Iterator[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        yield from node.value
    elif isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield key
            yield value


def _check_expanded(root: yaml.Node, limits: DocumentLimits) -> None:
    """The tree's size once every alias is expanded, computed once per node (aliases share node objects)."""
    sizes: dict[int, tuple[int, int, int]] = {}  # id(node) → (nodes, characters, depth), expanded
    on_path: set[int] = set()

    def measure(node: yaml.Node, depth: int) -> tuple[int, int, int]:
        known = sizes.get(id(node))
        if known is not None:
            if depth + known[2] - 1 > limits.max_depth:  # measured before, from a shallower place
                raise UntrustedInputError(f"is nested deeper than {limits.max_depth} levels once its aliases are "
                                          "expanded")
            return known
        if id(node) in on_path:
            raise UntrustedInputError(f"has an alias inside the node it refers to (line {node.start_mark.line + 1}): "
                                      "it would expand forever")
        if depth > limits.max_depth:
            raise UntrustedInputError(f"is nested deeper than {limits.max_depth} levels once its aliases are "
                                      "expanded")
        on_path.add(id(node))
        nodes, chars, deepest = 1, len(node.value) if isinstance(node, yaml.ScalarNode) else 0, 0
        for child in _children(node):
            child_nodes, child_chars, child_depth = measure(child, depth + 1)
            nodes, chars, deepest = nodes + child_nodes, chars + child_chars, max(deepest, child_depth)
            if nodes > limits.max_nodes:
                raise UntrustedInputError(f"expands to more than {limits.max_nodes} nodes (through its aliases)")
            if chars > limits.max_chars:
                raise UntrustedInputError(f"expands to more than {limits.max_chars} characters (through its "
                                          "aliases)")
        on_path.discard(id(node))
        sizes[id(node)] = (nodes, chars, deepest + 1)
        return sizes[id(node)]

    measure(root, 1)


def load_yaml(text: str, limits: DocumentLimits = SPEC_LIMITS) -> Any:
    """One YAML document, bounded (see the module's docstring). Raises UntrustedInputError for a limit and
    for malformed YAML."""
    if len(text.encode("utf-8", "surrogatepass")) > limits.max_bytes:
        raise UntrustedInputError(f"is over the limit of {limits.max_bytes} bytes")
    loader: _BoundedLoader | None = None
    try:
        loader = _BoundedLoader(text, limits)  # refuses control characters YAML does not allow
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expanded(node, limits)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or str(exc)
        raise UntrustedInputError(f"is not valid YAML{where}: {_one_line(problem)}") from None
    except (ValueError, OverflowError) as exc:
        if isinstance(exc, UntrustedInputError):
            raise
        # PyYAML's constructors: an impossible date (2001-13-45), an integer of more than 4300 digits.
        raise UntrustedInputError(f"is not valid YAML: a value cannot be read: {_one_line(str(exc))}") from None
    finally:
        if loader is not None:
            loader.dispose()


# --- JSON and parsed trees ---------------------------------------------------------------------------------

def load_json(text: str, limits: DocumentLimits = SPEC_LIMITS) -> Any:
    if len(text.encode("utf-8", "surrogatepass")) > limits.max_bytes:
        raise UntrustedInputError(f"is over the limit of {limits.max_bytes} bytes")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UntrustedInputError(f"is not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    except RecursionError:
        raise UntrustedInputError(f"is nested deeper than {limits.max_depth} levels") from None
    except ValueError as exc:  # an integer of more than 4300 digits
        raise UntrustedInputError(f"is not JSON: {_one_line(str(exc))}") from None
    check_tree(data, limits)
    return data


def check_tree(data: Any, limits: DocumentLimits = SPEC_LIMITS) -> None:
    """Bounds on an already-parsed tree of dicts and lists (JSON, YAML, or built by code): depth, node
    count, and no container inside itself. Iterative, so it cannot itself run out of stack."""
    stack: list[tuple[Any, int, frozenset[int]]] = [(data, 1, frozenset())]
    nodes = 0
    while stack:
        value, depth, ancestors = stack.pop()
        nodes += 1
        if nodes > limits.max_nodes:
            raise UntrustedInputError(f"has more than {limits.max_nodes} nodes")
        if not isinstance(value, dict | list):
            continue
        if depth > limits.max_depth:
            raise UntrustedInputError(f"is nested deeper than {limits.max_depth} levels")
        if id(value) in ancestors:
            raise UntrustedInputError("contains itself")
        inside = ancestors | {id(value)}
        items = [*value.keys(), *value.values()] if isinstance(value, dict) else value
        stack.extend((item, depth + 1, inside) for item in items)


# --- files a document names --------------------------------------------------------------------------------

def contained_path_problem(name: str) -> str | None:
    """Why `name` cannot be a file beside the document (None when it can): it must be a plain relative path,
    normalised, without '..'. Checked on the text, before any file is touched."""
    if not name or "\x00" in name:
        return "is empty or holds a NUL"
    path = PurePosixPath(name)
    if path.is_absolute():
        return "must be a path relative to the spec's folder, not an absolute one"
    if ".." in path.parts:
        return "must not climb out of the spec's folder with '..'"
    if str(path) != name or "\\" in name:
        return f"must be written normalised ({str(path)!r}), with '/' between folders"
    return None


def read_contained(folder: Path, name: str, max_bytes: int) -> str:
    """The UTF-8 text of `folder/name`, which must stay inside `folder` once every symlink is resolved, be a
    regular file and hold at most `max_bytes`. Raises UntrustedInputError (refused) or OSError (unreadable)."""
    problem = contained_path_problem(name)
    if problem:
        raise UntrustedInputError(problem)
    root = folder.resolve(strict=True)
    try:
        target = (root / name).resolve(strict=True)
    except RuntimeError:  # a symlink loop
        raise UntrustedInputError("is a symlink loop") from None
    if not target.is_relative_to(root):
        raise UntrustedInputError(f"resolves to {target}, outside the spec's folder {root} (a symlink out)")
    fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as file:
        # A folder on the way may have been swapped for a symlink since `resolve`: what is open counts.
        opened = _opened_path(fd)
        if opened is not None and not opened.is_relative_to(root):
            raise UntrustedInputError(f"resolves to {opened}, outside the spec's folder {root} (a symlink out)")
        return decode_utf8(_read_regular(file, max_bytes), DocumentLimits(max_bytes=max_bytes))


def _opened_path(fd: int) -> Path | None:
    try:
        return Path(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):  # no /proc: the resolved path was checked already
            return None
        raise


def _one_line(text: str) -> str:
    return " ".join(text.split())
