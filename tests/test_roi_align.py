"""The mmcv-lite RoIAlign adapter against an independent implementation of mmcv's RoIAlign semantics."""

import math

import pytest
import torch

from avaforge.compat.mmcv_ext import install


def _bilinear(feat: torch.Tensor, y: float, x: float) -> torch.Tensor:
    """mmcv's bilinear_interpolate (roi_align CPU kernel) for one point of a (C, H, W) map."""
    _, height, width = feat.shape
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return feat.new_zeros(feat.shape[0])
    y, x = max(y, 0.0), max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_high = y_low = height - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_high = x_low = width - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1 - ly, 1 - lx
    return (
        hy * hx * feat[:, y_low, x_low]
        + hy * lx * feat[:, y_low, x_high]
        + ly * hx * feat[:, y_high, x_low]
        + ly * lx * feat[:, y_high, x_high]
    )


def reference_roi_align(feats, rois, out_hw, spatial_scale, sampling_ratio, aligned=True):  # type: ignore[no-untyped-def]
    """Average-pooled RoIAlign as mmcv's kernel defines it (half-pixel offset when aligned)."""
    ph_n, pw_n = out_hw
    offset = 0.5 if aligned else 0.0
    outs = []
    for roi in rois:
        b = int(roi[0])
        x1, y1, x2, y2 = (float(v) * spatial_scale - offset for v in roi[1:])
        rw, rh = x2 - x1, y2 - y1
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bh, bw = rh / ph_n, rw / pw_n
        gh = sampling_ratio if sampling_ratio > 0 else math.ceil(rh / ph_n)
        gw = sampling_ratio if sampling_ratio > 0 else math.ceil(rw / pw_n)
        count = max(gh * gw, 1)
        cells = []
        for ph in range(ph_n):
            for pw in range(pw_n):
                acc = feats.new_zeros(feats.shape[1])
                for iy in range(gh):
                    for ix in range(gw):
                        y = y1 + ph * bh + (iy + 0.5) * bh / gh
                        x = x1 + pw * bw + (ix + 0.5) * bw / gw
                        acc = acc + _bilinear(feats[b], y, x)
                cells.append(acc / count)
        outs.append(torch.stack(cells, dim=1).reshape(feats.shape[1], ph_n, pw_n))
    return torch.stack(outs)


@pytest.mark.parametrize("sampling_ratio", [2, 0])
def test_adapter_matches_mmcv_semantics_forward_and_backward(sampling_ratio: int) -> None:
    install()
    from mmcv.ops import RoIAlign

    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 3, 11, 13, generator=gen, dtype=torch.float64)
    rois = torch.tensor(
        [
            [0, 1.3, 2.2, 17.9, 14.1],
            [1, 0.0, 0.0, 25.0, 21.0],
            [1, 10.4, 3.3, 13.0, 9.9],
            [0, -3.0, 5.0, 8.0, 30.0],
        ],
        dtype=torch.float64,
    )
    layer = RoIAlign((3, 4), spatial_scale=0.5, sampling_ratio=sampling_ratio, pool_mode="avg", aligned=True)
    a = feats.clone().requires_grad_(True)
    out = layer(a, rois)
    b = feats.clone().requires_grad_(True)
    ref = reference_roi_align(b, rois, (3, 4), 0.5, sampling_ratio)
    # float64 on both sides: only the order of the sums differs, so agreement is far below 1e-9
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-9)
    weights = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    (out * weights).sum().backward()
    (ref * weights).sum().backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-9, atol=1e-9)


def test_other_mmcv_ops_fail_clearly() -> None:
    install()
    import mmcv._ext as ext

    with pytest.raises(NotImplementedError, match="'nms' needs full mmcv"):
        ext.nms(torch.zeros(1, 4), torch.zeros(1), 0.5)
    from mmcv.ops import RoIAlign

    with pytest.raises(NotImplementedError, match="pool_mode='max'"):
        RoIAlign((2, 2), pool_mode="max")(torch.zeros(1, 1, 4, 4), torch.tensor([[0.0, 0, 0, 2, 2]]))
