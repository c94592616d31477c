"""`ccr attestation ...`: verify a room's evidence as a party would, and create mock platforms."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("attestation", help="verify SEV-SNP evidence; create a mock platform")
    sub = parser.add_subparsers(dest="attestation_command", metavar="SUBCOMMAND", required=True)

    verify = sub.add_parser(
        "verify", help="verify evidence and print the claims a party would see",
        description="Verify SEV-SNP evidence the way Azure Attestation does (report signature, VCEK chain to "
                    "AMD's pinned ARK, UVM endorsement) and print MAA's claims as JSON. EVIDENCE is a JSON "
                    "file: the C-ACI capture shape {report: {snpCACI: ...}}, an MAA attest/SevSnpVm request "
                    "body (then the runtime data binding is checked and x-ms-runtime shown too), or the skr "
                    "/attest/combined shape. Exit 1 with the reason when it does not verify.")
    verify.add_argument("evidence", metavar="EVIDENCE", help="evidence JSON file")
    verify.add_argument("--trust-mock-platform", metavar="DIR",
                        help="also trust this mock platform's AMD root and UVM signer (local rooms only)")
    verify.set_defaults(func=_cmd_verify)

    mock = sub.add_parser(
        "mock-platform", help="create a mock SEV-SNP platform directory",
        description="Create (or reuse) a mock SEV-SNP platform in DIR: a mock AMD chain (ARK, ASK: RSA-4096 "
                    "RSASSA-PSS; VCEK: EC P-384) and a mock UVM endorsement signer. Verifiers trust it only "
                    "when given --trust-mock-platform DIR.")
    mock.add_argument("directory", metavar="DIR")
    mock.set_defaults(func=_cmd_mock_platform)

    evidence = sub.add_parser(
        "mock-evidence", help="print evidence signed by a mock platform (for trying verifiers)",
        description="Sign a report with a mock platform's VCEK and print the evidence as JSON. With "
                    "--runtime-data FILE the report is bound to that file (REPORT_DATA = sha256 of it) and "
                    "--format maa prints the MAA attest/SevSnpVm body carrying it.")
    evidence.add_argument("directory", metavar="DIR", help="mock platform directory (ccr attestation mock-platform)")
    evidence.add_argument("--host-data", metavar="HEX", default="00" * 32, help="HOST_DATA, 32 bytes in hex")
    evidence.add_argument("--measurement", metavar="HEX", help="MEASUREMENT, 48 bytes in hex (default: the mock UVM's)")
    evidence.add_argument("--debug", action="store_true", help="set the debug bit (19) of the guest policy")
    evidence.add_argument("--runtime-data", metavar="FILE", help="bind the report to this file's bytes")
    evidence.add_argument("--format", choices=("caci", "combined", "maa"), default="caci",
                          help="caci: {report:{snpCACI}} (default); combined: skr /attest/combined; maa: MAA body")
    evidence.set_defaults(func=_cmd_mock_evidence)


def _cmd_verify(args: argparse.Namespace) -> int:
    import json

    from ..common.errors import AttestationError
    from .evidence import load_evidence_file
    from .verify import Trust, verify_evidence, verify_maa_request

    trust = Trust.default()
    if args.trust_mock_platform:
        trust = trust.trusting_mock_platform(args.trust_mock_platform)
    evidence, maa_request = load_evidence_file(args.evidence)
    try:
        claims = verify_maa_request(maa_request, trust) if maa_request else verify_evidence(evidence, trust)
    except AttestationError as exc:
        if "unknown certificate chain" in exc.message and not args.trust_mock_platform:
            raise AttestationError(f"{exc.message}; evidence from a local mock platform verifies only with "
                                   "--trust-mock-platform DIR") from None
        raise
    print(json.dumps(claims, indent=2))
    return 0


def _cmd_mock_platform(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .mock import PLATFORM_FILE, MockPlatform

    existed = (Path(args.directory) / PLATFORM_FILE).exists()
    platform = MockPlatform.create(args.directory)
    print(f"{'reused' if existed else 'created'} mock SEV-SNP platform in {platform.directory}")
    print(f"  AMD root:     {platform.ark_cert.subject.rfc4514_string()}")
    print(f"  UVM endorser: {platform.uvm_endorser.did} (feed {platform.uvm_endorser.feed})")
    return 0


def _hex_argument(value: str, size: int, option: str) -> bytes:
    from ..common.errors import ConfigError

    try:
        data = bytes.fromhex(value)
    except ValueError:
        raise ConfigError(f"{option}: not hex") from None
    if len(data) != size:
        raise ConfigError(f"{option}: expected {size} bytes ({2 * size} hex digits), got {len(data)}")
    return data


def _cmd_mock_evidence(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from ..common.errors import ConfigError
    from .evidence import MaaRequest
    from .maa_client import report_data_for
    from .mock import MockPlatform
    from .providers import MockSnpProvider

    runtime = b""
    if args.runtime_data:
        try:
            runtime = Path(args.runtime_data).read_bytes()
        except OSError as exc:
            raise ConfigError(f"--runtime-data {args.runtime_data}: {exc.strerror}") from None
    elif args.format == "maa":
        raise ConfigError("--format maa needs --runtime-data FILE (MAA binds the report to it)")
    provider = MockSnpProvider(
        MockPlatform.load(args.directory), host_data=_hex_argument(args.host_data, 32, "--host-data"),
        measurement=_hex_argument(args.measurement, 48, "--measurement") if args.measurement else None,
        debug=args.debug)
    evidence = provider.get_evidence(report_data_for(runtime) if args.runtime_data else b"")
    if args.format == "maa":
        document = MaaRequest(evidence=evidence, runtime_data=runtime).to_body()
    else:
        document = evidence.to_caci() if args.format == "caci" else evidence.to_combined()
    print(json.dumps(document, indent=2))
    return 0
