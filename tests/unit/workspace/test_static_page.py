"""The workspace page as files: it runs as the browser loads it (no bundler), from the workspace alone (no
CDN), and never turns data into markup (the browser test attacks that; this keeps the easy ways out)."""

from __future__ import annotations

import re
from pathlib import Path

STATIC = Path(__file__).resolve().parents[3] / "sidecars" / "workspace" / "static"
SCRIPTS = sorted(STATIC.rglob("*.js"))
IMPORT = re.compile(r"""^\s*(?:import|export)\b[^;'"]*?from\s+["']([^"']+)["']""", re.MULTILINE)
#: any URL with a scheme or protocol-relative: the page may load nothing but its own files
EXTERNAL = re.compile(r"""(?:src|href|url\(|from\s|import\s)\s*=?\s*["']?(?:[a-z]+:)?//""", re.IGNORECASE)
#: the ways a string becomes markup in a page
MARKUP_SINKS = ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "createContextualFragment",
                "DOMParser", "eval(", "new Function")


def test_every_module_import_is_a_file_of_the_page():
    assert SCRIPTS, "no scripts under static/"
    for script in SCRIPTS:
        for specifier in IMPORT.findall(script.read_text()):
            # a bare specifier ("lit", "react") needs a bundler or an import map: the browser cannot load it
            assert specifier.startswith(("./", "../")), f"{script.name} imports {specifier!r}"
            assert (script.parent / specifier).resolve().is_file(), f"{script.name}: {specifier} does not exist"


def test_the_page_loads_nothing_from_outside_the_workspace():
    for path in [STATIC / "index.html", *SCRIPTS, *STATIC.rglob("*.css")]:
        assert not EXTERNAL.search(path.read_text()), f"{path.relative_to(STATIC)} refers outside the workspace"
    html = (STATIC / "index.html").read_text()
    assert "default-src 'none'" in html and "script-src 'self'" in html


def test_no_script_turns_a_string_into_markup():
    for script in SCRIPTS:
        text = script.read_text()
        for sink in MARKUP_SINKS:
            assert sink not in text, f"{script.relative_to(STATIC)} uses {sink}"


def test_the_checks_above_catch_what_they_look_for():
    assert EXTERNAL.search('<script src="https://cdn.example/x.js">')
    assert EXTERNAL.search("import { html } from '//esm.sh/lit';")
    assert IMPORT.findall('import { html } from "lit";') == ["lit"]
    assert not EXTERNAL.search('<script type="module" src="js/main.js">')
