"""Party side: fetch a sink's objects, verify and decrypt every one, and only then write them out.

A single object that fails verification (tampered, truncated, moved from another place, or under another
key) refuses the whole download, naming the object: a partial view could hide exactly what was removed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path, PurePosixPath

from ..common.errors import ConfigError
from ..common.objectformat import DataKey, TamperedObject, decrypt
from .sinks import BlobSink, Sink, SinkPlace


class DownloadRefused(TamperedObject):
    """At least one exported object failed verification; nothing was written."""


def download_sink(location: SinkPlace, key: DataKey, out_dir: str | Path, *, prefix: str = "",
                  account_key: str | None = None, ca_bundle: str | None = None,
                  progress: Callable[[str], None] = lambda _msg: None, sink: Sink | None = None) -> list[Path]:
    """`sink`: how to reach `location` when it is not a Blob container (an S3 bucket's client)."""
    sink = sink or BlobSink(location, account_key=account_key, ca_bundle=ca_bundle)  # type: ignore[arg-type]
    names = sorted(sink.names(prefix))
    if not names:
        raise ConfigError(f"no objects in {location.describe()}" + (f" under {prefix!r}" if prefix else "")
                          + ": nothing was exported (is the consent option enabled?)")
    clear: dict[str, bytes] = {}
    failed: list[str] = []
    for number, name in enumerate(names, start=1):
        progress(f"[{number}/{len(names)}] {name}")
        try:
            clear[name] = decrypt(key, location.object(name), sink.download(name))
        except TamperedObject:
            failed.append(name)
    if failed:
        raise DownloadRefused(
            f"refused: {len(failed)} of {len(names)} objects failed verification (tampered, moved or under "
            f"another key): {', '.join(failed)}")
    out = Path(out_dir)
    written = []
    for name, data in clear.items():
        relative = PurePosixPath(name)
        if relative.is_absolute() or ".." in relative.parts:
            raise DownloadRefused(f"refused: object name {name!r} escapes the output folder")
        path = out.joinpath(*relative.parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written.append(path)
    return written
