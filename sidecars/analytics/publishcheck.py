"""A dataset's files checked against its document before they are published (`ccr analytics dataset publish
--data`), so an owner learns of a wrong column at home, not from a refused run in the room.

What is checked without the engine: a CSV file's header (the schema's names, same order, ignoring case,
as the engine reads it), and a JSON-lines file's first records (objects whose keys are schema columns).
A Parquet file is only checked to be Parquet (its magic bytes): reading its footer schema needs pyarrow,
which ccr does not install, so its columns are checked by the engine at run time (before anything is written).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from .datafiles import SchemaMismatch
from .documents import Dataset

#: a header line longer than this is not a header of at most 512 plain column names
MAX_HEADER_BYTES = 64 * 1024
#: JSON-lines records looked at per file
JSON_RECORDS_CHECKED = 100
PARQUET_MAGIC = b"PAR1"


def check_files(dataset: Dataset, files: list[Path], root: Path) -> None:
    """Each file of the dataset (under `root`) against its schema; the first mismatch as one line."""
    if not files:
        raise SchemaMismatch(f"dataset {dataset.name!r}: {root} has no files")
    check = {"csv": _check_csv, "json": _check_json, "parquet": _check_parquet}[dataset.format]
    for path in files:
        problem = check(dataset, path)
        if problem:
            raise SchemaMismatch(f"dataset {dataset.name!r}: {path.relative_to(root).as_posix()}: {problem}")


def _first_line(path: Path) -> bytes:
    with path.open("rb") as file:
        line = file.readline(MAX_HEADER_BYTES + 1)
    return line


def _check_csv(dataset: Dataset, path: Path) -> str | None:
    line = _first_line(path)
    if len(line) > MAX_HEADER_BYTES:
        return f"the header line is longer than {MAX_HEADER_BYTES} bytes"
    try:
        header = next(csv.reader(io.StringIO(line.decode("utf-8-sig"))), [])
    except (UnicodeDecodeError, csv.Error) as exc:
        return f"the header line is not CSV text ({exc})"
    expected = [column.name for column in dataset.schema]
    for index, name in enumerate(expected):
        if index >= len(header):
            return f"column {name!r} (number {index + 1}) is missing from the header"
        if header[index].lower() != name.lower():
            return f"column {index + 1} of the header is {header[index][:64]!r}, the schema's is {name!r}"
    if len(header) > len(expected):
        return f"the header has column {header[len(expected)][:64]!r}, which the schema does not"
    return None


def _check_json(dataset: Dataset, path: Path) -> str | None:
    known = {column.name.lower() for column in dataset.schema}
    with path.open("rb") as file:
        for number in range(1, JSON_RECORDS_CHECKED + 1):
            line = file.readline(MAX_HEADER_BYTES + 1)
            if not line:
                return None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                return f"line {number} is not a JSON object (JSON lines: one object per line)"
            if not isinstance(record, dict):
                return f"line {number} is not a JSON object (JSON lines: one object per line)"
            unknown = [key for key in record if key.lower() not in known]
            if unknown:
                return f"line {number} has field {unknown[0][:64]!r}, which is not a column of the schema"
    return None


def _check_parquet(_dataset: Dataset, path: Path) -> str | None:
    with path.open("rb") as file:
        head = file.read(4)
        file.seek(0, io.SEEK_END)
        if file.tell() < 12:
            return "is not a Parquet file (too short)"
        file.seek(-4, io.SEEK_END)
        tail = file.read(4)
    if head != PARQUET_MAGIC or tail != PARQUET_MAGIC:
        return "is not a Parquet file (no PAR1 magic)"
    return None
