"""The handlers of `ccr attestation ...` (registered in cli.py)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..common.errors import AttestationError, ConfigError
from .evidence import MaaRequest, load_evidence_file
from .maa_client import report_data_for
from .mock import PLATFORM_FILE, MockPlatform
from .providers import MockSnpProvider
from .verify import Trust, verify_evidence, verify_maa_request


def verify(args: argparse.Namespace) -> int:
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


def mock_platform(args: argparse.Namespace) -> int:
    existed = (Path(args.output) / PLATFORM_FILE).exists()
    platform = MockPlatform.create(args.output)
    print(f"{'reused' if existed else 'created'} mock SEV-SNP platform in {platform.directory}")
    print(f"  AMD root:     {platform.ark_cert.subject.rfc4514_string()}")
    print(f"  UVM endorser: {platform.uvm_endorser.did} (feed {platform.uvm_endorser.feed})")
    return 0


def _hex_argument(value: str, size: int, option: str) -> bytes:
    try:
        data = bytes.fromhex(value)
    except ValueError:
        raise ConfigError(f"{option}: not hex") from None
    if len(data) != size:
        raise ConfigError(f"{option}: expected {size} bytes ({2 * size} hex digits), got {len(data)}")
    return data


def mock_evidence(args: argparse.Namespace) -> int:
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
