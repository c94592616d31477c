"""`ccr analytics`: the help explains the approval rule and the flow; run, runs and serve take exactly the
arguments the design fixes; `dataset publish --data` checks the files against the schema before anything is
uploaded or proposed (one line naming file and column, exit 1)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sidecars.analytics.datafiles import SchemaMismatch, check_files
from sidecars.analytics.documents import parse_dataset
from sidecars.cli import build_parser, main
from sidecars.cliargs import parser_at


def options(*words: str) -> dict[str, tuple]:
    command = parser_at(build_parser(), words)
    assert command is not None
    return {(a.option_strings[0] if a.option_strings else a.dest): (a.required, a.default)
            for a in command._actions if a.dest != "help"}


def test_the_help_explains_the_approval_rule_and_the_flow():
    text = parser_at(build_parser(), ["analytics"]).format_help()
    for words in ("owners of the data decide", "other members' votes are recorded but neither accept nor veto",
                  "dataset publish", "query propose", "query vote", "ccr analytics run", "revoke"):
        assert words in text, words


def test_run_runs_and_serve_take_the_designed_arguments():
    assert options("analytics", "run") == {
        "query": (True, None), "--run-id": (False, None), "--dry-run": (False, False),
        "--start-date": (False, None), "--end-date": (False, None), "--wait": (False, False),
        "--timeout": (False, 600.0), "--url": (True, None), "--contract-ca": (True, None),
        "--identity": (True, None)}
    assert options("analytics", "runs") == {"--query": (False, None), "--run": (False, None), "--url": (True, None),
                                            "--contract-ca": (True, None), "--identity": (True, None)}
    assert options("analytics", "serve") == {
        "--port": (False, 8080), "--host": (False, "0.0.0.0"), "--mount-root": (False, Path("/mnt/remote")),
        "--scratch": (False, Path("/tmp/ccr-analytics")), "--governance-url": (False, None)}
    handlers = {words: parser_at(build_parser(), ["analytics", *words]).get_default("handler")
                for words in (("run",), ("runs",), ("serve",))}
    assert handlers == {("run",): "sidecars.analytics.runcommands:cmd_run",
                        ("runs",): "sidecars.analytics.runcommands:cmd_runs",
                        ("serve",): "sidecars.analytics.service:cmd_serve"}


def sales(data_format: str = "csv") -> str:
    return json.dumps({"name": "sales", "owner": "northwind", "store": "nw-store", "container": "nw-data",
                       "format": data_format,
                       "schema": [{"name": "id", "type": "int"}, {"name": "region", "type": "string"},
                                  {"name": "amount", "type": "double"}],
                       "allowedFields": ["region", "amount"], "accessMode": "aggregate",
                       "encryption": {"mode": "CSE", "dekSecret": "nw-dek", "kekName": "nw-kek"}})


def files(root: Path, contents: dict[str, bytes]) -> list[Path]:
    for name, content in contents.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    return sorted(root / name for name in contents)


@pytest.mark.parametrize("content, problem", [
    (b"id,region\n1,eu\n", "column 'amount' (number 3) is missing"),
    (b"id,amount,region\n", "column 2 of the header is 'amount', the schema's is 'region'"),
    (b"id,region,amount,email\n", "the header has column 'email', which the schema does not"),
    (b"\xff\xfe\n", "the header line is not CSV text"),
    (b"", "column 'id' (number 1) is missing"),
])
def test_a_csv_file_whose_header_is_not_the_schema_is_named_with_its_column(tmp_path, content, problem):
    paths = files(tmp_path, {"2024-01-01/good.csv": b"ID,Region,Amount\n1,eu,2.5\n", "2024-01-02/bad.csv": content})
    with pytest.raises(SchemaMismatch) as caught:
        check_files(parse_dataset(sales()), paths, tmp_path)
    assert caught.value.message == f"dataset 'sales': 2024-01-02/bad.csv: {caught.value.message.split(': ', 2)[2]}"
    assert problem in caught.value.message and "\n" not in caught.value.message


def test_files_matching_the_schema_pass(tmp_path):
    check_files(parse_dataset(sales()), files(tmp_path, {"a.csv": b"id,region,amount\n", "b/c.csv": b"\xef\xbb\xbfid,"
                                                         b"region,amount\r\n1,eu,3\n"}), tmp_path)
    check_files(parse_dataset(sales("json")), files(tmp_path, {"x.json": b'{"id": 1, "REGION": "eu"}\n\n'}), tmp_path)
    parquet = b"PAR1" + b"\0" * 16 + b"PAR1"
    check_files(parse_dataset(sales("parquet")), files(tmp_path, {"p.parquet": parquet}), tmp_path)


@pytest.mark.parametrize("data_format, content, problem", [
    ("json", b'{"id": 1, "ssn": "x"}\n', "line 1 has field 'ssn', which is not a column of the schema"),
    ("json", b"[1, 2]\n", "line 1 is not a JSON object"),
    ("parquet", b"id,region,amount\n" * 3, "is not a Parquet file (no PAR1 magic)"),
])
def test_json_and_parquet_files_are_checked_as_far_as_ccr_can(tmp_path, data_format, content, problem):
    with pytest.raises(SchemaMismatch, match=re.escape(problem)):
        check_files(parse_dataset(sales(data_format)), files(tmp_path, {"f": content}), tmp_path)


def test_an_empty_data_directory_is_refused(tmp_path):
    with pytest.raises(SchemaMismatch, match="has no files"):
        check_files(parse_dataset(sales()), [], tmp_path)


def test_publish_refuses_mismatching_files_in_one_line_before_storage_or_cgs(tmp_path, capsys):
    (tmp_path / "sales.json").write_text(sales())
    files(tmp_path / "data", {"part-1.csv": b"id,region,amount\n", "part-2.csv": b"id,region,amt\n"})
    # neither the spec nor CGS exists: a mismatch must be found before either is needed
    code = main(["analytics", "dataset", "publish", str(tmp_path / "sales.json"), "--data", str(tmp_path / "data"),
                 "--spec", str(tmp_path / "absent.yaml"), "--contract", "c", "--cgs", "https://127.0.0.1:9",
                 "--identity", str(tmp_path / "nobody")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert "part-2.csv: column 3 of the header is 'amt', the schema's is 'amount'" in err


def test_publish_with_data_needs_a_spec(tmp_path, capsys):
    (tmp_path / "sales.json").write_text(sales())
    files(tmp_path / "data", {"part-1.csv": b"id,region,amount\n"})
    code = main(["analytics", "dataset", "publish", str(tmp_path / "sales.json"), "--data", str(tmp_path / "data"),
                 "--contract", "c"])
    err = capsys.readouterr().err
    assert code == 1 and "--data needs --spec SPEC" in err and err.count("\n") == 1
