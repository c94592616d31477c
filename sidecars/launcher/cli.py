"""`ccr images …`: build the room's images locally and pin their digests in a spec."""

from __future__ import annotations

import argparse
from pathlib import Path


def _cmd_images_build(args: argparse.Namespace) -> int:
    from ..common.errors import ConfigError
    from .images import IMAGES_DIR, build_app_image, ensure_base_image, pin_image

    if args.pin and len(args.folders) != 1:
        raise ConfigError("--pin needs exactly one image folder (the app the spec runs)")
    if not args.folders and not args.sidecars and not args.emulators:
        raise ConfigError("nothing to build: name an image folder, or pass --sidecars / --emulators")
    if args.sidecars or args.emulators:
        from .sidecar_images import build_sidecar_images

        for built in build_sidecar_images(sidecars=args.sidecars, emulators=args.emulators):
            print(built.tag_ref)
    if not args.folders:
        return 0
    ensure_base_image()
    for folder in args.folders:
        context = Path(folder)
        if not context.is_dir() and (IMAGES_DIR / folder).is_dir():
            context = IMAGES_DIR / folder
        built = build_app_image(context)
        print(built.pinned_ref)
        if args.pin:
            changed = pin_image(Path(args.pin), built.pinned_ref)
            print(f"{args.pin}: application.image {'pinned to' if changed else 'already'} {built.pinned_ref}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    images = sub.add_parser("images", help="build the room's images locally (no registry)")
    images_sub = images.add_subparsers(dest="images_command", metavar="SUBCOMMAND", required=True)
    build = images_sub.add_parser(
        "build", help="build app images from their Containerfiles and print their pinned references",
        description="Builds FOLDER/Containerfile (or images/FOLDER) on the Debian base image, which is "
                    "made with debootstrap on first use and cached. Prints REPO@sha256:DIGEST.")
    build.add_argument("folders", nargs="*", metavar="FOLDER")
    build.add_argument("--sidecars", action="store_true",
                       help="build the sidecar images localhost/ccr/ccr-runtime:0.1.0 and ccr-proxy:0.1.0 from this "
                            "checkout and its virtualenv (offline; the Debian base is made once and cached)")
    build.add_argument("--emulators", action="store_true",
                       help="build localhost/ccr/ccr-emulators:0.1.0: the stand-ins and Azurite, as services of "
                            "`ccr render compose`")
    build.add_argument("--pin", metavar="SPEC", help="rewrite the spec's application.image to the new digest")
    build.set_defaults(func=_cmd_images_build)
