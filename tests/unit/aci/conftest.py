"""An ARM template of the job example rendered with image facts from a lock (no podman needed)."""

from __future__ import annotations

import copy

import pytest

from sidecars.renderings.arm import arm_template
from sidecars.renderings.cce import render_policy
from sidecars.room.group import render_group
from sidecars.spec import load_spec
from tests.unit.renderings.conftest import VARIABLES, images_for


@pytest.fixture
def job_rendering(repo):
    group = render_group(load_spec(repo / "examples/cleanroomhello-job/spec.yaml", variables=VARIABLES))
    images = images_for(group)
    return arm_template(group, render_policy(group, images)), images


@pytest.fixture
def job_template(job_rendering) -> dict:
    return copy.deepcopy(job_rendering[0])


@pytest.fixture
def job_images(job_rendering):
    return job_rendering[1]


def group_properties(template: dict) -> dict:
    return template["resources"][0]["properties"]


def container_properties(template: dict, name: str) -> dict:
    properties = group_properties(template)
    for container in [*properties["initContainers"], *properties["containers"]]:
        if container["name"] == name:
            return container["properties"]
    raise KeyError(name)
