"""Job settings and action lists to and from their proto messages (protos/avaforge/v1/settings.proto).

The settings messages mirror the dataclasses of avaforge.settings field by field (same names), so one
walk over ``dataclasses.fields`` converts every section: a nested dataclass is a sub-message, a ``Literal``
an enum (``CLIP_MODE_WINDOWS`` <-> ``"windows"``), a tuple of (start, length) pairs the repeated
ClipSegment, anything else an ``optional`` scalar. Writing sets every field, so reading it back gives an
equal object; reading leaves the Python default where a field is unset, so a partial message works like a
partial settings file. Errors are FormatErrors naming the field (``settings.detect.conf``).

The messages carry only what a job may choose: the deployment's fields (avaforge.settings.DEPLOYMENT_FIELDS)
have no proto field. Writing refuses settings that set one (the caller would believe it chose the model);
reading refuses a message with fields this contract does not know (an old client sending ``weights``), then
checks every type and range with avaforge.settings.check, the rules the YAML loader applies.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from functools import cache
from typing import Any

from google.protobuf.descriptor import EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.unknown_fields import UnknownFieldSet

from avaforge.formats.actions import ActionList
from avaforge.formats.errors import FormatError
from avaforge.settings import DEPLOYMENT_FIELDS, PipelineSettings, check
from avaforge.v1 import settings_pb2

# Which Python values a proto scalar type takes (bool is an int in Python, so it is excluded by hand).
_SCALARS: dict[int, tuple[type, ...]] = {
    FieldDescriptor.TYPE_DOUBLE: (int, float),
    FieldDescriptor.TYPE_INT32: (int,),
    FieldDescriptor.TYPE_INT64: (int,),
    FieldDescriptor.TYPE_BOOL: (bool,),
    FieldDescriptor.TYPE_STRING: (str,),
}


def settings_to_proto(settings: PipelineSettings, where: str = "settings") -> settings_pb2.JobSettings:
    defaults = PipelineSettings()
    for key in sorted(DEPLOYMENT_FIELDS):
        section, name = key.split(".")
        if getattr(getattr(settings, section), name) != getattr(getattr(defaults, section), name):
            raise FormatError(
                "set by the deployment, not by a job (model files, backend, addresses); remove it",
                f"{where}.{key}",
            )
    msg = settings_pb2.JobSettings()
    _fill(msg, settings, where)
    return msg


def settings_from_proto(msg: settings_pb2.JobSettings, where: str = "settings") -> PipelineSettings:
    """The job's settings (deployment fields at their defaults), types and ranges checked."""
    _refuse_unknown(msg, where)
    settings: PipelineSettings = _read(PipelineSettings, msg, where)
    check(settings, where)
    return settings


def _refuse_unknown(msg: Message, where: str) -> None:
    """Fields this contract does not define (a removed deployment field, or garbage) are an error, not
    silently dropped: the caller meant something by them."""
    unknown = UnknownFieldSet(msg)
    if len(unknown):
        numbers = sorted({f.field_number for f in unknown})
        raise FormatError(
            f"unknown field number(s) {numbers}: not a job setting (the deployment sets model files, "
            "backend and addresses)",
            where,
        )
    for field, value in msg.ListFields():
        if field.message_type is not None and not field.is_repeated:
            _refuse_unknown(value, f"{where}.{field.name}")


def actions_to_proto(actions: ActionList) -> settings_pb2.ActionList:
    return settings_pb2.ActionList(
        groups=[
            settings_pb2.ActionGroup(
                name=g.name,
                actions=[settings_pb2.Action(name=a.name, id=a.id) for a in g.actions],
                exclusive=g.exclusive,
            )
            for g in actions.groups
        ]
    )


def actions_from_proto(msg: settings_pb2.ActionList, where: str = "actions") -> ActionList:
    """Checked like an action list file: unique names, ids exactly 1..K (unset ids assigned in order)."""
    groups: dict[str, Any] = {}
    for i, group in enumerate(msg.groups):
        if group.name in groups:
            raise FormatError(f"group {group.name!r} appears twice", f"{where}.groups[{i}]")
        items = [
            {"name": a.name, "id": a.id} if a.HasField("id") else {"name": a.name} for a in group.actions
        ]
        groups[group.name] = {"exclusive": True, "actions": items} if group.exclusive else items
    return ActionList.from_obj({"groups": groups}, where)


def _fill(msg: Message, obj: Any, where: str) -> None:
    fields = msg.DESCRIPTOR.fields_by_name
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        value, at = getattr(obj, f.name), f"{where}.{f.name}"
        field = fields.get(f.name)
        if field is None:  # a deployment field: not part of a job's message
            continue
        if dataclasses.is_dataclass(value):
            _fill(getattr(msg, f.name), value, at)
        elif field.is_repeated:  # the (start, length) segments
            for i, seg in enumerate(_sequence(value, at)):
                start, length = _pair(seg, f"{at}[{i}]")
                getattr(msg, f.name).add(start_s=start, length_s=length)
        elif field.enum_type is not None:
            choices = typing.get_args(hints[f.name])
            if value not in choices:
                raise FormatError(f"must be one of {list(choices)}, got {value!r}", at)
            setattr(msg, f.name, _enum_number(field.enum_type, value))
        else:
            if not isinstance(value, _SCALARS[field.type]) or (
                isinstance(value, bool) and field.type != FieldDescriptor.TYPE_BOOL
            ):
                raise FormatError(f"expected {_kind(field)}, got {value!r}", at)
            try:
                setattr(msg, f.name, value)
            except ValueError as exc:  # an int out of the field's range
                raise FormatError(f"{value!r} does not fit: {exc}", at) from None


def _read(cls: type, msg: Message, where: str) -> Any:
    fields = msg.DESCRIPTOR.fields_by_name
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        field, at = fields.get(f.name), f"{where}.{f.name}"
        if field is None:  # a deployment field: its default here, the deployment's in the services
            continue
        value = getattr(msg, f.name)
        if field.is_repeated:  # the (start, length) segments
            kwargs[f.name] = tuple((s.start_s, s.length_s) for s in value)
        elif field.message_type is not None:
            kwargs[f.name] = _read(_hints(cls)[f.name], value, at)
        elif field.enum_type is not None:
            if value != 0:
                kwargs[f.name] = _enum_choice(field.enum_type, value, at)
        elif msg.HasField(f.name):
            kwargs[f.name] = value
    return cls(**kwargs)


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _prefix(enum: EnumDescriptor) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", enum.name).upper() + "_"


def _enum_number(enum: EnumDescriptor, choice: str) -> int:
    return enum.values_by_name[_prefix(enum) + choice.upper()].number


def _enum_choice(enum: EnumDescriptor, number: int, where: str) -> str:
    value = enum.values_by_number.get(number)
    if value is None:
        raise FormatError(f"unknown {enum.name} value {number}", where)
    return value.name.removeprefix(_prefix(enum)).lower()


def _sequence(value: Any, where: str) -> tuple[Any, ...]:
    if not isinstance(value, (tuple, list)):
        raise FormatError(f"expected a list of (start, length) pairs, got {value!r}", where)
    return tuple(value)


def _pair(seg: Any, where: str) -> tuple[float, float]:
    ok = isinstance(seg, (tuple, list)) and len(seg) == 2
    if not ok or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in seg):
        raise FormatError(f"expected a (start, length) pair of seconds, got {seg!r}", where)
    return seg[0], seg[1]


def _kind(field: FieldDescriptor) -> str:
    return {
        FieldDescriptor.TYPE_DOUBLE: "a number",
        FieldDescriptor.TYPE_BOOL: "true or false",
        FieldDescriptor.TYPE_STRING: "a string",
    }.get(field.type, "an integer")
