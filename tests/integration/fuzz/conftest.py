"""The services under fuzz, built once per session (see `services`)."""

from __future__ import annotations

import pytest

from . import services
from .services import Fixtures, Service


@pytest.fixture(scope="session")
def fixtures(tmp_path_factory) -> Fixtures:
    return Fixtures.create(tmp_path_factory.mktemp("fuzz"))


@pytest.fixture(scope="session")
def all_services(fixtures, repo) -> dict[str, Service]:
    built = {s.name: s for s in (services.cgs(fixtures), services.keyvault(fixtures), services.maa(fixtures),
                                 services.entra(fixtures), services.identity(fixtures), services.telemetry(fixtures))}
    built["skr"] = services.skr(fixtures, built["maa"].app, built["keyvault"].app)
    built["governance"] = services.governance(fixtures, built["cgs"].app, built["skr"].app)
    built["launcher"] = services.launcher(fixtures, repo / "examples/cleanroomhello-job/spec.yaml")
    return built
