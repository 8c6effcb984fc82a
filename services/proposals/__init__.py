"""Proposals: mmaction2's dense proposals of a clip's keyframes from its detections."""
