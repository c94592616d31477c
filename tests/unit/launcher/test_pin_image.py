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
    with pytest.raises(ConfigError, match="expected one line 'image: x', found 2"):
        pin_image(spec, NEW)
    spec.write_text("name: nothing\n")
    with pytest.raises(ConfigError, match="no application.image to pin"):
        pin_image(spec, NEW)


def test_pin_reads_a_hostile_spec_as_bounded_as_spec_validate(tmp_path):
    """`ccr images build --pin` and `ccr data publish --pin` edit the spec in place: a billion-laughs spec is
    refused in one line, never expanded."""
    from sidecars.volumes.owner import pin_manifest

    laughs = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for level in range(1, 10):
        refs = ", ".join([f"*{chr(96 + level)}"] * 10)
        laughs.append(f"{chr(97 + level)}: &{chr(97 + level)} [{refs}]")
    spec = tmp_path / "spec.yaml"
    spec.write_text("\n".join(laughs) + "\napplication:\n  image: x\n")
    with pytest.raises(ConfigError, match="nodes|limit"):
        pin_image(spec, NEW)
    with pytest.raises(ConfigError, match="nodes|limit"):
        pin_manifest(spec, "input", "a" * 64)
