"""The handler of `ccr images build` (registered in cli.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..common.errors import ConfigError
from .images import IMAGES_DIR, build_app_image, ensure_base_image, pin_image
from .sidecar_images import build_sidecar_images


def images_build(args: argparse.Namespace) -> int:
    if args.pin and len(args.folders) != 1:
        raise ConfigError("--pin needs exactly one image folder (the app the spec runs)")
    if not args.folders and not args.sidecars and not args.emulators:
        raise ConfigError("nothing to build: name an image folder, or pass --sidecars / --emulators")
    if args.sidecars or args.emulators:
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
