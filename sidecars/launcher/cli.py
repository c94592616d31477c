"""`ccr images build`: build the room's images locally and pin their digests in a spec."""

from __future__ import annotations

import argparse

from ..cliargs import add_command, noun


def register(subparsers: argparse._SubParsersAction) -> None:
    noun(subparsers, "images", "build the room's images locally (no registry)",
         "Images: the app's image and the sidecars' and stand-ins' images, built on this machine from "
         "their Containerfiles on a Debian base made with debootstrap; nothing is pulled from a registry.",
         verbs=_verbs)


def _verbs(sub: argparse._SubParsersAction) -> None:
    build = add_command(
        sub, "build", "sidecars.launcher.commands:images_build",
        "build app images from their Containerfiles and print their pinned references",
        description="Builds FOLDER/Containerfile (or images/FOLDER) on the Debian base image, which is "
                    "made with debootstrap on first use and cached. Prints REPO@sha256:DIGEST.")
    build.add_argument("folders", nargs="*", metavar="FOLDER")
    build.add_argument("--sidecars", action="store_true",
                       help="build the sidecar images localhost/ccr/ccr-runtime:0.1.0 and ccr-proxy:0.1.0 from this "
                            "checkout and its virtualenv (offline; the Debian base is made once and cached)")
    build.add_argument("--emulators", action="store_true",
                       help="build localhost/ccr/ccr-emulators:0.1.0: the stand-ins and Azurite, as services of "
                            "`ccr spec render compose`")
    build.add_argument("--pin", metavar="SPEC", help="rewrite the spec's application.image to the new digest")
