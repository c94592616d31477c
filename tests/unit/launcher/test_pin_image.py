import pytest

from sidecars.common.errors import ConfigError
from sidecars.launcher.images import pin_image

NEW = "localhost/app@sha256:" + "ab" * 32


def test_pin_rewrites_only_the_image_line(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("# keep me\napplication:\n  name: app\n  image: localhost/app:latest  # the app\n"
                    "  command: [python3]\n")
    assert pin_image(spec, NEW) is True
    assert spec.read_text() == ("# keep me\napplication:\n  name: app\n  image: " + NEW + "  # the app\n"
                                "  command: [python3]\n")
    assert pin_image(spec, NEW) is False


def test_pin_refuses_ambiguous_or_missing(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("application:\n  image: x\nother:\n  image: x\n")
    with pytest.raises(ConfigError, match="expected one 'image: x' line, found 2"):
        pin_image(spec, NEW)
    spec.write_text("name: nothing\n")
    with pytest.raises(ConfigError, match="no application.image to pin"):
        pin_image(spec, NEW)
