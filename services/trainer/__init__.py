"""Trainer service: mmaction2 training jobs over gRPC, run by a JetStream worker; artifacts in S3."""
