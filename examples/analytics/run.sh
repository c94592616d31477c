#!/usr/bin/env bash
# The analytics clean room demo (`make demo-analytics`, root): see demo.py.
# Storage variants: --variant analytics (Azure Blob, CSE; the default) | analytics-s3 (woodgrove on S3, SSE) |
# analytics-sse (Azure Blob, SSE): `make demo-analytics VARIANT=analytics-s3`.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec .venv/bin/python examples/analytics/demo.py "$@"
