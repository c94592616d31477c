"""`ccr data publish` and `ccr data download`: the data owner's side of encrypted volumes."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..cliargs import add_command, add_spec_variable_options, noun
from ..spec import EncryptionMode

_COMMANDS = "sidecars.volumes.commands"


def register(subparsers: argparse._SubParsersAction) -> None:
    noun(subparsers, "data", "publish data encrypted for a clean room, download results",
         "Data is what a room's volumes hold: blobs in a storage container, each encrypted with the "
         "container's data encryption key (DEK), which is kept wrapped with the owner's KEK in Key Vault. "
         "A data owner publishes a datasource this way, and downloads a datasink's results.", verbs=_verbs)


def _verbs(sub: argparse._SubParsersAction) -> None:
    publish = add_command(
        sub, "publish", f"{_COMMANDS}:publish",
        "encrypt every file of DIR into a container (sub-paths kept) and store the wrapped DEK",
        description="Encrypt every file under DIR (blob name = path relative to DIR) with the container's "
                    "DEK and upload it. The DEK is created on the first run, kept in --dek-file (0600) and "
                    "stored wrapped with the KEK as a Key Vault secret. Re-running is safe: the same DEK is "
                    "reused, and each object is staged in blocks and committed whole, so an interrupted "
                    "upload never leaves an object that looks complete. An empty DIR just sets up the key "
                    "(what a datasink's owner does).")
    publish.add_argument("dir", metavar="DIR", type=Path, nargs="?",
                         help="the files to publish (omit with --key-only)")
    _target_options(publish)
    publish.add_argument("--kek", metavar="JWK|PEM|URL",
                         help="the KEK: a JWK or PEM file (the public key is enough for RSA), or a Key Vault key "
                              "URL; default: the spec's kek_name in its vault")
    publish.add_argument("--parallel", type=int, default=4, metavar="N", help="blocks staged at once (4)")
    publish.add_argument("--pin", metavar="SPEC", help="write the new manifest's sha256 into datasource --volume of "
                                                       "SPEC (manifest_sha256), so the room accepts only this data")
    publish.add_argument("--data-only", action="store_true",
                         help="encrypt with the local DEK (created if absent) without storing it wrapped: the "
                              "manifest's pin changes HOST_DATA, which the KEK's release policy needs first")
    publish.add_argument("--key-only", action="store_true",
                         help="only store the local DEK wrapped with the KEK (after --data-only and the KEK)")

    download = add_command(
        sub, "download", f"{_COMMANDS}:download", "fetch, verify and decrypt a container's objects into DIR",
        description="Download every object (or those under --prefix), verify and decrypt it. Each object is "
                    "written to a temporary file and renamed only once all of it verified: a tampered object "
                    "is reported and nothing of it is left in clear. The container must first match its "
                    "manifest: a datasource the one its pin names (spec manifest_sha256), a datasink the one the "
                    "room signed (--contract-ca); a missing, extra (sink), resized or replaced object refuses "
                    "the download before anything is written.")
    download.add_argument("-o", "--output", required=True, metavar="DIR", type=Path,
                          help="where to write the decrypted objects (sub-paths kept)")
    _target_options(download)
    download.add_argument("--kek", metavar="JWK|PEM",
                          help="a private KEK (JWK or PEM file) to unwrap the DEK from its secret, when the "
                               "local DEK file is not available")
    download.add_argument("--prefix", help="only objects whose name starts with this")
    download.add_argument("--manifest-sha256", metavar="HEX",
                          help="a datasource: the manifest it must match (default: the spec's manifest_sha256)")
    download.add_argument("--contract-ca", metavar="PEM", type=Path,
                          help="a datasink: the contract CA certificate (`ccr governance ca show CONTRACT`) that "
                               "must have endorsed the room which signed the sink's manifest")
    download.add_argument("--contract", help="the contract the sink's manifest must name "
                                                           "(default: the spec's)")
    download.add_argument("--untrusted", action="store_true",
                          help="download without checking the manifest (the result may be partial, rolled back "
                               "or added to); says so on stderr and in the summary (verified: false)")


def _target_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--container", help="blob container (default: the spec volume's)")
    parser.add_argument("--storage-url", metavar="URL",
                        help="blob service URL incl. account for path-style endpoints (default: the spec's, or "
                             "storage_url from --endpoints)")
    parser.add_argument("--s3", metavar="s3://BUCKET[/PREFIX]",
                        help="an S3 bucket (and prefix) instead of a container; signed with your AWS credentials "
                             "(boto3's chain: AWS_* variables, profiles)")
    parser.add_argument("--s3-endpoint", metavar="URL",
                        help="the S3 service (default: s3_endpoint from --endpoints, else AWS's for --s3-region)")
    parser.add_argument("--s3-region", metavar="REGION", help="default: s3_region from --endpoints, else us-east-1")
    parser.add_argument("--vault-url", metavar="URL", help="Key Vault holding the DEK secret (default: the spec's, "
                                                           "or keyvault_url from --endpoints)")
    parser.add_argument("--secret", metavar="NAME", help="Key Vault secret holding the wrapped DEK")
    parser.add_argument("--mode", type=EncryptionMode, choices=list(EncryptionMode),
                        help="encryption mode (default: the spec's, or CSE)")
    parser.add_argument("--dek-file", metavar="FILE", type=Path,
                        help="the owner's local copy of the DEK (default: ~/.ccr/deks/ACCOUNT-CONTAINER.json)")
    parser.add_argument("--spec", metavar="SPEC", help="take endpoints, container, key names from this spec (with "
                                                       "--volume); or give them with the options above")
    parser.add_argument("--volume", metavar="NAME", help="the datasource/datasink of --spec to use")
    parser.add_argument("--ca-bundle", metavar="PEM", help="CA bundle for HTTPS (default: ca_bundle from --endpoints)")
    parser.add_argument("--account-key", help="storage account key (default: AZURE_STORAGE_KEY, Azurite's for "
                                              "devstoreaccount1, else Azure AD)")
    add_spec_variable_options(parser)
