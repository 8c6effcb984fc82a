"""deploy/k8s against the code: every service deployed with its command, image, port and probes; addresses,
secrets, autoscaling references and network policies checked on the manifests kustomize really renders."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from avaforge import pipeline
from avaforge.queue import WORK_STREAM
from services.common import catalog

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ["dev", "gpu", "gpu-hpa"]
PREFIX = "avaforge-"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def _script(name: str):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


kv = _script("k8s_validate")


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {o: kv.render(K8S / "overlays" / o) for o in OVERLAYS}


def _get(resources: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]


def _subset(want: dict[str, str], have: dict[str, str]) -> bool:
    return all(have.get(k) == v for k, v in want.items())


# --- the validator and the generated manifest ------------------------------------------------------


def test_every_kustomization_renders_and_validates_strictly() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "k8s_validate.py"), "--json"], capture_output=True, text=True
    )
    report = json.loads(out.stdout)
    assert out.returncode == 0, out.stdout + out.stderr
    assert set(report) == {*kv.KUSTOMIZATIONS, "secrets", "pytorchjob"}
    for name, r in report.items():
        assert r["resources"] > 0 and r["problems"] == {}, name


def test_validator_rejects_unknown_fields_wrong_types_and_bad_keda(rendered) -> None:  # type: ignore[no-untyped-def]
    gpu = rendered["gpu"]
    dep = json.loads(json.dumps(_get(gpu, "Deployment", PREFIX + "gateway")))
    dep["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["exec"]["commandd"] = ["true"]
    assert any("'commandd' was unexpected" in e for e in kv.validate(dep))
    dep = json.loads(json.dumps(_get(gpu, "Deployment", PREFIX + "gateway")))
    dep["spec"]["replicas"] = "two"
    assert kv.validate(dep)
    so = json.loads(json.dumps(_get(gpu, "ScaledObject", PREFIX + "worker-detect")))
    assert kv.validate(so) == []
    so["spec"]["minReplicas"] = 1  # HPA's spelling, not KEDA's
    assert any("minReplicas" in e for e in kv.validate(so))
    so = json.loads(json.dumps(_get(gpu, "ScaledObject", PREFIX + "worker-detect")))
    del so["spec"]["triggers"][0]["metadata"]["consumer"]
    so["spec"]["triggers"][0]["metadata"]["lagThreshold"] = 8
    errors = kv.validate(so)
    assert any("consumer" in e for e in errors) and any("lagThreshold" in e for e in errors)


def test_base_services_manifest_is_generated_from_the_catalog() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "render_k8s_base.py"), "--check"])
    assert out.returncode == 0, "deploy/k8s/base/services.yaml is stale: make k8s-manifests"


# --- the catalog covers the code, the manifests follow the catalog -----------------------------------


def test_catalog_deploys_every_service_folder_and_stage() -> None:
    mains = {f"services.{p.parent.name}" for p in (ROOT / "services").glob("*/__main__.py")}
    apis = {d.args[0] for d in catalog.DEPLOYABLES if "work" not in d.args}
    assert mains == apis, "every service folder runs its API"
    stages = []  # each worker runs the stages it names, or (naming none) every stage of its service
    for d in catalog.DEPLOYABLES:
        if "work" in d.args:
            service = d.args[0].removeprefix("services.")
            handlers = importlib.import_module(f"services.{service}.handlers").HANDLERS
            assert set(d.args[2:]) <= set(handlers)
            stages += list(d.args[2:]) or list(handlers)
    expected = [s.name for s in pipeline.STAGES] + ["train"]  # training jobs: the trainer's own queue
    assert sorted(stages) == sorted(expected), "every stage has exactly one worker Deployment"
    for st in pipeline.STAGES:  # and the service that runs it is the one the pipeline names
        assert st.name in importlib.import_module(f"services.{st.service}.handlers").HANDLERS


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_has_deployment_service_probes_and_the_codes_port(overlay, rendered) -> None:  # type: ignore[no-untyped-def]
    res = rendered[overlay]
    images = {
        "cpu": f"avaforge-cpu:{VERSION}",
        "gpu": f"avaforge-gpu:{VERSION}",
    }
    for d in catalog.DEPLOYABLES:
        dep = _get(res, "Deployment", PREFIX + d.name)
        pod = dep["spec"]["template"]
        (c,) = pod["spec"]["containers"]
        assert c["command"] == d.command, d.name
        assert c["image"].endswith("/" + images[d.image]), (d.name, c["image"])
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["AVAFORGE_GRPC_PORT"] == str(d.grpc_port)
        assert _subset(d.env, env)
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports == {d.protocol: d.grpc_port, "metrics": catalog.METRICS_PORT}
        https = ["--https"] if d.protocol == "https" else []  # the workbench: GET /healthz over HTTPS
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):  # exec: TLS and the service token
            assert c[probe]["exec"]["command"] == [
                "python",
                "-m",
                "services.common.probe",
                *https,
                str(d.grpc_port),
            ], (d.name, probe)
        # TLS and tokens from the mounted Secret avaforge-auth; the service's own S3 key and NATS user
        service = d.args[0].split(".")[1]
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        assert volumes[mounts["/etc/avaforge/auth"]]["secret"]["secretName"] == "avaforge-auth"
        for key, file in (
            ("AVAFORGE_TLS_CERT", "tls.crt"),
            ("AVAFORGE_TLS_KEY", "tls.key"),
            ("AVAFORGE_TOKENS", "tokens.json"),
            ("AVAFORGE_TLS_CA", "ca.crt"),
            ("AVAFORGE_TOKEN_FILE", "service.token"),
        ):
            assert env[key] == f"/etc/avaforge/auth/{file}", (d.name, key)
        secrets = (e for e in c["env"] if "secretKeyRef" in e.get("valueFrom", {}))
        refs = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in secrets}
        assert refs == {
            "AVAFORGE_S3_ACCESS_KEY": f"avaforge-s3-{service}",
            "AVAFORGE_S3_SECRET_KEY": f"avaforge-s3-{service}",
            "AVAFORGE_NATS_PASSWORD": f"avaforge-nats-{service}",
        }, d.name
        assert env["AVAFORGE_NATS_USER"] == service
        assert c["resources"]["requests"] and c["resources"]["limits"]
        svc = _get(res, "Service", PREFIX + d.name)
        assert _subset(svc["spec"]["selector"], pod["metadata"]["labels"])
        assert {
            "name": d.protocol,
            "port": d.grpc_port,
            "targetPort": d.protocol,
            "appProtocol": d.protocol,
        } in svc["spec"]["ports"]
        pdb = _get(res, "PodDisruptionBudget", PREFIX + d.name)
        assert pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_meets_the_restricted_pod_security_standard(overlay, rendered) -> None:  # type: ignore[no-untyped-def]
    res = rendered[overlay]
    ns = _get(res, "Namespace", "avaforge")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    workloads = [r for r in res if r["kind"] in ("Deployment", "StatefulSet")]
    assert len(workloads) >= len(catalog.DEPLOYABLES) + 1
    for w in workloads:
        spec = w["spec"]["template"]["spec"]
        pod_sc = spec.get("securityContext", {})
        assert pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", w["metadata"]["name"]
        for c in spec.get("initContainers", []) + spec["containers"]:
            sc = {**pod_sc, **c.get("securityContext", {})}
            where = f"{w['metadata']['name']}/{c['name']}"
            assert sc.get("runAsNonRoot") and sc.get("runAsUser", 0) > 0, where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert c.get("resources", {}).get("limits"), where


@pytest.mark.parametrize(("overlay", "flavor"), [("dev", "cpu"), ("gpu", "gpu"), ("gpu-hpa", "gpu")])
def test_triton_gets_its_model_repository_from_the_image(overlay, flavor, rendered) -> None:  # type: ignore[no-untyped-def]
    spec = _get(rendered[overlay], "Deployment", PREFIX + "triton")["spec"]["template"]["spec"]
    (init,) = spec["initContainers"]
    assert init["image"].endswith(f"/avaforge-cpu:{VERSION}")
    config = init["command"][-2]
    # docker/*.Dockerfile: COPY deploy/triton /opt/avaforge/triton
    assert config == f"/opt/avaforge/triton/{flavor}/person_detector/config.pbtxt"
    assert (ROOT / "deploy" / "triton" / config.removeprefix("/opt/avaforge/triton/")).is_file()
    (triton,) = spec["containers"]
    assert "--model-repository=/models" in triton["command"]
    gpus = triton["resources"]["limits"].get("nvidia.com/gpu")
    assert gpus == ("1" if flavor == "gpu" else None)
    assert _settings(rendered[overlay])["AVAFORGE_TRITON_URL"] == f"{PREFIX}triton:8001"


# --- addresses, secrets, images ---------------------------------------------------------------------


def _settings_configmap(res: list[dict[str, Any]]) -> dict[str, Any]:
    (cm,) = [
        r for r in res if r["kind"] == "ConfigMap" and r["metadata"]["name"].startswith(PREFIX + "settings")
    ]
    return cm


def _settings(res: list[dict[str, Any]]) -> dict[str, str]:
    return _settings_configmap(res)["data"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_addresses_in_the_settings_point_at_rendered_services(overlay, rendered) -> None:  # type: ignore[no-untyped-def]
    res = rendered[overlay]
    data = _settings(res)
    services = {r["metadata"]["name"]: r for r in res if r["kind"] == "Service"}
    external = yaml.safe_load_all((K8S / "external" / "networkpolicies.yaml").read_text())
    external_ns = {p["metadata"]["namespace"] for p in external}
    for key in ("AVAFORGE_NATS_URL", "AVAFORGE_S3_ENDPOINT", "AVAFORGE_TRITON_URL"):
        scheme, _, address = data[key].rpartition("://")
        assert scheme == {"AVAFORGE_NATS_URL": "tls", "AVAFORGE_S3_ENDPOINT": "https"}.get(key, ""), key
        host, port = address.rsplit(":", 1)
        if "." in host:  # another namespace: an upstream chart's Service, fenced by deploy/k8s/external
            name, namespace = host.split(".")[:2]
            assert host == f"{name}.{namespace}.svc.cluster.local" and namespace in external_ns, key
            assert overlay != "dev", "dev runs NATS and MinIO in its own namespace"
        else:
            assert host in services, f"{key}={data[key]}: no Service {host}"
            assert int(port) in [p["port"] for p in services[host]["spec"]["ports"]], key
    assert data["AVAFORGE_DETECT_BACKEND"] == "triton"
    # every pod gets the settings and the S3 credentials from the one Secret the operator creates
    for d in catalog.DEPLOYABLES:
        (c,) = _get(res, "Deployment", PREFIX + d.name)["spec"]["template"]["spec"]["containers"]
        assert c["envFrom"] == [{"configMapRef": {"name": _settings_configmap(res)["metadata"]["name"]}}]


def test_no_secret_in_the_repository_carries_a_value(rendered) -> None:  # type: ignore[no-untyped-def]
    for res in rendered.values():
        assert not [r for r in res if r["kind"] == "Secret"], "overlays must not render Secrets"
    secrets = []
    for path in K8S.rglob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "Secret":
                secrets.append(doc)
                values = {**doc.get("stringData", {}), **doc.get("data", {})}
                assert values and all(v.startswith("${") and v.endswith("}") for v in values.values()), path
    templates = {(s["metadata"]["name"], k) for s in secrets for k in s["stringData"]}
    assert ("avaforge-auth", "tokens.json") in templates
    for res in rendered.values():
        refs = [
            e["valueFrom"]["secretKeyRef"]
            for r in res
            if r["kind"] in ("Deployment", "StatefulSet")
            for c in r["spec"]["template"]["spec"]["containers"]
            for e in c.get("env", [])
            if "secretKeyRef" in e.get("valueFrom", {})
        ]
        assert refs and {(r["name"], r["key"]) for r in refs} <= templates
        # no avaforge pod gets MinIO's root user
        assert not [
            r
            for r in res
            if r["kind"] == "Deployment"
            for c in r["spec"]["template"]["spec"]["containers"]
            for e in c.get("env", [])
            if e.get("valueFrom", {}).get("secretKeyRef", {}).get("name") == "avaforge-s3-root"
        ]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_tagged_with_the_package_version(overlay) -> None:  # type: ignore[no-untyped-def]
    kustomization = yaml.safe_load((K8S / "overlays" / overlay / "kustomization.yaml").read_text())
    tags = {i["name"]: i["newTag"] for i in kustomization["images"]}
    assert tags == {"avaforge-cpu": VERSION, "avaforge-gpu": VERSION}


# --- autoscaling --------------------------------------------------------------------------------------


def _scale_targets(res: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(autoscaler, target) pairs whose target Deployment is missing from the render."""
    deployments = {r["metadata"]["name"] for r in res if r["kind"] == "Deployment"}
    scalers = [r for r in res if r["kind"] in ("ScaledObject", "HorizontalPodAutoscaler")]
    assert scalers
    return [
        (s["metadata"]["name"], s["spec"]["scaleTargetRef"]["name"])
        for s in scalers
        if s["spec"]["scaleTargetRef"]["name"] not in deployments
    ]


def test_keda_scales_the_detector_workers_on_the_codes_stream_and_consumer(rendered) -> None:  # type: ignore[no-untyped-def]
    so = _get(rendered["gpu"], "ScaledObject", PREFIX + "worker-detect")
    assert so["spec"]["scaleTargetRef"]["name"] == PREFIX + "worker-detect"
    (trigger,) = so["spec"]["triggers"]
    assert trigger["type"] == "nats-jetstream"
    assert trigger["metadata"]["stream"] == WORK_STREAM
    detect_worker = catalog.by_name("worker-detect")
    consumer = trigger["metadata"]["consumer"]  # the durable consumer is the stage name
    assert detect_worker.args[0] == f"services.{pipeline.stage(consumer).service}"
    host = trigger["metadata"]["natsServerMonitoringEndpoint"].split(":")[0]
    nats_url_host = _settings(rendered["gpu"])["AVAFORGE_NATS_URL"].split("://")[-1].split(":")[0]
    assert host == nats_url_host
    assert not [r for r in rendered["gpu-hpa"] if r["kind"] == "ScaledObject"]
    hpa = _get(rendered["gpu-hpa"], "HorizontalPodAutoscaler", PREFIX + "worker-detect")
    assert hpa["spec"]["scaleTargetRef"]["name"] == PREFIX + "worker-detect"


def _outer(tmp: Path, overlay_dir: Path, prefix: str) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "kustomization.yaml").write_text(
        yaml.safe_dump({"resources": [os.path.relpath(overlay_dir, tmp)], "namePrefix": prefix})
    )
    return tmp


@pytest.mark.parametrize("overlay", ["gpu", "gpu-hpa"])
def test_scale_targets_follow_name_prefixes_at_every_level(overlay, rendered, tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert _scale_targets(rendered[overlay]) == []
    # a team re-prefixing our overlay in its own kustomization
    res = kv.render(_outer(tmp_path / "team", K8S / "overlays" / overlay, "team-a-"))
    assert _scale_targets(res) == []
    kind = "ScaledObject" if overlay == "gpu" else "HorizontalPodAutoscaler"
    assert _get(res, kind, "team-a-" + PREFIX + "worker-detect")["spec"]["scaleTargetRef"]["name"] == (
        "team-a-" + PREFIX + "worker-detect"
    )


def test_without_the_name_reference_configuration_the_scaled_object_would_miss(tmp_path) -> None:
    """The control for the test above: kustomize alone leaves scaleTargetRef behind the prefix."""
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy)
    keda = copy / "components" / "keda" / "kustomization.yaml"
    k = yaml.safe_load(keda.read_text())
    del k["configurations"]
    keda.write_text(yaml.safe_dump(k))
    assert _scale_targets(kv.render(copy / "overlays" / "gpu")) == [
        (PREFIX + "worker-detect", "worker-detect")
    ]


# --- network policies, evaluated ----------------------------------------------------------------------

OUTSIDE = ("other-namespace", {"app": "anything"})


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return _subset(selector.get("matchLabels", {}), labels)


def _allowed(
    res: list[dict[str, Any]], source: tuple[str, dict[str, str]], dest: dict[str, str], port: int
) -> bool:
    """Whether ``source`` (namespace, pod labels) may open ``port`` on a pod labelled ``dest`` in the
    avaforge namespace, by the NetworkPolicy semantics: unselected pods accept all; selected pods accept what
    some rule allows."""
    namespace, labels = source
    policies = [
        p
        for p in res
        if p["kind"] == "NetworkPolicy"
        and "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
        and _selects(p["spec"]["podSelector"], dest)
    ]
    if not policies:
        return True
    for p in policies:
        for rule in p["spec"].get("ingress", []):
            ports = [x["port"] for x in rule.get("ports", [])]
            if ports and port not in ports:
                continue
            peers = rule.get("from")
            if peers is None:
                return True
            for peer in peers:
                ns_sel, pod_sel = peer.get("namespaceSelector"), peer.get("podSelector")
                ns_ok = (
                    _selects(ns_sel, {"kubernetes.io/metadata.name": namespace})
                    if ns_sel is not None
                    else namespace == "avaforge"
                )
                if ns_ok and (pod_sel is None or _selects(pod_sel, labels)):
                    return True
    return False


def _pod_labels(res: list[dict[str, Any]], name: str) -> dict[str, str]:
    for r in res:
        if r["kind"] in ("Deployment", "StatefulSet") and r["metadata"]["name"] == name:
            return r["spec"]["template"]["metadata"]["labels"]
    raise KeyError(name)


def test_network_policies_open_only_the_gateway_and_fence_nats_s3_triton(rendered) -> None:  # type: ignore[no-untyped-def]
    res = rendered["dev"]
    inside_stranger = ("avaforge", {"app": "debug-shell"})
    doors = {"gateway", "annotate"}  # the gRPC gateway and the workbench's HTTPS
    for d in catalog.DEPLOYABLES:
        labels = _pod_labels(res, PREFIX + d.name)
        open_outside = _allowed(res, OUTSIDE, labels, d.grpc_port)
        assert open_outside == (d.name in doors), d.name
        assert _allowed(res, inside_stranger, labels, d.grpc_port) == (d.name in doors), d.name
        assert _allowed(res, ("avaforge", _pod_labels(res, PREFIX + "gateway")), labels, d.grpc_port)
    nats, minio, triton = (_pod_labels(res, PREFIX + n) for n in ("nats", "minio", "triton"))
    ingest_worker = ("avaforge", _pod_labels(res, PREFIX + "worker-ingest"))
    detect_worker = ("avaforge", _pod_labels(res, PREFIX + "worker-detect"))
    # the servers' own client ports, which the settings' addresses use: NATS 4222, MinIO (S3) 9000, Triton
    # gRPC 8001
    for source in (OUTSIDE, inside_stranger):
        assert not _allowed(res, source, nats, 4222)
        assert not _allowed(res, source, minio, 9000)
        assert not _allowed(res, source, triton, 8001)
    assert _allowed(res, ingest_worker, nats, 4222) and _allowed(res, ingest_worker, minio, 9000)
    assert not _allowed(res, ingest_worker, triton, 8001), "only detector pods reach Triton"
    assert _allowed(res, detect_worker, triton, 8001)
    assert _allowed(res, ("avaforge", _pod_labels(res, PREFIX + "detector")), triton, 8001)
    assert _allowed(res, ("monitoring", {"app": "prometheus"}), labels, catalog.METRICS_PORT)


# --- thread budgets, Triton's own autoscaling ---------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_thread_budget_follows_its_cpu_limit(overlay, rendered) -> None:  # type: ignore[no-untyped-def]
    res = rendered[overlay]
    for d in (r for r in res if r["kind"] == "Deployment" and r["metadata"]["name"] != PREFIX + "triton"):
        for c in d["spec"]["template"]["spec"]["containers"]:
            env = {e["name"]: e for e in c["env"]}
            # services/common/threads.py reads it; the downward API gives this container's own limit
            ref = env["AVAFORGE_CPU_LIMIT_MILLI"]["valueFrom"]["resourceFieldRef"]
            assert ref == {"resource": "limits.cpu", "divisor": "1m"}, d["metadata"]["name"]
            assert c["resources"]["limits"]["cpu"]


@pytest.mark.parametrize("overlay", ["gpu", "gpu-hpa"])
def test_triton_scales_on_the_metric_prometheus_adapter_serves(overlay, rendered) -> None:  # type: ignore[no-untyped-def]
    hpa = _get(rendered[overlay], "HorizontalPodAutoscaler", PREFIX + "triton")
    assert hpa["spec"]["scaleTargetRef"]["name"] == PREFIX + "triton"
    (metric,) = hpa["spec"]["metrics"]
    rules = yaml.safe_load((K8S / "external" / "prometheus-adapter-values.yaml").read_text())["rules"]
    served = {r["name"]["as"]: r for r in rules["custom"]}
    rule = served[metric["pods"]["metric"]["name"]]
    # Triton's own counters (tritonserver 2.51 /metrics), queue over compute time
    assert "nv_inference_queue_duration_us" in rule["metricsQuery"]
    assert "nv_inference_compute_infer_duration_us" in rule["metricsQuery"]
    assert not [r for r in rendered["dev"] if r["kind"] == "HorizontalPodAutoscaler"]  # no adapter assumed


def test_the_annotate_pod_reaches_only_nats_s3_and_dns(rendered) -> None:  # type: ignore[no-untyped-def]
    for res in rendered.values():
        labels = _pod_labels(res, PREFIX + "annotate")
        egress = [
            p
            for p in res
            if p["kind"] == "NetworkPolicy"
            and "Egress" in p["spec"].get("policyTypes", [])
            and _selects(p["spec"]["podSelector"], labels)
        ]
        assert egress, "the annotate pod has an egress policy"
        ports = {(x["port"], x["protocol"]) for p in egress for r in p["spec"]["egress"] for x in r["ports"]}
        assert ports == {(4222, "TCP"), (9000, "TCP"), (53, "UDP"), (53, "TCP")}
        others = [d for d in catalog.DEPLOYABLES if d.name != "annotate"]
        for d in others:  # the other pods keep their egress open (NATS, S3, Triton, one another)
            assert not any(
                "Egress" in p["spec"].get("policyTypes", [])
                and _selects(p["spec"]["podSelector"], _pod_labels(res, PREFIX + d.name))
                for p in res
                if p["kind"] == "NetworkPolicy"
            ), d.name
