"""A cluster of rooms on one machine: the driver room and N executor rooms of one Spark standalone cluster,
joined by a room network, executors admitted by attestation (docs/analytics.md, "A cluster of rooms")."""
