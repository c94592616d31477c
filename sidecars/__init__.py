"""ccr: the confidential clean room sidecar runtime."""

__version__ = "0.1.0"
