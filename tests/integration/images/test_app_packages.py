"""An app's requirements.txt: every package pinned, installed once (pip, from PyPI) into the cache, handed to
the build."""

import pytest

from sidecars.common.errors import ConfigError
from sidecars.launcher import images


def test_unpinned_requirements_are_refused_naming_them(tmp_path, monkeypatch):
    monkeypatch.setenv("CCR_CACHE_DIR", str(tmp_path / "cache"))
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# the app's packages\npg8000==1.31.6\nscramp>=1.4  # too loose\nsix\n")
    with pytest.raises(ConfigError, match=r"pin every package with == \(not pinned: scramp>=1.4, six\)"):
        images.vendored_packages(requirements)
    assert not (tmp_path / "cache").exists()


def test_installed_packages_are_cached_by_the_file_content(tmp_path, monkeypatch):
    monkeypatch.setenv("CCR_CACHE_DIR", str(tmp_path / "cache"))
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("six==1.16.0\n")
    calls = []
    real_run = images.subprocess.run

    def counting_run(argv, **kwargs):
        calls.append(argv)
        return real_run(argv, **kwargs)

    monkeypatch.setattr(images.subprocess, "run", counting_run)
    first = images.vendored_packages(requirements, progress=lambda _m: None)
    assert (first / "six.py").is_file()
    assert images.vendored_packages(requirements, progress=lambda _m: None) == first
    assert len(calls) == 1, "the second build must reuse the cache"
    requirements.write_text("six==1.17.0\n")
    assert images.vendored_packages(requirements, progress=lambda _m: None) != first
