"""Running `ccr` as a user does, for the system tests that bring rooms up (localroom, faults)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def ccr(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    """`ccr ARGS` from the repository; a failure (with `check`) fails the test with ccr's output."""
    result = subprocess.run([sys.executable, "-m", "sidecars", *args], cwd=REPO, capture_output=True, text=True,
                            timeout=timeout)
    if check and result.returncode != 0:
        pytest.fail(f"ccr {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result
