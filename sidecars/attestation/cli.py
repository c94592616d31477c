"""`ccr attestation verify|mock-platform|mock-evidence`: verify a room's evidence as a party would, and
create mock platforms."""

from __future__ import annotations

import argparse

from ..cliargs import add_command, noun

_COMMANDS = "sidecars.attestation.commands"


def register(subparsers: argparse._SubParsersAction) -> None:
    noun(subparsers, "attestation", "verify SEV-SNP evidence; create a mock platform",
         "Attestation: the SEV-SNP evidence a confidential container group presents (a report signed "
         "by the AMD chip, and the utility VM's endorsement), verified as Azure Attestation does; and, "
         "for local rooms, mock platforms that sign such evidence.", verbs=_verbs)


def _verbs(sub: argparse._SubParsersAction) -> None:
    verify = add_command(
        sub, "verify", f"{_COMMANDS}:verify", "verify evidence and print the claims a party would see",
        description="Verify SEV-SNP evidence the way Azure Attestation does (report signature, VCEK chain to "
                    "AMD's pinned ARK, UVM endorsement) and print MAA's claims as JSON. EVIDENCE is a JSON "
                    "file: the C-ACI capture shape {report: {snpCACI: ...}}, an MAA attest/SevSnpVm request "
                    "body (then the runtime data binding is checked and x-ms-runtime shown too), or the skr "
                    "/attest/combined shape. Exit 1 with the reason when it does not verify.")
    verify.add_argument("evidence", metavar="EVIDENCE", help="evidence JSON file")
    verify.add_argument("--trust-mock-platform", metavar="DIR",
                        help="also trust this mock platform's AMD root and UVM signer (local rooms only)")

    mock = add_command(
        sub, "mock-platform", f"{_COMMANDS}:mock_platform", "create a mock SEV-SNP platform directory",
        description="Create (or reuse) a mock SEV-SNP platform in DIR: a mock AMD chain (ARK, ASK: RSA-4096 "
                    "RSASSA-PSS; VCEK: EC P-384) and a mock UVM endorsement signer. Verifiers trust it only "
                    "when given --trust-mock-platform DIR.")
    mock.add_argument("-o", "--output", required=True, metavar="DIR",
                      help="the platform's directory (created, or reused if it holds one)")

    evidence = add_command(
        sub, "mock-evidence", f"{_COMMANDS}:mock_evidence", "print evidence signed by a mock platform "
        "(for trying verifiers)",
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
