"""Conversions between the proto messages and avaforge's dataclasses."""

from __future__ import annotations

from avaforge.stages.ingest import ClipInfo, ClipSpec
from avaforge.storage import ArtifactRef
from avaforge.v1 import common_pb2


def ref_to_proto(ref: ArtifactRef) -> common_pb2.ArtifactRef:
    return common_pb2.ArtifactRef(bucket=ref.bucket, key=ref.key, digest=ref.digest, size=ref.size)


def ref_from_proto(msg: common_pb2.ArtifactRef) -> ArtifactRef:
    return ArtifactRef(msg.bucket, msg.key, msg.digest, msg.size)


def clip_to_proto(clip: ClipInfo) -> common_pb2.Clip:
    return common_pb2.Clip(
        clip_id=clip.clip_id,
        video_id=clip.video_id,
        start_s=clip.start_s,
        length_s=clip.length_s,
        num_frames=clip.num_frames,
        width=clip.width,
        height=clip.height,
    )


def clip_from_proto(msg: common_pb2.Clip) -> ClipInfo:
    return ClipInfo(
        msg.clip_id, msg.video_id, "", msg.start_s, msg.length_s, msg.num_frames, msg.width, msg.height
    )


def clip_spec_to_proto(spec: ClipSpec) -> common_pb2.Clip:
    """A planned clip (not cut yet: no size, and its frame count is the plan's target)."""
    return common_pb2.Clip(
        clip_id=spec.clip_id,
        video_id=spec.video_id,
        start_s=spec.start_s,
        length_s=spec.length_s,
        num_frames=spec.target_frames,
    )
