"""The member client a `ccr governance` or `ccr analytics` command acts with, from its connection options
(`--cgs`, `--endpoints`, `--identity`, `--ca-bundle`, `--member-auth`; see `cli.add_connection`)."""

from __future__ import annotations

import argparse
import os

from ..cliargs import read_endpoints
from ..common.errors import ConfigError
from ..common.memberauth import MemberIdentity
from .member_client import CgsMemberClient


def member_client(args: argparse.Namespace, identity_dir: str | None = None) -> CgsMemberClient:
    endpoints = read_endpoints(args)
    endpoint = args.cgs or os.environ.get("CCR_CGS_ENDPOINT") or endpoints.get("cgs_endpoint")
    ca_bundle = args.ca_bundle or endpoints.get("ca_bundle")
    if not endpoint:
        raise ConfigError("no CGS endpoint: pass --cgs URL, --endpoints FILE or set CCR_CGS_ENDPOINT")
    directory = identity_dir or args.identity or os.environ.get("CCR_MEMBER_DIR")
    if not directory:
        raise ConfigError("no member identity: pass --identity DIR or set CCR_MEMBER_DIR")
    return CgsMemberClient(endpoint, MemberIdentity.load(directory), ca_bundle=ca_bundle or os.environ.get(
        "CCR_CA_BUNDLE"), auth=getattr(args, "member_auth", "cert"))
