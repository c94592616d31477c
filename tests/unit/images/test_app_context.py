"""An app folder's declared Debian base packages and virtualenv packages (no podman, no debootstrap)."""

from __future__ import annotations

import pytest

from sidecars.common.errors import ConfigError
from sidecars.launcher import images
from sidecars.launcher.venvstage import SITE


def test_an_app_without_a_list_gets_the_python_base(tmp_path):
    assert images.declared_debian_packages(tmp_path) == ("python3",)
    assert images.app_base_image(("python3",)) == images.BASE_IMAGE


def test_declared_packages_come_after_python3_and_tag_their_own_base(tmp_path):
    (tmp_path / "debian-packages.txt").write_text("# Spark\nopenjdk-17-jre-headless  # the JVM\n\nprocps\npython3\n")
    packages = images.declared_debian_packages(tmp_path)
    assert packages == ("python3", "openjdk-17-jre-headless", "procps")
    assert images.app_base_image(packages) != images.app_base_image(("python3", "procps"))


@pytest.mark.parametrize("name", ["--variant=buildd", "procps;touch /x", "Procps", "../x", "a b"])
def test_a_line_that_is_not_a_package_name_never_reaches_debootstrap(tmp_path, name):
    (tmp_path / "debian-packages.txt").write_text(f"procps\n{name}\n")
    with pytest.raises(ConfigError, match="not a Debian package name"):
        images.declared_debian_packages(tmp_path)


def test_venv_packages_are_staged_with_their_requirements_and_ccr(tmp_path):
    context = tmp_path / "app"
    context.mkdir()
    (context / "Containerfile").write_text("FROM scratch\n")
    (context / "venv-packages.txt").write_text("ccr\nsqlglot  # the guards\n")
    staged = images._stage_context(context, tmp_path / "scratch", progress=lambda _m: None)
    assert staged != context and (staged / "Containerfile").is_file()
    assert (staged / "deps" / SITE / "sqlglot" / "__init__.py").is_file()
    assert (staged / "deps" / SITE / "fastapi").is_dir()  # ccr's own runtime requirement
    assert (staged / "deps" / "bin" / "python").readlink().as_posix() == "/usr/bin/python3"
    assert (staged / "app" / SITE / "sidecars" / "analytics" / "service.py").is_file()
    assert (staged / "app" / "bin" / "ccr").stat().st_mode & 0o111
    assert not (staged / "deps" / SITE / "pytest").exists()


def test_an_uninstalled_venv_package_is_one_line(tmp_path):
    (tmp_path / "venv-packages.txt").write_text("no-such-distribution-here\n")
    with pytest.raises(ConfigError, match="is not installed"):
        images._stage_context(tmp_path, tmp_path / "scratch", progress=lambda _m: None)


def test_a_folder_asking_for_nothing_is_built_as_it_is(tmp_path):
    assert images._stage_context(tmp_path, tmp_path / "scratch") == tmp_path
