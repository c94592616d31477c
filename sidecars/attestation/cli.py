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


def _cmd_verify(args: argparse.Namespace) -> int:
    import json

    from .evidence import load_evidence_file
    from .verify import Trust, verify_evidence, verify_maa_request

    trust = Trust.default()
    if args.trust_mock_platform:
        trust = trust.trusting_mock_platform(args.trust_mock_platform)
    evidence, maa_request = load_evidence_file(args.evidence)
    claims = verify_maa_request(maa_request, trust) if maa_request else verify_evidence(evidence, trust)
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
