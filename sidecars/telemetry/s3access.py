"""Reaching an S3 telemetry or log sink from the room: a boto3 client signed with the credentials the sink's
store names, obtained only through the governance sidecar, so only by the attested room with consent
(`sidecars.common.s3_credentials`, which the volumes use too):

- `secret`: the CGS secret holding {"access_key_id", "secret_access_key"}, which the store's owner set;
- `role_arn`: a role assumed with the room's federated identity token (AssumeRoleWithWebIdentity), so no
  long-lived key exists.

The key pair lives in this process's memory only: never in the environment, a file, or a log line (an error
names the secret, never its value).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..common.governance_client import GovernanceClient
from ..common.s3_clients import resolved, s3_client
from ..common.s3_credentials import S3KeyPair, room_credentials
from ..spec import S3Store
from .sinks import S3Sink, S3SinkLocation

#: an assumed role's credentials last an hour by default: renewed well before that
ROLE_CREDENTIALS_REUSE_S = 45 * 60.0


def s3_location(store: S3Store) -> S3SinkLocation:
    return S3SinkLocation(store.endpoint_url, store.region, store.bucket, store.prefix, store.addressing)


def connector(store: S3Store, *, ca_bundle: str | None = None) -> Callable[[GovernanceClient], S3Sink]:
    """What the exporter calls at each export that has something to send: credentials are fetched then
    (the room may not be attested yet when telemetry starts) and kept (a role's, until it nears expiry)."""
    cached: list[tuple[S3KeyPair, float]] = []

    def connect(governance: GovernanceClient) -> S3Sink:
        stale = cached and store.credentials.role_arn is not None and \
            time.monotonic() - cached[0][1] > ROLE_CREDENTIALS_REUSE_S
        if not cached or stale:
            signing = resolved(room_credentials(store, governance), store, ca_bundle=ca_bundle)
            assert signing is not None
            cached[:] = [(signing, time.monotonic())]
        return S3Sink(s3_location(store), s3_client(store, cached[0][0], ca_bundle=ca_bundle))

    return connect
