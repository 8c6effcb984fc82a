"""Job settings and action lists through their proto messages: every field survives the round trip (so the
services get the very settings the embedded runner gets), unset fields mean defaults, and bad values are
FormatErrors that name the field. The deployment's fields (model files, backend, addresses) are not on the
wire: settings that set one are refused on the way out."""

import dataclasses
import typing
from typing import Any

import pytest
from google.protobuf.descriptor import Descriptor

from avaforge.formats.actions import ActionList
from avaforge.formats.errors import FormatError
from avaforge.proto_convert import (
    actions_from_proto,
    actions_to_proto,
    settings_from_proto,
    settings_to_proto,
)
from avaforge.settings import (
    DEPLOYMENT_FIELDS,
    AutolabelSettings,
    ClipPlan,
    CutSettings,
    DatasetSettings,
    DetectSettings,
    FrameSettings,
    ImportSettings,
    PipelineSettings,
    ProposalSettings,
    ScheduleSettings,
    TrackSettings,
    ViaSettings,
    digest,
    job_part,
)
from avaforge.v1 import settings_pb2

# Every field away from its default (checked below), with values a proto could get wrong: a seed above
# 2**32, a float that is not a round binary fraction, a non-default None-able string.
NON_DEFAULT = PipelineSettings(
    cut=CutSettings(
        plan=ClipPlan(mode="explicit", window_s=7.5, min_clip_s=0.3, segments=((0.0, 5.0), (12.1, 3.5))),
        crf=23,
        preset="veryfast",
    ),
    schedule=ScheduleSettings(margin_start_s=0.0, margin_end_s=1.1),
    frames=FrameSettings(jpeg_qscale=5),
    detect=DetectSettings(
        backend="triton",
        weights="yolo11s.pt",
        precision="fp32",
        imgsz=1280,
        auto_size=False,
        min_person_px=80.5,
        max_imgsz=1600,
        probe_frames=3,
        probe_max_imgsz=1024,
        conf=0.3,
        iou=0.55,
        max_det=50,
        tracking_fps=7.5,
        batch=16,
        triton_url="triton:8001",
        triton_model="yolo",
        triton_version="2",
    ),
    track=TrackSettings(
        max_age_s=2.0, n_init=5, max_iou_distance=0.7, max_cosine_distance=0.2, embedder="torch"
    ),
    proposals=ProposalSettings(min_score=0.0),
    via=ViaSettings(min_score=0.6),
    imports=ImportSettings(match_iou=0.3, propagate=True),
    dataset=DatasetSettings(val_ratio=0.5, seed=2**40 + 1),
    autolabel=AutolabelSettings(walk_speed=0.5, walk_action="run", still_action="sit"),
)


def _leaves(obj: Any, where: str = "settings") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out.update(_leaves(value, f"{where}.{f.name}"))
        else:
            out[f"{where}.{f.name}"] = value
    return out


def test_the_table_sets_every_field_away_from_its_default() -> None:
    defaults, table = _leaves(PipelineSettings()), _leaves(NON_DEFAULT)
    assert set(defaults) == set(table)
    assert [k for k in defaults if defaults[k] == table[k]] == []


@pytest.mark.parametrize(
    "settings", [PipelineSettings(), job_part(NON_DEFAULT)], ids=["defaults", "non_default"]
)
def test_settings_round_trip_exactly(settings: PipelineSettings) -> None:
    wire = settings_pb2.JobSettings.FromString(settings_to_proto(settings).SerializeToString())
    back = settings_from_proto(wire)
    assert back == settings
    assert digest(back) == digest(settings)  # the same artifact keys as the embedded runner's
    assert _leaves(back) == _leaves(settings) and [type(v) for v in _leaves(back).values()] == [
        type(v) for v in _leaves(settings).values()
    ]


def _choice_fields() -> list[tuple[str, str, str]]:
    """(section, field, choice) for every Literal field of the settings."""
    out = []
    for section in dataclasses.fields(PipelineSettings):
        cls = typing.get_type_hints(PipelineSettings)[section.name]
        for owner, name in [(cls, f.name) for f in dataclasses.fields(cls)] + (
            [(ClipPlan, f.name) for f in dataclasses.fields(ClipPlan)] if cls is CutSettings else []
        ):
            hint = typing.get_type_hints(owner)[name]
            if (
                typing.get_origin(hint) is typing.Literal
                and f"{section.name}.{name}" not in DEPLOYMENT_FIELDS
            ):
                out += [(section.name, name, choice) for choice in typing.get_args(hint)]
    return out


@pytest.mark.parametrize(("section", "name", "choice"), _choice_fields())
def test_every_choice_has_an_enum_value(section: str, name: str, choice: str) -> None:
    base = getattr(PipelineSettings(), section)
    if name == "mode":
        value = dataclasses.replace(base, plan=dataclasses.replace(base.plan, mode=choice))
    else:
        value = dataclasses.replace(base, **{name: choice})
    settings = dataclasses.replace(PipelineSettings(), **{section: value})
    assert settings_from_proto(settings_to_proto(settings)) == settings


def test_the_messages_mirror_the_dataclasses_field_by_field() -> None:
    """A settings field added without its proto field (or the other way round) fails here."""

    def check(cls: type, desc: Descriptor, path: str = "") -> None:
        job_fields = [f for f in dataclasses.fields(cls) if f"{path}{f.name}" not in DEPLOYMENT_FIELDS]
        assert [f.name for f in job_fields] == sorted(
            desc.fields_by_name, key=lambda n: desc.fields_by_name[n].number
        ), cls
        hints = typing.get_type_hints(cls)
        for f in job_fields:
            field = desc.fields_by_name[f.name]
            if dataclasses.is_dataclass(hints[f.name]):
                check(hints[f.name], field.message_type, f"{path}{f.name}.")
            elif typing.get_origin(hints[f.name]) is typing.Literal:
                values = [v.name for v in field.enum_type.values if v.number]
                assert len(values) == len(typing.get_args(hints[f.name])), f.name
            elif not field.is_repeated:
                assert field.has_presence, f"{cls.__name__}.{f.name} must be optional: unset means default"

    check(PipelineSettings, settings_pb2.JobSettings.DESCRIPTOR)


def test_unset_fields_take_their_defaults_and_zero_is_not_unset() -> None:
    assert settings_from_proto(settings_pb2.JobSettings()) == PipelineSettings()
    partial = settings_pb2.JobSettings(
        proposals=settings_pb2.ProposalSettings(min_score=0.0),
        schedule=settings_pb2.ScheduleSettings(margin_end_s=0.0),
    )
    assert settings_from_proto(partial) == PipelineSettings(
        proposals=ProposalSettings(min_score=0.0), schedule=ScheduleSettings(margin_end_s=0.0)
    )


def test_settings_from_a_file_with_whole_numbers_still_compare_equal() -> None:
    loaded = PipelineSettings.from_dict(
        {"imports": {"match_iou": 1}, "cut": {"plan": {"segments": [[0, 4]]}}}
    )
    assert settings_from_proto(settings_to_proto(loaded)) == loaded


@pytest.mark.parametrize(
    ("settings", "where", "message"),
    [
        (
            PipelineSettings(detect=DetectSettings(backend="tensorrt")),
            "settings.detect.backend",
            "set by the deployment",
        ),
        (
            PipelineSettings(detect=DetectSettings(weights="/tmp/evil.pt")),
            "settings.detect.weights",
            "set by the deployment",
        ),
        (PipelineSettings(detect=DetectSettings(conf="high")), "settings.detect.conf", "expected a number"),
        (PipelineSettings(cut=CutSettings(crf=True)), "settings.cut.crf", "expected an integer"),
        (PipelineSettings(cut=CutSettings(crf=2**40)), "settings.cut.crf", "does not fit"),
        (PipelineSettings(frames=FrameSettings(jpeg_qscale=None)), "settings.frames.jpeg_qscale", "got None"),
        (
            PipelineSettings(imports=ImportSettings(propagate=1)),
            "settings.imports.propagate",
            "true or false",
        ),
        (
            PipelineSettings(cut=CutSettings(plan=ClipPlan(segments=((1.0, 2.0), (3.0,))))),
            "settings.cut.plan.segments[1]",
            "(start, length) pair",
        ),
    ],
)
def test_bad_settings_name_the_field(settings: PipelineSettings, where: str, message: str) -> None:
    with pytest.raises(FormatError) as exc:
        settings_to_proto(settings)
    assert exc.value.where == where and message in exc.value.message


def test_an_unknown_enum_number_names_the_field() -> None:
    msg = settings_pb2.JobSettings(cut=settings_pb2.CutSettings(plan=settings_pb2.ClipPlan(mode=9)))
    with pytest.raises(FormatError) as exc:
        settings_from_proto(msg)
    assert exc.value.where == "settings.cut.plan.mode" and "unknown ClipMode value 9" in exc.value.message


ACTIONS = {
    "groups": {
        "body": {"exclusive": True, "actions": ["stand", {"name": "sit", "id": 5}, "walk"]},
        "head": ["talk", "hand up"],
    }
}


def test_actions_round_trip_exactly() -> None:
    actions = ActionList.from_obj(ACTIONS)
    wire = settings_pb2.ActionList.FromString(actions_to_proto(actions).SerializeToString())
    back = actions_from_proto(wire)
    assert back == actions and back.to_dict() == actions.to_dict()
    assert [g.exclusive for g in back.groups] == [True, False]
    # ids as the file gives them: pinned sit=5, the rest 1..4 in order of appearance
    assert back.pbtxt_items() == [(1, "stand"), (2, "walk"), (3, "talk"), (4, "hand up"), (5, "sit")]


def test_unset_action_ids_are_assigned_like_a_file() -> None:
    msg = settings_pb2.ActionList(
        groups=[
            settings_pb2.ActionGroup(
                name="body",
                actions=[settings_pb2.Action(name="stand"), settings_pb2.Action(name="sit", id=1)],
            )
        ]
    )
    assert actions_from_proto(msg) == ActionList.from_obj(
        {"groups": {"body": ["stand", {"name": "sit", "id": 1}]}}
    )


@pytest.mark.parametrize(
    ("groups", "where", "message"),
    [
        ([], "actions", "'groups' must be a non-empty"),
        ([("a", [("x", 1)]), ("a", [("y", 2)])], "actions.groups[1]", "appears twice"),
        ([("a", [("x", 1), ("y", 3)])], "actions", "ids must be exactly 1..2"),
        ([("a", [("x", 1)]), ("b", [("x", 2)])], "actions", "repeated: ['x']"),
        ([("a", [])], "actions: group 'a'", "non-empty list"),
        ([("a", [("x", 0)])], "actions: group 'a'", "integer >= 1"),
    ],
)
def test_bad_action_lists_name_the_place(groups: list[Any], where: str, message: str) -> None:
    msg = settings_pb2.ActionList(
        groups=[
            settings_pb2.ActionGroup(name=g, actions=[settings_pb2.Action(name=n, id=i) for n, i in acts])
            for g, acts in groups
        ]
    )
    with pytest.raises(FormatError) as exc:
        actions_from_proto(msg)
    assert exc.value.where == where and message in exc.value.message
