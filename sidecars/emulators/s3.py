"""`python -m sidecars.emulators.s3`: moto's server mode as the room's local S3 (and STS) service, over TLS.

moto (`moto[server]`) speaks the S3 REST API and STS, in memory. It is moto's own WSGI application served
here with werkzeug, as `moto_server` serves it, only bound first (port 0, so the port is known without a
race) and written to a ready file like the other stand-ins. Path-style addressing: the host is 127.0.0.1.

What it does not do, and so what a local test cannot prove: moto accepts any access key (it checks no
signature unless IAM enforcement is switched on, and then refuses unsigned AssumeRoleWithWebIdentity),
returns an SSE-C object without the customer key or with a wrong one, and does not verify the web identity
token of AssumeRoleWithWebIdentity. Only the real service enforces those (docs/storage.md).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

from ..common.process import write_ready_file

#: The region the stand-in's endpoints.json names (moto serves every region; a spec names one).
REGION = "us-east-1"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sidecars.emulators.s3", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="listen port; 0 picks a free one (default)")
    parser.add_argument("--cert", required=True, metavar="FILE", help="TLS certificate chain (PEM)")
    parser.add_argument("--key", required=True, metavar="FILE", help="TLS private key (PEM)")
    parser.add_argument("--ready-file", metavar="FILE",
                        help='written once listening: {"port": N, "url": "https://HOST:N", "region": REGION}')
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for path in (args.cert, args.key):
        if not Path(path).is_file():
            print(f"s3: error: {path}: no such file", file=sys.stderr)
            return 1
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server(args.host, args.port, app, threaded=True, ssl_context=(args.cert, args.key),
                         request_handler=MotoRequestHandler)
    port = server.server_port
    host = f"[{args.host}]" if ":" in args.host else args.host
    serving = threading.Thread(target=server.serve_forever, name="moto", daemon=True)
    serving.start()
    if args.ready_file:
        write_ready_file(args.ready_file, port, f"https://{host}:{port}", region=REGION)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
