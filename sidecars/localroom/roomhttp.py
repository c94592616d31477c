"""HTTP requests to a sidecar listening on the room's own loopback, from the host.

The sidecars listen on 127.0.0.1 inside the room's network namespace, as they do in a container group.
`ccr room up`, `ccr room status` and `ccr room down` reach them by creating the connection's socket inside the netns
(the calling thread enters it just for `connect`) and speaking HTTP/1.1 over it from here.
"""

from __future__ import annotations

import http.client
import json
import socket
from dataclasses import dataclass
from typing import Any

from .netns import entered


@dataclass(frozen=True)
class RoomResponse:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def room_request(netns: str, port: int, method: str, path: str, *, body: Any = None,
                 timeout: float = 5.0) -> RoomResponse:
    """One request to 127.0.0.1:`port` inside `netns`; raises OSError if nothing answers."""
    with entered(netns):
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.sock = sock
    try:
        payload = None if body is None else json.dumps(body).encode()
        headers = {"content-type": "application/json"} if payload is not None else {}
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        return RoomResponse(response.status, response.read())
    finally:
        conn.close()


def room_status(netns: str, port: int, path: str = "/status", timeout: float = 2.0) -> RoomResponse | None:
    """The sidecar's status answer, or None if it does not answer (yet)."""
    try:
        return room_request(netns, port, "GET", path, timeout=timeout)
    except (OSError, http.client.HTTPException):
        return None
