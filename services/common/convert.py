"""Conversions between the proto messages and avaforge's dataclasses."""

from __future__ import annotations

from avaforge.storage import ArtifactRef
from avaforge.v1 import common_pb2


def ref_to_proto(ref: ArtifactRef) -> common_pb2.ArtifactRef:
    return common_pb2.ArtifactRef(bucket=ref.bucket, key=ref.key, digest=ref.digest, size=ref.size)


def ref_from_proto(msg: common_pb2.ArtifactRef) -> ArtifactRef:
    return ArtifactRef(msg.bucket, msg.key, msg.digest, msg.size)
