"""`ccr spec explain|import-azure` and `ccr spec render KIND SPEC`: what deploys a spec to Confidential ACI
(and AKS, and compose), rendered from it, and what it means."""

from __future__ import annotations

import argparse

from ..cliargs import add_command, add_spec_variable_options, noun

_COMMANDS = "sidecars.renderings.commands"


#: `render spark`'s own options (flag, metavar, help)
_SPARK_OPTIONS = (
    ("--main-file", "URI", "the driver program, given one argument, /run/ccr/cluster/job-args.json, and measured in "
                           "the driver policy (default: sidecars/cluster/job.py of the ccr-analytics image run as a "
                           "file, local:///opt/ccr/lib/python3.11/site-packages/sidecars/renderings/sparkjob.py)"),
    ("--service-account", "NAME", "the driver's Kubernetes service account, which creates the executor pods "
                                  "(default: spark-operator-spark, the one the operator's Helm chart makes)"),
)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", metavar="SPEC", help="clean room spec (YAML)")
    add_spec_variable_options(parser)
    _layers_option(parser, "layer lock (JSON) with each image's digest and dm-verity layer hashes; default: "
                           "compute them from local podman images (cached), or $CCR_LAYER_LOCK")
    _registry_option(parser)
    parser.add_argument("--no-infra-fragment", action="store_true",
                        help="do not reference Microsoft's signed C-ACI infrastructure fragment in the policy")


def _mock_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--allow-mock-platform", action="store_true",
                        help="the keys also go to a room on the local stand-ins' mock platform (ccr-mock-uvm); implied "
                             "by --endpoints of stand-ins with a mock platform. Never for real data")


def _layers_option(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--layers", metavar="FILE", help=help)


def _registry_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--registry", metavar="PREFIX", default=None,
                        help="registry prefix of the sidecar images (default localhost/ccr), e.g. myacr.azurecr.io/ccr")


def _output_option(parser: argparse.ArgumentParser, metavar: str = "FILE", required: bool = False,
                   help: str = "output file (default: stdout)") -> None:
    parser.add_argument("-o", "--output", metavar=metavar, required=required, help=help)


def register(subparsers: argparse._SubParsersAction) -> None:
    noun(subparsers, "spec", verbs=_spec_verbs)


def _spec_verbs(spec: argparse._SubParsersAction) -> None:
    explain = add_command(spec, "explain", f"{_COMMANDS}:explain",
                          "say, per party, what its key is released to and what the room may do")
    _common(explain)
    _mock_option(explain)

    p = add_command(
        spec, "import-azure", f"{_COMMANDS}:import_azure",
        "convert an Azure clean room contract (CleanRoomSpecification YAML) into a ccr spec",
        description="Fields the ccr spec cannot hold are listed on stderr and in the output's header; none is "
                    "dropped silently.")
    p.add_argument("file", metavar="FILE", help="the Azure CleanRoomSpecification (YAML)")
    _output_option(p, "SPEC", required=True, help="where to write the ccr spec (YAML)")
    p.add_argument("--name", help="spec name (default: from the application's name)")
    p.add_argument("--contract-id", help="contract id (default: from the governance URLs)")
    p.add_argument("--maa-endpoint", metavar="URL", help="attestation service (default: from the KEK "
                                                         "configuration, else ${maa_endpoint})")
    p.add_argument("--governance-endpoint", metavar="URL", help="CGS endpoint (default: from the governance URLs)")
    add_spec_variable_options(p)

    noun(spec, "render", "render what deploys SPEC: CCE policy, ARM template, pod spec, compose file, ...",
         "Everything here is rendered from the spec and the images' layers, deterministically: the same spec "
         "and images always give the same policy bytes and HOST_DATA.", verbs=_render_verbs)


def _render_verbs(render: argparse._SubParsersAction) -> None:
    p = add_command(render, "policy", f"{_COMMANDS}:policy", "write the CCE policy (Rego)")
    _common(p)
    _output_option(p)

    p = add_command(render, "policy-hash", f"{_COMMANDS}:policy_hash",
                    "print HOST_DATA: sha256 of the CCE policy bytes")
    _common(p)

    p = add_command(render, "arm", f"{_COMMANDS}:arm",
                    "write cleanroom-arm-template.json (+ parameters, + the policy) into DIR")
    _common(p)
    _output_option(p, "DIR", required=True, help="the directory to write the files into")
    p.add_argument("--managed-identity", action="append", metavar="RESOURCE_ID",
                   help="user-assigned managed identity to attach to the group (repeatable)")

    p = add_command(render, "k8s", f"{_COMMANDS}:k8s", "write a pod spec for AKS confidential virtual nodes")
    _common(p)
    _output_option(p)

    p = add_command(
        render, "spark", f"{_COMMANDS}:spark",
        "write the Spark Operator SparkApplication of a spec's cluster (AKS virtual nodes)",
        description="The spec's `cluster` section as a Kubeflow Spark Operator SparkApplication "
                    "(sparkoperator.k8s.io/v1beta2): the driver pod is the room the spec describes, each of the "
                    "cluster.executors executor pods a room of the executor image, each pod its own Confidential "
                    "ACI group on a virtual node with its CCE policy and sidecars. Checked against the operator's "
                    "CRD before it is written. A spec without a cluster section: exit code 2.")
    _common(p)
    _mock_option(p)
    _output_option(p, help="where to write the SparkApplication (YAML; default: stdout)")
    p.add_argument("--explain", action="store_true",
                   help="say which HOST_DATA each role attests with, what the members accept and which secrets each "
                        "role can obtain (on stdout; with -o the SparkApplication is written too)")
    for flag, metavar, text in _SPARK_OPTIONS:
        p.add_argument(flag, metavar=metavar, help=text)

    p = add_command(
        render, "compose", f"{_COMMANDS}:compose",
        "write the compose file of a spec's container group (docker-compose / podman-compose)",
        description="The same container group as the CCE policy and `ccr room up`: the sidecars share one network "
                    "namespace (network_mode: service:room) with the stand-ins and Azurite as services on fixed "
                    "ports, which fill the spec's ${...} endpoints. --prepare DIR creates the stand-ins' state "
                    "(CA, certificates, mock platform, endpoints.json) and DIR/compose.env (CCR_EMULATION_DIR, "
                    "CCR_HOST_DATA, computed from the local images) for `podman-compose --env-file`; after "
                    "`podman-compose down`, `ccr emulators release-compose --run-dir DIR` undoes its mounts.")
    p.add_argument("spec", metavar="SPEC", help="clean room spec (YAML)")
    _output_option(p)
    p.add_argument("--prepare", metavar="DIR", help="also prepare the stand-ins' state directory for a run "
                                                    "(as root: DIR/remote becomes a shared mount)")
    _registry_option(p)
    _layers_option(p, "layer lock for HOST_DATA (default: local podman images)")

    p = add_command(render, "release-policy", f"{_COMMANDS}:release_policy",
                    "print a party's key release policy (JSON)")
    _common(p)
    _mock_option(p)
    p.add_argument("--party", required=True, help="the contract member who owns the key")

    p = add_command(render, "layers", f"{_COMMANDS}:layers",
                    "write a layer lock for the spec's images (from local podman storage)")
    _common(p)
    _output_option(p, required=True, help="where to write the layer lock (JSON)")
