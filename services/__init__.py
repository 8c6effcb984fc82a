"""The avaforge services: thin gRPC / NATS adapters around the stage functions of ``avaforge.stages``."""
