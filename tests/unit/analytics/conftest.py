"""One warm Spark engine for every engine test: a local[2] session costs 5-10 s to start (the JVM)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def spark_engine(tmp_path_factory):
    # lazy: pyspark starts nothing on import but costs ~0.5 s; only the engine tests pay it
    from sidecars.analytics.engine import Engine

    engine = Engine(tmp_path_factory.mktemp("engine-scratch"))
    engine.start()
    yield engine
    engine.stop()
