"""The handlers of `ccr data publish|download` (registered in cli.py)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ..cliargs import spec_variables
from ..common import objectformat as fmt
from ..common.azure_clients import account_name_of, container_client, default_credential, secret_client
from ..common.deks import Kek, default_dek_file, load_dek_file, unwrap_dek
from ..common.errors import ConfigError
from ..common.keyflow import read_wrapped
from ..spec import EncryptionMode, load_spec
from . import owner
from .owner import kek_from_vault
from .store import Volume


@dataclass
class Target:
    storage_url: str
    container: str
    mode: EncryptionMode
    vault_url: str | None
    secret: str | None
    kek_name: str | None
    ca_bundle: str | None
    dev_tokens_dir: str | None = None

    def credential(self):
        return default_credential(dev_tokens_dir=self.dev_tokens_dir, subject="data-owner")

    def secrets(self):
        if not self.vault_url:
            raise ConfigError("missing --vault-url (or keyvault_url in --endpoints)")
        return secret_client(self.vault_url, ca_bundle=self.ca_bundle, credential=self.credential())


def _resolve(args: argparse.Namespace) -> Target:
    variables = spec_variables(args)
    storage_url = args.storage_url
    container = args.container
    mode = args.mode
    vault_url = args.vault_url
    secret = args.secret
    kek_name = None
    if args.spec:
        if not args.volume:
            raise ConfigError("--spec needs --volume NAME (which datasource/datasink)")
        spec = load_spec(args.spec, variables=variables)
        try:
            volume = spec.volume(args.volume)
        except KeyError:
            names = [v.name for _, v in spec.volumes_with_location()]
            raise ConfigError(f"no volume {args.volume!r} in {args.spec}; it has: {', '.join(names)}") from None
        storage_url = storage_url or str(volume.store.account_url)
        container = container or volume.store.container
        mode = mode or volume.encryption.mode
        if volume.encryption.key:
            vault_url = vault_url or volume.encryption.key.dek_vault_url
            secret = secret or volume.encryption.key.dek_secret_name
            kek_name = volume.encryption.key.kek_name
    storage_url = storage_url or variables.get("storage_url")
    vault_url = vault_url or variables.get("keyvault_url")
    missing = [flag for flag, value in (("--storage-url", storage_url), ("--container", container)) if not value]
    mode = mode or EncryptionMode.CSE
    if mode is not EncryptionMode.SSE and not secret:
        missing.append("--secret")
    if missing:
        raise ConfigError(f"missing {', '.join(missing)} (or --spec SPEC --volume NAME, --endpoints FILE)")
    return Target(storage_url, container, mode, vault_url, secret, kek_name,
                  args.ca_bundle or variables.get("ca_bundle"), variables.get("dev_tokens_dir"))


def _progress(total: int, what: str):
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=what, file=sys.stderr,
                disable=None, leave=False)


def _load_kek(arg: str | None, target: Target):
    """--kek: a JWK or PEM file, a Key Vault key URL, or (no flag) the spec's kek_name in its vault."""
    if arg and not arg.startswith("https://"):
        return Kek.from_file(Path(arg))
    if arg:
        vault, _, rest = arg.partition("/keys/")
        name, _, version = rest.partition("/")
    else:
        vault, name, version = target.vault_url or "", target.kek_name or "", ""
    if not vault or not name:
        raise ConfigError("--kek is needed (a JWK/PEM file or a Key Vault key URL)")
    return kek_from_vault(vault, name, version or None, credential=target.credential(), ca_bundle=target.ca_bundle)


def _volume_for(target: Target, account_key: str | None, dek):
    container = container_client(target.storage_url, target.container, ca_bundle=target.ca_bundle,
                                 account_key=account_key)
    return Volume(container, target.mode, dek)


def publish(args: argparse.Namespace) -> int:
    target = _resolve(args)
    files = owner.files_to_publish(args.dir)
    mode = target.mode
    dek = None
    if mode is not EncryptionMode.SSE:
        kek = _load_kek(args.kek, target)
        dek_file = args.dek_file or default_dek_file(account_name_of(target.storage_url), target.container)
        choice = owner.ensure_dek(secrets=target.secrets(),
                                  secret_name=target.secret, kek=kek, dek_file=dek_file, mode=mode)
        dek = choice.dek
        print(f"DEK {dek.fingerprint} {'created' if choice.created else 'reused'}; local copy {dek_file}; "
              f"wrapped with {kek.kid} ({kek.algorithm}) in secret {target.secret}", file=sys.stderr)
    volume = _volume_for(target, args.account_key, dek)
    owner.ensure_container(volume.container)
    total = sum(p.stat().st_size for p in files)
    with _progress(total, f"publish {target.container}") as bar:
        for path in files:
            name = owner.blob_name_for(args.dir, path)
            bar.set_postfix_str(name[-40:], refresh=False)
            owner.publish_file(volume, path, name, bar.update)
    print(f"published {len(files)} file(s), {total} bytes, to {target.container} ({mode.value})")
    return 0


def download(args: argparse.Namespace) -> int:
    target = _resolve(args)
    mode = target.mode
    dek = None
    if mode is not EncryptionMode.SSE:
        dek_file = args.dek_file or default_dek_file(account_name_of(target.storage_url), target.container)
        if dek_file.exists():
            dek = load_dek_file(dek_file)
        elif args.kek and target.vault_url:
            stored = read_wrapped(target.secrets(), target.secret)
            if stored is None:
                raise ConfigError(f"secret {target.secret} does not exist in {target.vault_url}")
            dek = unwrap_dek(stored, _load_kek(args.kek, target))
        else:
            raise ConfigError(f"no DEK: {dek_file} does not exist; pass --dek-file, or --kek PRIVATE_KEY_FILE")
    volume = _volume_for(target, args.account_key, dek)
    objects = list(volume.list_objects(args.prefix))
    failures = []
    with _progress(sum(o.plaintext_size for o in objects), f"download {target.container}") as bar:
        for info in objects:
            try:
                dest = owner.safe_target(args.output, info.name)
                owner.download_object(volume, info.name, info.stored_size, dest, bar.update)
            except (fmt.TamperedObject, ConfigError, OSError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                failures.append(f"{info.name}: {reason}")
                print(f"ccr: error: {info.name}: {reason} (nothing written)", file=sys.stderr)
    print(json.dumps({"downloaded": len(objects) - len(failures), "failed": len(failures)}))
    if failures:
        raise owner.DownloadFailed(f"{len(failures)} object(s) failed verification; see above")
    return 0
