"""The gRPC contract: compiles, lints clean (naming, documentation), and the generated stubs import."""

import re
import subprocess
import sys
from pathlib import Path

from google.protobuf import descriptor_pb2

PROTOS = Path(__file__).resolve().parents[1] / "protos"
PASCAL = re.compile(r"[A-Z][A-Za-z0-9]*")
SNAKE = re.compile(r"[a-z][a-z0-9_]*")
UPPER = re.compile(r"[A-Z][A-Z0-9_]*")


def _descriptors(tmp: Path) -> descriptor_pb2.FileDescriptorSet:
    out = tmp / "set.pb"
    files = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTOS}",
            "--include_source_info",
            f"--descriptor_set_out={out}",
            *files,
        ],
        check=True,
    )
    fds = descriptor_pb2.FileDescriptorSet()
    fds.ParseFromString(out.read_bytes())
    return fds


def _lint(fd: descriptor_pb2.FileDescriptorProto) -> list[str]:
    """buf-style rules: naming, enum zero values, and a leading comment on every element."""
    documented = {tuple(loc.path) for loc in fd.source_code_info.location if loc.leading_comments.strip()}
    problems = []

    def need_doc(path: tuple[int, ...], what: str) -> None:
        if path not in documented:
            problems.append(f"{fd.name}: {what} has no comment")

    if fd.package != "avaforge.v1" or not fd.name.startswith("avaforge/v1/"):
        problems.append(f"{fd.name}: package {fd.package} must be avaforge.v1 under avaforge/v1/")
    for i, msg in enumerate(fd.message_type):
        need_doc((4, i), f"message {msg.name}")
        if not PASCAL.fullmatch(msg.name):
            problems.append(f"{fd.name}: message {msg.name} is not PascalCase")
        for j, field in enumerate(msg.field):
            need_doc((4, i, 2, j), f"field {msg.name}.{field.name}")
            if not SNAKE.fullmatch(field.name):
                problems.append(f"{fd.name}: field {msg.name}.{field.name} is not snake_case")
    for i, enum in enumerate(fd.enum_type):
        need_doc((5, i), f"enum {enum.name}")
        prefix = re.sub(r"(?<!^)(?=[A-Z])", "_", enum.name).upper() + "_"
        if enum.value[0].name != prefix + "UNSPECIFIED" or enum.value[0].number != 0:
            problems.append(f"{fd.name}: enum {enum.name} must start with {prefix}UNSPECIFIED = 0")
        for j, value in enumerate(enum.value):
            need_doc((5, i, 2, j), f"enum value {value.name}")
            if not (UPPER.fullmatch(value.name) and value.name.startswith(prefix)):
                problems.append(
                    f"{fd.name}: enum value {value.name} must be UPPER_SNAKE with prefix {prefix}"
                )
    for i, service in enumerate(fd.service):
        need_doc((6, i), f"service {service.name}")
        if not (PASCAL.fullmatch(service.name) and service.name.endswith("Service")):
            problems.append(f"{fd.name}: service {service.name} must be PascalCase ending in Service")
        for j, method in enumerate(service.method):
            need_doc((6, i, 2, j), f"rpc {service.name}.{method.name}")
            if not PASCAL.fullmatch(method.name):
                problems.append(f"{fd.name}: rpc {method.name} is not PascalCase")
    return problems


def test_protos_lint_clean(tmp_path: Path) -> None:
    fds = _descriptors(tmp_path)
    assert {fd.name for fd in fds.file} == {
        "avaforge/v1/common.proto",
        "avaforge/v1/stages.proto",
        "avaforge/v1/gateway.proto",
        "avaforge/v1/settings.proto",
    }
    problems = [p for fd in fds.file for p in _lint(fd)]
    assert problems == []


def test_linter_catches_violations(tmp_path: Path) -> None:
    bad = descriptor_pb2.FileDescriptorProto(name="avaforge/v1/bad.proto", package="avaforge.v1")
    msg = bad.message_type.add(name="bad_message")
    msg.field.add(name="BadField", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING)
    enum = bad.enum_type.add(name="Color")
    enum.value.add(name="RED", number=0)
    problems = _lint(bad)
    assert any("not PascalCase" in p for p in problems) and any("not snake_case" in p for p in problems)
    assert any("COLOR_UNSPECIFIED" in p for p in problems) and any("has no comment" in p for p in problems)


def test_generated_stubs_match_the_contract() -> None:
    from avaforge.v1 import common_pb2, gateway_pb2_grpc, stages_pb2_grpc

    # wire numbers are the contract: clients and stored job states hold 4, so renumbering would break them
    assert common_pb2.JobState.Name(4) == "JOB_STATE_SUCCEEDED"
    assert hasattr(gateway_pb2_grpc, "GatewayServiceStub") and hasattr(
        stages_pb2_grpc, "DetectorServiceServicer"
    )
    ref = common_pb2.ArtifactRef(bucket="b", key="k", digest="d" * 64, size=3)
    assert common_pb2.ArtifactRef.FromString(ref.SerializeToString()) == ref
