"""`ccr deploy ...`: the artifacts that deploy a spec to Confidential ACI (and AKS), and what they mean."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..cliargs import add_spec_variable_options, load_spec_from_args
from ..common.errors import ConfigError


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", metavar="SPEC", help="clean room spec (YAML)")
    add_spec_variable_options(parser)
    parser.add_argument("--layers", metavar="FILE",
                        help="layer lock (JSON) with each image's digest and dm-verity layer hashes; default: "
                             "compute them from local podman images (cached), or $CCR_LAYER_LOCK")
    parser.add_argument("--registry", default=None,
                        help="registry prefix of the sidecar images (default localhost/ccr), e.g. myacr.azurecr.io/ccr")
    parser.add_argument("--no-infra-fragment", action="store_true",
                        help="do not reference Microsoft's signed C-ACI infrastructure fragment in the policy")


def _render(args: argparse.Namespace):
    from ..common.containers import DEFAULT_REGISTRY
    from .cce import PolicyOptions
    from .render import default_images, render

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


def _cmd_policy(args: argparse.Namespace) -> int:
    _, rendering = _render(args)
    if args.output in (None, "-"):
        sys.stdout.write(rendering.policy)
    else:
        _write(Path(args.output), rendering.policy)
        print(f"wrote {args.output} (HOST_DATA {rendering.host_data})")
    return 0


def _cmd_policy_hash(args: argparse.Namespace) -> int:
    _, rendering = _render(args)
    print(rendering.host_data)
    return 0


def _cmd_arm(args: argparse.Namespace) -> int:
    from .arm import PARAMETERS_FILE, TEMPLATE_FILE, arm_parameters, arm_template, dumps

    _, rendering = _render(args)
    out = Path(args.output)
    _write(out / TEMPLATE_FILE, dumps(arm_template(rendering.group, rendering.policy)))
    _write(out / PARAMETERS_FILE, dumps(arm_parameters(rendering.group)))
    _write(out / "ccepolicy.rego", rendering.policy)
    print(f"wrote {out / TEMPLATE_FILE}, {out / PARAMETERS_FILE} and {out / 'ccepolicy.rego'}")
    print(f"HOST_DATA {rendering.host_data}")
    return 0


def _cmd_k8s(args: argparse.Namespace) -> int:
    from .k8s import pod_manifest

    _, rendering = _render(args)
    text = json.dumps(pod_manifest(rendering.group, rendering.policy), indent=2) + "\n"
    if args.output in (None, "-"):
        sys.stdout.write(text)
    else:
        _write(Path(args.output), text)
        print(f"wrote {args.output}")
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    from .explain import explain

    spec, rendering = _render(args)
    sys.stdout.write(explain(spec, rendering))
    return 0


def _cmd_release_policy(args: argparse.Namespace) -> int:
    from .release_policy import release_policy_for

    spec, rendering = _render(args)
    print(json.dumps(release_policy_for(spec, args.party, host_data=rendering.host_data), indent=2))
    return 0


def _cmd_layers(args: argparse.Namespace) -> int:
    from ..common.containers import DEFAULT_REGISTRY
    from ..room.group import render_group
    from .layers import LockedImages
    from .render import default_cache_dir, default_images

    spec = load_spec_from_args(args)
    group = render_group(spec, registry=args.registry or DEFAULT_REGISTRY)
    images = default_images(args.layers, default_cache_dir(), progress=_progress)
    prefetch = getattr(images, "prefetch", None)
    if prefetch is not None:
        prefetch([c.image for c in group.containers])
    lock = LockedImages({})
    for c in group.containers:
        if c.image not in lock.images:
            lock.images[c.image] = images.resolve(c.image)
    _write(Path(args.output), lock.dump())
    print(f"wrote {args.output} ({len(lock.images)} images)")
    return 0


def _cmd_import_azure(args: argparse.Namespace) -> int:
    from ..cliargs import spec_variables
    from .azure_spec import import_azure_spec, validate_import

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


def _cmd_render_compose(args: argparse.Namespace) -> int:
    from ..spec import load_spec
    from .compose import release_emulation

    if args.release:
        for target in release_emulation(Path(args.release)):
            print(f"unmounted {target}")
        return 0
    if not args.spec:
        raise ConfigError("SPEC is needed (or --release DIR)")
    from ..common.containers import DEFAULT_REGISTRY
    from ..room.group import render_group
    from .compose import EMULATION_VAR, prepare_emulation, render_compose, stand_in_endpoints

    registry = args.registry or DEFAULT_REGISTRY
    spec = load_spec(args.spec, variables=stand_in_endpoints(EMULATION_VAR))
    text = render_compose(render_group(spec, registry=registry), source=Path(args.spec).as_posix())
    if args.output in (None, "-"):
        sys.stdout.write(text)
    else:
        _write(Path(args.output), text)
        print(f"wrote {args.output}")
    if args.prepare:
        from .render import default_images, render

        directory = Path(args.prepare).resolve()
        resolved = load_spec(args.spec, variables=stand_in_endpoints(str(directory)))
        host_data = render(resolved, default_images(args.layers), registry=registry).host_data
        env_file = prepare_emulation(directory, host_data)
        print(f"wrote {env_file} (HOST_DATA {host_data}); run: podman-compose --env-file {env_file} "
              f"-f {args.output or 'FILE'} up -d")
    return 0


def _register_spec_import(subparsers: argparse._SubParsersAction) -> None:
    spec = subparsers.choices.get("spec")
    if spec is None:
        return
    spec_sub = next(a for a in spec._actions if isinstance(a, argparse._SubParsersAction))
    p = spec_sub.add_parser(
        "import-azure", help="convert an Azure clean room contract (CleanRoomSpecification YAML) into a ccr spec",
        description="Fields the ccr spec cannot hold are listed on stderr and in the output's header; none is "
                    "dropped silently.")
    p.add_argument("file", metavar="FILE")
    p.add_argument("-o", "--output", metavar="SPEC", required=True, help="where to write the ccr spec (YAML)")
    p.add_argument("--name", help="spec name (default: from the application's name)")
    p.add_argument("--contract-id", help="contract id (default: from the governance URLs)")
    p.add_argument("--maa-endpoint", help="attestation service (default: from the KEK configuration, "
                                          "else ${maa_endpoint})")
    p.add_argument("--governance-endpoint", help="CGS endpoint (default: from the governance URLs)")
    add_spec_variable_options(p)
    p.set_defaults(func=_cmd_import_azure)


def _register_render(subparsers: argparse._SubParsersAction) -> None:
    render = subparsers.add_parser("render", help="render a spec for other runtimes (compose)")
    sub = render.add_subparsers(dest="render_command", metavar="SUBCOMMAND", required=True)
    p = sub.add_parser(
        "compose", help="write the compose file of a spec's container group (docker-compose / podman-compose)",
        description="The same container group as the CCE policy and `ccr up`: the sidecars share one network "
                    "namespace (network_mode: service:room) with the stand-ins and Azurite as services on fixed "
                    "ports, which fill the spec's ${...} endpoints. --prepare DIR creates the stand-ins' state "
                    "(CA, certificates, mock platform, endpoints.json) and DIR/compose.env (CCR_EMULATION_DIR, "
                    "CCR_HOST_DATA, computed from the local images) for `podman-compose --env-file`.")
    p.add_argument("spec", metavar="SPEC", nargs="?", help="clean room spec (YAML)")
    p.add_argument("-o", "--output", metavar="FILE", help="output file (default: stdout)")
    p.add_argument("--prepare", metavar="DIR", help="also prepare the stand-ins' state directory for a run "
                                                    "(as root: DIR/remote becomes a shared mount)")
    p.add_argument("--release", metavar="DIR", help="after `podman-compose down`: unmount what --prepare DIR "
                                                    "and the room left under DIR/remote")
    p.add_argument("--registry", default=None, help="registry prefix of the sidecar images (default localhost/ccr)")
    p.add_argument("--layers", metavar="FILE", help="layer lock for HOST_DATA (default: local podman images)")
    p.set_defaults(func=_cmd_render_compose)


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_spec_import(subparsers)
    _register_render(subparsers)
    deploy = subparsers.add_parser(
        "deploy", help="render a spec for Confidential ACI: CCE policy, ARM template, key release policies",
        description="Everything here is rendered from the spec and the images' layers, deterministically: the "
                    "same spec and images always give the same policy bytes and HOST_DATA.")
    sub = deploy.add_subparsers(dest="deploy_command", metavar="SUBCOMMAND", required=True)

    p = sub.add_parser("policy", help="write the CCE policy (Rego)")
    _common(p)
    p.add_argument("-o", "--output", metavar="FILE", help="output file (default: stdout)")
    p.set_defaults(func=_cmd_policy)

    p = sub.add_parser("policy-hash", help="print HOST_DATA: sha256 of the CCE policy bytes")
    _common(p)
    p.set_defaults(func=_cmd_policy_hash)

    p = sub.add_parser("arm", help="write cleanroom-arm-template.json (+ parameters, + the policy) into DIR")
    _common(p)
    p.add_argument("-o", "--output", metavar="DIR", required=True)
    p.add_argument("--managed-identity", action="append", metavar="RESOURCE_ID",
                   help="user-assigned managed identity to attach to the group (repeatable)")
    p.set_defaults(func=_cmd_arm)

    p = sub.add_parser("k8s", help="write a pod spec for AKS confidential virtual nodes")
    _common(p)
    p.add_argument("-o", "--output", metavar="FILE", help="output file (default: stdout)")
    p.set_defaults(func=_cmd_k8s)

    p = sub.add_parser("explain", help="say, per party, what its key is released to and what the room may do")
    _common(p)
    p.set_defaults(func=_cmd_explain)

    p = sub.add_parser("release-policy", help="print a party's key release policy (JSON)")
    _common(p)
    p.add_argument("--party", required=True, help="the contract member who owns the key")
    p.set_defaults(func=_cmd_release_policy)

    p = sub.add_parser("layers", help="write a layer lock for the spec's images (from local podman storage)")
    _common(p)
    p.add_argument("-o", "--output", metavar="FILE", required=True)
    p.set_defaults(func=_cmd_layers)
