"""The telemetry sidecar: OTLP receiver (gRPC and HTTP), the app's output as log records, an
encrypted buffer whose key never leaves the room, consent-gated encrypted export to the spec's sinks, and
the party-side viewer (`ccr telemetry download|show`, `ccr logs download`).
"""
