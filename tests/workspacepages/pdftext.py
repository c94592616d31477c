"""The text of a PDF Chromium printed (Skia's PDF writer), for tests to read what the report says: no PDF
library or pdftotext is installed here, and Skia's output is regular — Flate-compressed content streams,
Type0 fonts with Identity-H glyph ids and a ToUnicode CMap each, text drawn with `<hex> Tj` and `[...] TJ`
after `Tm`. What this cannot read raises, rather than reading less."""

from __future__ import annotations

import re
import unicodedata
import zlib

OBJECT = re.compile(rb"(\d+) 0 obj\b(.*?)\bendobj", re.S)
STREAM = re.compile(rb"stream\r?\n(.*)\r?\nendstream", re.S)
FONT_REFS = re.compile(rb"/Font\s*<<(.*?)>>", re.S)
TEXT_OPS = re.compile(rb"/(\w+) [\d.]+ Tf|[\d.-]+ [\d.-]+ [\d.-]+ [\d.-]+ [\d.-]+ ([\d.-]+) Tm|<([0-9A-Fa-f]*)> ?Tj"
                      rb"|\[(.*?)\] ?TJ", re.S)


def _objects(data: bytes) -> dict[int, bytes]:
    return {int(m.group(1)): m.group(2) for m in OBJECT.finditer(data)}


def _stream(body: bytes) -> bytes:
    found = STREAM.search(body)
    if found is None:
        raise ValueError("not a stream object")
    raw = found.group(1)
    return zlib.decompress(raw) if b"/FlateDecode" in body.split(b"stream", 1)[0] else raw


def _cmap(text: bytes) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for block in re.findall(rb"beginbfchar(.*?)endbfchar", text, re.S):
        for code, uni in re.findall(rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
            mapping[code.decode().upper()] = bytes.fromhex(uni.decode()).decode("utf-16-be")
    for block in re.findall(rb"beginbfrange(.*?)endbfrange", text, re.S):
        for low, high, uni in re.findall(rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
            first = int(uni, 16)
            for offset, code in enumerate(range(int(low, 16), int(high, 16) + 1)):
                mapping[f"{code:04X}"] = chr(first + offset)
    return mapping


def page_count(data: bytes) -> int:
    return len(re.findall(rb"/Type /Page\b(?!s)", data))


def pdf_text(data: bytes) -> str:
    """The text of every page, a line per baseline (ligatures such as "ﬁ" read as their letters)."""
    if not data.startswith(b"%PDF-"):
        raise ValueError("not a PDF")
    objects = _objects(data)
    fonts: dict[bytes, dict[str, str]] = {}
    contents: list[int] = []
    for body in objects.values():
        if re.search(rb"/Type /Page\b(?!s)", body):
            for refs in FONT_REFS.findall(body):
                for name, number in re.findall(rb"/(\w+) (\d+) 0 R", refs):
                    font = objects[int(number)]
                    unicode_map = re.search(rb"/ToUnicode (\d+) 0 R", font)
                    if unicode_map is None:
                        raise ValueError(f"font {name.decode()} has no ToUnicode map")
                    fonts[name] = _cmap(_stream(objects[int(unicode_map.group(1))]))
            contents += [int(n) for n in re.findall(rb"/Contents (\d+) 0 R", body)]
    lines: list[str] = []
    for number in contents:
        font: dict[str, str] = {}
        baseline = None
        for op in TEXT_OPS.finditer(_stream(objects[number])):
            name, y, shown, array = op.groups()
            if name is not None:
                font = fonts[name]
            elif y is not None:
                if y != baseline:
                    lines.append("")
                baseline = y
            else:
                for hex_text in ([shown] if shown is not None else re.findall(rb"<([0-9A-Fa-f]*)>", array)):
                    code = hex_text.decode().upper()
                    lines[-1] += "".join(font[code[i:i + 4]] for i in range(0, len(code), 4))
    return unicodedata.normalize("NFKC", "\n".join(line for line in lines if line))
