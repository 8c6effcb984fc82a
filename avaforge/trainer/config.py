"""mmaction2 configs that are right by construction for an avaforge dataset.

Derived from the dataset, never hand-edited: ``timestamp_start=0``, ``timestamp_end`` = the longest clip in
seconds, ``fps=30``, ``start_index=1``, ``filename_tmpl='img_{:05}.jpg'``, ``num_classes = K + 1``,
``topk`` valid for K, ``custom_classes`` only for a real subset, ``person_det_score_thr`` from the proposals
(the lowest score among proposals that match a ground-truth box, so none of those is dropped), no pretrained
weights unless given (offline default), ``persistent_workers`` only with workers. The file is a plain
mmaction2 config; ``custom_imports`` loads avaforge's plugin (mmcv-lite RoIAlign adapter, AVA metric).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from avaforge.dataset_layout import SPLITS, DatasetLayout
from avaforge.formats.ava_csv import read_rows
from avaforge.formats.errors import FormatError
from avaforge.formats.pbtxt import read_pbtxt
from avaforge.formats.proposals import read_proposals
from avaforge.formats.timeline import FPS, RAWFRAME_TEMPLATE
from avaforge.tracking.metrics import iou_matrix

if TYPE_CHECKING:
    from mmengine.config import Config

MEAN, STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]


@dataclass(frozen=True)
class Preset:
    name: str
    backbone: dict[str, Any]
    in_channels: int
    clip_len: int
    frame_interval: int
    short_side: int
    batch_size: int
    lr: float
    optimizer: str = "SGD"


def _slowonly(**overrides: Any) -> dict[str, Any]:
    """mmaction2's AVA SlowOnly backbone (4 stages, no temporal stride, last stage spatial stride 1)."""
    return dict(
        type="mmaction.ResNet3dSlowOnly",
        pretrained=None,
        pretrained2d=False,
        lateral=False,
        num_stages=4,
        conv1_kernel=(1, 7, 7),
        conv1_stride_t=1,
        pool1_stride_t=1,
        spatial_strides=(1, 2, 2, 1),
        **overrides,
    )


PRESETS = {
    # The seed's choice: SlowFast R50, 32 frames at interval 2 (fast) / 4 frames (slow).
    "slowfast_r50": Preset(
        "slowfast_r50",
        dict(
            type="mmaction.ResNet3dSlowFast",
            pretrained=None,
            resample_rate=8,
            speed_ratio=8,
            channel_ratio=8,
            slow_pathway=dict(
                type="resnet3d",
                depth=50,
                pretrained=None,
                lateral=True,
                conv1_kernel=(1, 7, 7),
                dilations=(1, 1, 1, 1),
                conv1_stride_t=1,
                pool1_stride_t=1,
                inflate=(0, 0, 1, 1),
                spatial_strides=(1, 2, 2, 1),
            ),
            fast_pathway=dict(
                type="resnet3d",
                depth=50,
                pretrained=None,
                lateral=False,
                base_channels=8,
                conv1_kernel=(5, 7, 7),
                conv1_stride_t=1,
                pool1_stride_t=1,
                spatial_strides=(1, 2, 2, 1),
            ),
        ),
        in_channels=2304,
        clip_len=32,
        frame_interval=2,
        short_side=256,
        batch_size=8,
        lr=0.0125,
    ),
    "slowonly_r50": Preset(
        "slowonly_r50",
        _slowonly(depth=50),
        in_channels=2048,
        clip_len=4,
        frame_interval=16,
        short_side=256,
        batch_size=8,
        lr=0.0125,
    ),
    # For CPU smoke runs and learning checks: ResNet3d-18 at 1/4 width on 128-pixel frames.
    "tiny": Preset(
        "tiny",
        _slowonly(depth=18, base_channels=16),
        in_channels=128,
        clip_len=4,
        frame_interval=16,
        short_side=128,
        batch_size=4,
        lr=0.002,
        optimizer="AdamW",
    ),
}


@dataclass(frozen=True)
class DatasetFacts:
    num_actions: int
    action_ids: list[int]
    timestamp_end: int
    person_det_score_thr: float


def dataset_facts(dataset: str | Path) -> DatasetFacts:
    layout = DatasetLayout(Path(dataset))
    ids = sorted(i for i, _ in read_pbtxt(layout.action_list))
    if ids != list(range(1, len(ids) + 1)):
        raise FormatError(f"action ids {ids} are not 1..K", str(layout.action_list))
    frames = [len(list(d.iterdir())) for d in layout.rawframes.iterdir() if d.is_dir()]
    if not frames:
        raise FormatError("no rawframes", str(layout.rawframes))
    matched: list[float] = []
    all_scores: list[float] = []
    for split in SPLITS:
        props = read_proposals(layout.proposals(split))
        for arr in props.values():
            all_scores.extend(arr[:, 4].tolist())
        gt: dict[str, list[tuple[float, ...]]] = {}
        for r in read_rows(layout.csv(split)):
            gt.setdefault(r.key, []).append(r.box)
        for key, boxes in gt.items():
            arr = props.get(key)
            if arr is None or not len(arr):
                continue
            ious = iou_matrix(arr[:, :4], np.array(boxes))
            matched.extend(arr[ious.max(axis=1) >= 0.5, 4].tolist())
    source = matched or all_scores or [0.5]
    thr = math.floor(min(source) * 100) / 100
    return DatasetFacts(len(ids), ids, math.ceil(max(frames) / FPS), min(max(thr, 0.0), 0.9))


def topk_for(k: int) -> tuple[int, ...]:
    """mmaction2 asserts every topk < num_classes (= K + 1); AVA's default is (3, 5)."""
    return tuple(sorted({min(3, k), min(5, k)}))


def build_config(
    dataset: str | Path,
    preset: str,
    work_dir: str | Path,
    *,
    iters: int = 2000,
    val_interval: int | None = None,
    batch_size: int | None = None,
    workers: int = 0,
    lr: float | None = None,
    classes: list[int] | None = None,
    pretrained: str | None = None,
    load_from: str | None = None,
    seed: int = 0,
    processes: int = 1,
    checkpoint_interval: int | None = None,
) -> Config:
    """``batch_size`` is the global batch; with ``processes`` > 1 (DDP) each process loads
    batch_size / processes of it, so the optimisation does not change with the process count."""
    if preset not in PRESETS:
        raise FormatError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}", "train")
    p = PRESETS[preset]
    layout = DatasetLayout(Path(dataset).resolve())
    facts = dataset_facts(layout.root)
    custom = sorted(classes) if classes and sorted(classes) != facts.action_ids else None
    if custom and not set(custom) <= set(facts.action_ids):
        raise FormatError(
            f"classes {custom} are not all in the dataset's actions {facts.action_ids}", "train"
        )
    k = len(custom) if custom else facts.num_actions
    bs = batch_size or p.batch_size
    if processes < 1 or bs % processes:
        raise FormatError(
            f"the batch size {bs} does not split evenly over {processes} processes "
            "(the batch size is the global batch)",
            "train",
        )
    val_interval = val_interval or iters
    work_dir = str(Path(work_dir).resolve())

    def dataset_cfg(split: str, pipeline: list[dict], test_mode: bool) -> dict:
        cfg = dict(
            type="AVADataset",
            ann_file=str(layout.csv(split)),
            exclude_file=str(layout.excluded(split)),
            label_file=str(layout.action_list),
            proposal_file=str(layout.proposals(split)),
            data_prefix=dict(img=str(layout.rawframes)),
            pipeline=pipeline,
            filename_tmpl="img_{:05}.jpg",
            start_index=1,
            fps=FPS,
            timestamp_start=0,
            timestamp_end=facts.timestamp_end,
            person_det_score_thr=facts.person_det_score_thr,
            num_classes=k + 1,
            test_mode=test_mode,
        )
        if custom:
            cfg["custom_classes"] = custom
        return cfg

    assert RAWFRAME_TEMPLATE == "img_{:05d}.jpg"  # what filename_tmpl 'img_{:05}.jpg' formats to
    s = p.short_side
    train_pipeline = [
        dict(type="SampleAVAFrames", clip_len=p.clip_len, frame_interval=p.frame_interval),
        dict(type="RawFrameDecode"),
        dict(type="RandomRescale", scale_range=(s, s * 5 // 4)),
        dict(type="RandomCrop", size=s),
        dict(type="Flip", flip_ratio=0.5),
        dict(type="FormatShape", input_format="NCTHW", collapse=True),
        dict(type="PackActionInputs"),
    ]
    val_pipeline = [
        dict(type="SampleAVAFrames", clip_len=p.clip_len, frame_interval=p.frame_interval, test_mode=True),
        dict(type="RawFrameDecode"),
        dict(type="Resize", scale=(-1, s)),
        dict(type="FormatShape", input_format="NCTHW", collapse=True),
        dict(type="PackActionInputs"),
    ]

    def loader(split: str, pipeline: list[dict], test_mode: bool, batch: int) -> dict:
        ds = dataset_cfg(split, pipeline, test_mode)
        if not test_mode:
            # mmengine's iteration loop sleeps 2 s at every epoch boundary; on a small dataset that is most
            # of the time. Repeat the dataset so one epoch covers the whole run (at the global batch: the
            # sampler splits the epoch over the processes; the same length gives the same shuffle for any N).
            keyframes = len({r.key for r in read_rows(layout.csv(split))}) or 1
            ds = dict(type="RepeatDataset", times=max(1, math.ceil(iters * bs / keyframes)), dataset=ds)
        return dict(
            batch_size=batch,
            num_workers=workers,
            persistent_workers=workers > 0,
            sampler=dict(type="DefaultSampler", shuffle=not test_mode),
            dataset=ds,
        )

    def evaluator(split: str, prefix: str) -> dict:
        ev = dict(
            type="AvaforgeAVAMetric",
            ann_file=str(layout.csv(split)),
            label_file=str(layout.action_list),
            exclude_file=str(layout.excluded(split)),
            num_classes=k + 1,
            out_dir=work_dir,
            prefix=prefix,
        )
        if custom:
            ev["custom_classes"] = custom
        return ev

    model = dict(
        type="FastRCNN",
        _scope_="mmdet",
        init_cfg=dict(type="Pretrained", checkpoint=pretrained) if pretrained else None,
        backbone=p.backbone,
        roi_head=dict(
            type="AVARoIHead",
            bbox_roi_extractor=dict(
                type="SingleRoIExtractor3D", roi_layer_type="RoIAlign", output_size=8, with_temporal_pool=True
            ),
            bbox_head=dict(
                type="BBoxHeadAVA",
                background_class=True,
                in_channels=p.in_channels,
                num_classes=k + 1,
                multilabel=True,
                dropout_ratio=0.5,
                topk=topk_for(k),
            ),
        ),
        data_preprocessor=dict(
            type="mmaction.ActionDataPreprocessor", mean=MEAN, std=STD, format_shape="NCTHW"
        ),
        train_cfg=dict(
            rcnn=dict(
                assigner=dict(type="MaxIoUAssignerAVA", pos_iou_thr=0.9, neg_iou_thr=0.9, min_pos_iou=0.9),
                sampler=dict(
                    type="RandomSampler", num=32, pos_fraction=1, neg_pos_ub=-1, add_gt_as_proposals=True
                ),
                pos_weight=1.0,
            )
        ),
        test_cfg=dict(rcnn=None),
    )
    base_lr = lr if lr is not None else p.lr
    optimizer = (
        dict(type="AdamW", lr=base_lr, weight_decay=1e-4)
        if p.optimizer == "AdamW"
        else dict(type="SGD", lr=base_lr, momentum=0.9, weight_decay=1e-5)
    )
    warmup = max(1, min(iters // 10, 200))
    cfg = dict(
        custom_imports=dict(imports=["avaforge.trainer.plugin"], allow_failed_imports=False),
        default_scope="mmaction",
        model=model,
        train_dataloader=loader("train", train_pipeline, False, bs // processes),
        val_dataloader=loader("val", val_pipeline, True, 1),
        test_dataloader=loader("val", val_pipeline, True, 1),
        val_evaluator=evaluator("val", "val"),
        test_evaluator=evaluator("val", "val"),
        train_cfg=dict(type="IterBasedTrainLoop", max_iters=iters, val_interval=val_interval),
        val_cfg=dict(type="ValLoop"),
        test_cfg=dict(type="TestLoop"),
        param_scheduler=[
            dict(type="LinearLR", start_factor=0.1, by_epoch=False, begin=0, end=warmup),
            dict(
                type="CosineAnnealingLR", by_epoch=False, begin=warmup, end=max(iters, warmup + 1), eta_min=0
            ),
        ],
        optim_wrapper=dict(optimizer=optimizer, clip_grad=dict(max_norm=40, norm_type=2)),
        default_hooks=dict(
            runtime_info=dict(type="RuntimeInfoHook"),
            timer=dict(type="IterTimerHook"),
            logger=dict(type="LoggerHook", interval=max(1, min(20, iters // 10)), ignore_last=False),
            param_scheduler=dict(type="ParamSchedulerHook"),
            checkpoint=dict(
                type="CheckpointHook",
                interval=checkpoint_interval or val_interval,
                by_epoch=False,
                max_keep_ckpts=2,
                save_last=True,
            ),
            sampler_seed=dict(type="DistSamplerSeedHook"),
        ),
        env_cfg=dict(
            cudnn_benchmark=False,
            mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
            dist_cfg=dict(backend="nccl"),
        ),
        log_processor=dict(type="LogProcessor", window_size=20, by_epoch=False),
        vis_backends=[dict(type="LocalVisBackend")],
        visualizer=dict(type="ActionVisualizer", vis_backends=[dict(type="LocalVisBackend")]),
        log_level="INFO",
        load_from=load_from,
        resume=False,
        randomness=dict(seed=seed, deterministic=False),
        work_dir=work_dir,
        avaforge=dict(
            preset=p.name,
            global_batch=bs,
            processes=processes,
            dataset=str(layout.root),
            actions=k,
            person_det_score_thr=facts.person_det_score_thr,
            timestamp_end=facts.timestamp_end,
        ),
    )
    from mmengine.config import Config  # lazy: the light services read PRESETS without the mm stack

    return Config(cfg)


def write_config(cfg: Config, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg.dump(str(path))
    return path
