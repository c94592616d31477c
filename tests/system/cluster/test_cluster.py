"""A cluster of rooms: one Spark query across a driver room and two attested executor rooms."""

from __future__ import annotations

import csv
from collections import Counter

import pytest

from tests.system.cluster.conftest import MARKER

pytestmark = [pytest.mark.root, pytest.mark.slow]

SQL = "SELECT name, COUNT(*) AS n, SUM(CAST(amount AS INT)) AS total FROM people GROUP BY name"


def expected(data) -> list[tuple[str, str, str]]:
    counts: Counter = Counter()
    totals: Counter = Counter()
    with open(data) as source:
        for row in csv.DictReader(source):
            counts[row["name"]] += 1
            totals[row["name"]] += int(row["amount"])
    return sorted((name, counts[name], totals[name]) for name in counts)


def test_the_answer_is_the_single_room_answer(room_cluster):
    answer = room_cluster.run(SQL)
    assert [tuple(row) for row in answer["rows"]] == expected(room_cluster.data)
    assert any(row[0] == MARKER for row in answer["rows"])
    published = room_cluster.sink / answer["run_id"]
    parts = sorted(published.glob("part-*.csv"))
    assert parts and (published / "_SUCCESS").exists()
    rows = [r for part in parts for r in csv.DictReader(part.open())]
    assert sorted((r["name"], int(r["n"]), int(r["total"])) for r in rows) == expected(room_cluster.data)
