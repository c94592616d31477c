"""Test-only: the CGS stand-in's record of what it received, for a whole demo run.

A test puts this directory first on PYTHONPATH and names a file in CCR_CONFORMANCE_WIRE_LOG; every Python
process of the run then imports this module at start (as `sitecustomize`), and only the CGS stand-in
(`python -m sidecars.emulators.cgs`) acts on it: when its `app` module is loaded, `build_app` is wrapped so the
app it builds appends one JSON line per request to the file — method, path, query, content type, the
Authorization scheme (never its value), whether a TLS client certificate was presented, and the status.
Nothing else is changed, and without the variable nothing happens at all. (It takes the place of Debian's
sitecustomize, which only installs the apport crash hook, for the processes of that run.)
"""

from __future__ import annotations

import os
import sys

_LOG = os.environ.get("CCR_CONFORMANCE_WIRE_LOG")
_APP_MODULE = "sidecars.emulators.cgs.app"

if _LOG and "sidecars.emulators.cgs" in getattr(sys, "orig_argv", ()):
    import importlib.abc  # only the stand-in that records needs these
    import importlib.util
    import json
    import threading

    _lock = threading.Lock()

    class _WireLog:
        """Pure ASGI middleware: records each HTTP request and the status it was answered with."""

        def __init__(self, app):
            self.app = app

        async def __call__(self, scope, receive, send):
            if scope["type"] != "http":
                return await self.app(scope, receive, send)
            answered: dict[str, int] = {}

            async def recording_send(message):
                if message["type"] == "http.response.start":
                    answered["status"] = message["status"]
                await send(message)

            try:
                await self.app(scope, receive, recording_send)
            finally:
                headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
                tls = (scope.get("extensions") or {}).get("tls") or {}
                record = {"method": scope["method"], "path": scope["path"],
                          "query": scope["query_string"].decode("latin-1"),
                          "content_type": headers.get("content-type", ""),
                          "authorization_scheme": headers.get("authorization", "").split(" ", 1)[0],
                          "client_cert": bool(tls.get("client_cert_chain")),
                          "status": answered.get("status")}
                with _lock, open(_LOG, "a") as log:
                    log.write(json.dumps(record) + "\n")

    class _WrapBuildApp(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name != _APP_MODULE:
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)
            if spec is None or spec.loader is None:
                return spec
            execute = spec.loader.exec_module

            def exec_module(module):
                execute(module)
                build_app = module.build_app

                def recorded_build_app(*args, **kwargs):
                    app = build_app(*args, **kwargs)
                    app.add_middleware(_WireLog)
                    return app

                module.build_app = recorded_build_app

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, _WrapBuildApp())
