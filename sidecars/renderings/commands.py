"""The handlers of `ccr spec explain|import-azure` and `ccr spec render ...` (registered in cli.py)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from ..cliargs import load_spec_from_args, read_endpoints, spec_variables
from ..common.containers import DEFAULT_REGISTRY
from ..common.deploymentspec import template_sha256
from ..room.group import render_group
from ..spec import CleanRoomSpec, load_spec
from .arm import PARAMETERS_FILE, TEMPLATE_FILE, arm_parameters, arm_template, dumps
from .azure_spec import import_azure_spec, validate_import
from .cce import PolicyOptions
from .compose import EMULATION_VAR, prepare_emulation, render_compose, stand_in_endpoints
from .explain import explain as explain_rendering
from .k8s import pod_manifest
from .layers import LockedImages
from .release_policy import release_policy_for
from .render import Rendering, default_cache_dir, default_images, render
from .spark import (
    DEFAULT_MAIN_FILE,
    DEFAULT_SERVICE_ACCOUNT,
    check_deploy_names,
    executor_spec,
    render_cluster,
    spark_application,
)
from .sparkexplain import explain_cluster


def _render(args: argparse.Namespace) -> tuple[CleanRoomSpec, Rendering]:
    spec = load_spec_from_args(args)
    images = default_images(args.layers, progress=_progress)
    rendering = render(spec, images, registry=args.registry or DEFAULT_REGISTRY,
                       options=PolicyOptions(infra_fragment=not args.no_infra_fragment),
                       identities=tuple(getattr(args, "managed_identity", None) or ()))
    return spec, rendering


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _output(args: argparse.Namespace, text: str, note: str = "") -> None:
    """-o FILE, or stdout when it is not given (or is -)."""
    if args.output in (None, "-"):
        sys.stdout.write(text)
    else:
        _write(Path(args.output), text)
        print(f"wrote {args.output}{note}")


def policy(args: argparse.Namespace) -> int:
    _, rendering = _render(args)
    _output(args, rendering.policy, f" (HOST_DATA {rendering.host_data})")
    return 0


def policy_hash(args: argparse.Namespace) -> int:
    _, rendering = _render(args)
    print(rendering.host_data)
    return 0


def arm(args: argparse.Namespace) -> int:
    _, rendering = _render(args)
    out = Path(args.output)
    template = arm_template(rendering.group, rendering.policy)
    _write(out / TEMPLATE_FILE, dumps(template))
    _write(out / PARAMETERS_FILE, dumps(arm_parameters(rendering.group)))
    _write(out / "ccepolicy.rego", rendering.policy)
    print(f"wrote {out / TEMPLATE_FILE}, {out / PARAMETERS_FILE} and {out / 'ccepolicy.rego'}")
    print(f"HOST_DATA {rendering.host_data}")
    # what `ccr governance deployment show --verify` compares: the members accept this template by this hash
    print(f"template sha256 {template_sha256(template)}")
    return 0


def k8s(args: argparse.Namespace) -> int:
    _, rendering = _render(args)
    _output(args, json.dumps(pod_manifest(rendering.group, rendering.policy), indent=2) + "\n")
    return 0


def spark(args: argparse.Namespace) -> int:
    spec = load_spec_from_args(args)
    if spec.cluster is None:
        print(f"ccr: error: {args.spec}: the spec has no cluster section, so there is no Spark cluster to render "
              "(docs/analytics.md, \"A cluster of rooms\")", file=sys.stderr)
        return 2
    main_file = args.main_file or DEFAULT_MAIN_FILE
    service_account = args.service_account or DEFAULT_SERVICE_ACCOUNT
    check_deploy_names(main_file, service_account)
    rendering = render_cluster(spec, default_images(args.layers, progress=_progress),
                               registry=args.registry or DEFAULT_REGISTRY,
                               options=PolicyOptions(infra_fragment=not args.no_infra_fragment), main_file=main_file)
    document = spark_application(rendering, service_account=service_account)
    if args.explain:
        sys.stdout.write(explain_cluster(rendering, mock_platform=_for_mock_platform(args)))
        if args.output in (None, "-"):
            return 0
    _output(args, yaml.safe_dump(document, sort_keys=False, width=120),
            f" (HOST_DATA driver {rendering.driver.host_data}, executors {rendering.executor.host_data})")
    return 0


def _for_mock_platform(args: argparse.Namespace) -> bool:
    """Rendered for the local stand-ins: their endpoints file has a mock platform, or the user said so."""
    return bool(getattr(args, "allow_mock_platform", False) or read_endpoints(args).get("mock_platform_dir"))


def explain(args: argparse.Namespace) -> int:
    spec, rendering = _render(args)
    sys.stdout.write(explain_rendering(spec, rendering, mock_platform=_for_mock_platform(args)))
    return 0


def release_policy(args: argparse.Namespace) -> int:
    spec, rendering = _render(args)
    print(json.dumps(release_policy_for(spec, args.party, host_data=rendering.host_data,
                                        accept_mock_uvm=_for_mock_platform(args)), indent=2))
    return 0


def layers(args: argparse.Namespace) -> int:
    spec = load_spec_from_args(args)
    registry = args.registry or DEFAULT_REGISTRY
    groups = [render_group(spec, registry=registry)]
    if spec.cluster is not None:  # `render spark` renders the executor pods' group too
        groups.append(render_group(executor_spec(spec), registry=registry))
    wanted = list(dict.fromkeys(c.image for group in groups for c in group.containers))
    images = default_images(args.layers, default_cache_dir(), progress=_progress)
    prefetch = getattr(images, "prefetch", None)
    if prefetch is not None:
        prefetch(wanted)
    lock = LockedImages({image: images.resolve(image) for image in wanted})
    _write(Path(args.output), lock.dump())
    print(f"wrote {args.output} ({len(lock.images)} images)")
    return 0


def import_azure(args: argparse.Namespace) -> int:
    result = import_azure_spec(args.file, name=args.name, contract_id=args.contract_id,
                               maa_endpoint=args.maa_endpoint, governance_endpoint=args.governance_endpoint)
    validate_import(result, spec_variables(args))
    out = Path(args.output)
    _write(out, result.yaml())
    for file, text in result.policy_files.items():
        _write(out.parent / file, text)
    for line in result.not_carried:
        print(f"not carried over: {line}", file=sys.stderr)
    print(f"wrote {out}" + (f" and {', '.join(result.policy_files)}" if result.policy_files else ""))
    return 0


def compose(args: argparse.Namespace) -> int:
    registry = args.registry or DEFAULT_REGISTRY
    spec = load_spec(args.spec, variables=stand_in_endpoints(EMULATION_VAR))
    _output(args, render_compose(render_group(spec, registry=registry), source=Path(args.spec).as_posix()))
    if args.prepare:
        directory = Path(args.prepare).resolve()
        resolved = load_spec(args.spec, variables=stand_in_endpoints(str(directory)))
        host_data = render(resolved, default_images(args.layers), registry=registry).host_data
        env_file = prepare_emulation(directory, host_data)
        print(f"wrote {env_file} (HOST_DATA {host_data}); run: podman-compose --env-file {env_file} "
              f"-f {args.output or 'FILE'} up -d")
    return 0
