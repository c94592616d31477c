"""Consent-gated, encrypted, audited export of the buffer to the telemetry and log sinks.

For each export, in this order: ask governance for the sink's consent option *now* (never cached); stop
if it is not enabled (nothing leaves); collect the records buffered since the last export; audit the
export (a failed audit write blocks it); encrypt each signal's records as one object in the volumes
format, bound to its place; upload. The cursor moves only once every object is uploaded, so a failed
export is retried whole by the next one.

Each object holds one OTLP Export*ServiceRequest (protobuf); records are merged by concatenating their
serializations, which protobuf defines as merging the repeated `resource_*` fields.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from azure.core.credentials import TokenCredential

from ..common.errors import NotFound, PolicyDenied
from ..common.governance_client import GovernanceClient
from ..common.objectformat import DataKey, encrypt
from .buffer import EncryptedBuffer
from .signals import Signal, SinkKind
from .sinks import BlobSink, Sink, SinkPlace

log = logging.getLogger(__name__)
OBJECT_SUFFIX = ".binpb"


@dataclass
class SinkConfig:
    """A sink and where its DEK comes from. `key_source` runs at the first export that has something to
    send (in a room: the release through skr, which may not be up when telemetry starts); its key is kept
    in memory from then on."""

    kind: SinkKind
    location: SinkPlace
    key_source: Callable[[], DataKey]
    interval_s: float | None = None
    #: the identity the sink's owner federated for the room (None: the exporter's default)
    credential: TokenCredential | None = None
    #: how to reach a sink that is not an Azure Blob container (S3): given the governance client, which
    #: releases a CGS secret only to the attested room (None: a Blob sink, reached with `credential`)
    connect: Callable[[GovernanceClient], Sink] | None = None
    _key: DataKey | None = field(default=None, repr=False)

    def key(self) -> DataKey:
        if self._key is None:
            self._key = self.key_source()
        return self._key


@dataclass
class ExportResult:
    sink: str
    objects: list[str] = field(default_factory=list)
    records: int = 0

    def to_json(self) -> dict:
        status = "exported" if self.objects else "nothing-new"
        return {"status": status, "sink": self.sink, "objects": self.objects, "records": self.records}


class Exporter:
    def __init__(self, buffer: EncryptedBuffer, governance: GovernanceClient, sinks: list[SinkConfig], *,
                 room: str, account_key: str | None = None, ca_bundle: str | None = None,
                 credential: TokenCredential | None = None):
        self.buffer = buffer
        self.governance = governance
        self.room = room
        self._sinks = {s.kind: s for s in sinks}
        self._storage = {"account_key": account_key, "ca_bundle": ca_bundle, "credential": credential}
        self._cursors = dict.fromkeys(SinkKind, 0)
        self._locks = {kind: threading.Lock() for kind in SinkKind}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def export(self, kind: SinkKind, trigger: str = "request") -> ExportResult:
        sink = self._sinks.get(kind)
        if sink is None:
            field_name = "telemetry_sink" if kind is SinkKind.TELEMETRY else "log_sink"
            raise NotFound(f"no {kind.value} sink is configured (spec.telemetry.{field_name})")
        with self._locks[kind]:
            consent = self.governance.consent_check(kind.value)
            if not consent.enabled:
                why = consent.reason_message or consent.reason_code
                raise PolicyDenied(f"{kind.value} export is disabled by governance" + (f": {why}" if why else ""))
            start, end = self._cursors[kind], len(self.buffer)
            payloads: dict[Signal, list[bytes]] = {}
            for signal, payload in self.buffer.read(kind.signals, start, end):
                payloads.setdefault(signal, []).append(payload)
            result = ExportResult(sink.location.describe())
            if not payloads:
                self._cursors[kind] = end
                return result
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
            named = {signal: f"{self.room}/{signal.folder}/{stamp}-{start:08d}-{end:08d}{OBJECT_SUFFIX}"
                     for signal in payloads}
            result.objects = list(named.values())
            result.records = sum(len(p) for p in payloads.values())
            key = sink.key()  # before the audit: an export that cannot encrypt is not recorded as one
            self.governance.audit({
                "step": "export", "option": kind.value, "trigger": trigger, "sink": result.sink,
                "objects": result.objects, "records": result.records, "timestamp": datetime.now(UTC).isoformat(),
            }, id=f"{self.room}-{kind.value}-export-{uuid.uuid4().hex[:12]}")
            target = sink.connect(self.governance) if sink.connect else BlobSink(
                sink.location, **{**self._storage, "credential": sink.credential or self._storage["credential"]})
            target.ensure_container()
            for signal, name in named.items():
                target.upload(name, encrypt(key, sink.location.object(name), b"".join(payloads[signal])))
            self._cursors[kind] = end
            log.info("exported %d %s records to %s: %s", result.records, kind.value, result.sink,
                     ", ".join(result.objects))
            return result

    def start_continuous(self) -> None:
        for sink in self._sinks.values():
            if sink.interval_s:
                thread = threading.Thread(target=self._every, args=(sink,), daemon=True,
                                          name=f"export-{sink.kind.value}")
                thread.start()
                self._threads.append(thread)

    def _every(self, sink: SinkConfig) -> None:
        assert sink.interval_s
        while not self._stop.wait(sink.interval_s):
            self._export_quietly(sink.kind, "interval")

    def _export_quietly(self, kind: SinkKind, trigger: str) -> None:
        try:
            self.export(kind, trigger)
        except PolicyDenied as exc:
            log.info("not exporting: %s", exc)
        except Exception as exc:  # keep exporting on the next tick; the error is logged, not lost
            log.warning("%s export failed: %s", kind.value, exc)

    def stop(self) -> None:
        """Stop the continuous exports, then export what is left, where consent allows (room shutdown)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        for kind in self._sinks:
            self._export_quietly(kind, "final")
