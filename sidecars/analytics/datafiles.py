"""A dataset's files under its root (a decrypted mount in the room), listed and checked before Spark reads
them; and, for `ccr analytics dataset publish --data`, checked at the owner's before upload (`check_files`).

The listing never follows a link: a symbolic link anywhere under the root (to a file or a folder, inside
or outside the root) is refused, as is anything that is not a regular file or a folder (a FIFO would block
the header check; a device is not data). Names starting with `.` or `_` are skipped, as Spark and Hadoop
skip them (`_SUCCESS`, `.crc`, `_temporary`).

Date-range folders: a file with a folder named `YYYY-MM-DD` anywhere in its relative path is read only
when every such date is inside the run's range (either end may be open); other files are always read. A
name that looks like a date but is not one (`2024-13-40`) is an ordinary folder.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from ..common.errors import BadRequest
from .documents import Dataset

MAX_FILES = 100_000
MAX_DEPTH = 32
#: a header line longer than this is not a header of ≤ 512 plain column names
MAX_HEADER_BYTES = 64 * 1024
_DATE_FOLDER = re.compile(r"\d{4}-\d{2}-\d{2}")
#: characters Hadoop's path globbing gives a meaning; escaped so that a file name is read as itself
_GLOB_CHARS = re.compile(r"([\\{}\[\]*?])")

DateRange = tuple[date | None, date | None]


class SchemaMismatch(BadRequest):
    """A dataset's files do not match its document's schema; the message names dataset, file and column."""

    code = "SchemaMismatch"


class UnsafeDatasetFile(BadRequest):
    """A dataset's root holds something the engine will not read (a link, a device, an unreadable name)."""

    code = "UnsafeDatasetFile"


@dataclass(frozen=True)
class DataFile:
    path: Path
    #: relative to the dataset's root, for messages (never the room's mount layout)
    relative: str


def printable(text: str) -> str:
    """A name as it may be shown in a one-line message: file names may hold line breaks or escapes."""
    return "".join(char if char.isprintable() else "?" for char in text)[:200]


def list_files(dataset: Dataset, root: Path, date_range: DateRange = (None, None)) -> list[DataFile]:
    """The dataset's files under `root` in the date range, sorted by relative path."""
    if not root.is_dir():
        raise BadRequest(f"dataset {dataset.name!r}: its files are not mounted (no folder for store "
                         f"{dataset.store!r})", code="DatasetNotMounted")
    found: list[DataFile] = []
    for path, relative in _walk(dataset, root):
        if _in_range(relative, date_range):
            found.append(DataFile(path, relative))
            if len(found) > MAX_FILES:
                raise UnsafeDatasetFile(f"dataset {dataset.name!r} has more than {MAX_FILES} files")
    return sorted(found, key=lambda f: f.relative)


def _walk(dataset: Dataset, root: Path) -> Iterator[tuple[Path, str]]:
    pending: list[tuple[Path, str, int]] = [(root, "", 0)]
    while pending:
        folder, prefix, depth = pending.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.startswith((".", "_")):
                    continue
                relative = f"{prefix}{entry.name}"
                shown = printable(relative)
                mode = entry.stat(follow_symlinks=False).st_mode
                if stat.S_ISLNK(mode):
                    raise UnsafeDatasetFile(f"dataset {dataset.name!r}: {shown} is a symbolic link; links are "
                                            "not followed (a dataset's files are its own, under its root)")
                if ":" in entry.name:
                    # Hadoop's Path cannot hold a colon in a name (it reads as a URI scheme)
                    raise UnsafeDatasetFile(f"dataset {dataset.name!r}: {shown}: a ':' in a file name cannot be "
                                            "read by Spark; rename it")
                if stat.S_ISDIR(mode):
                    if depth + 1 > MAX_DEPTH:
                        raise UnsafeDatasetFile(f"dataset {dataset.name!r}: {shown} is nested deeper than "
                                                f"{MAX_DEPTH} folders")
                    pending.append((Path(entry.path), relative + "/", depth + 1))
                elif stat.S_ISREG(mode):
                    yield Path(entry.path), relative
                else:
                    raise UnsafeDatasetFile(f"dataset {dataset.name!r}: {shown} is not a regular file")


def _in_range(relative: str, date_range: DateRange) -> bool:
    start, end = date_range
    for folder in relative.split("/")[:-1]:
        if not _DATE_FOLDER.fullmatch(folder):
            continue
        try:
            day = date.fromisoformat(folder)
        except ValueError:
            continue
        if (start and day < start) or (end and day > end):
            return False
    return True


def spark_path(path: Path) -> str:
    """The path as Spark's reader takes it literally (glob characters escaped)."""
    return _GLOB_CHARS.sub(r"\\\1", str(path))


def check_csv_header(dataset: Dataset, data_file: DataFile) -> None:
    """The file's first line must name the schema's columns, in order, ignoring case."""
    where = f"dataset {dataset.name!r}, file {printable(data_file.relative)}"
    with open(data_file.path, "rb") as stream:
        head = stream.readline(MAX_HEADER_BYTES + 1)
    if len(head) > MAX_HEADER_BYTES:
        raise SchemaMismatch(f"{where}: the header line is longer than {MAX_HEADER_BYTES} bytes")
    try:
        line = head.decode("utf-8").removeprefix("\ufeff")
        names = next(csv.reader(io.StringIO(line)), [])
    except (UnicodeDecodeError, csv.Error):
        raise SchemaMismatch(f"{where}: the header line is not UTF-8 CSV") from None
    if not names:
        raise SchemaMismatch(f"{where}: no header line (the first line must name the columns)")
    expected = [column.name for column in dataset.schema]
    for index, column in enumerate(expected):
        got = names[index].strip() if index < len(names) else None
        if got is None:
            raise SchemaMismatch(f"{where}: the header has no column {column!r} (column {index + 1} of the "
                                 "schema)")
        if got.lower() != column.lower():
            raise SchemaMismatch(f"{where}: header column {index + 1} is {printable(got)[:64]!r}, the schema "
                                 f"says {column!r}")
    if len(names) > len(expected):
        raise SchemaMismatch(f"{where}: header column {len(expected) + 1} "
                             f"{printable(names[len(expected)])[:64]!r} is not in the schema")


# --- publish-side checks (`ccr analytics dataset publish --data`): an owner learns of a wrong column at home,
# not from a refused run in the room. A CSV header (the schema's names, same order, ignoring case), a
# JSON-lines file's first records (keys are schema columns), a Parquet file's magic bytes only (its footer
# schema needs pyarrow, which ccr does not install: the engine checks its columns at run time).
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
