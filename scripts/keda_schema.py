"""Regenerate deploy/k8s/schemas/keda-scaledobject-v1alpha1.json from KEDA's ScaledObject CRD.

    kubectl get crd scaledobjects.keda.sh -o yaml > crd.yaml   # or KEDA's config/crd/bases/ file
    .venv/bin/python scripts/keda_schema.py crd.yaml "where the CRD came from"

The CRD's openAPIV3Schema becomes a draft-07 JSON schema: x-kubernetes-* extensions dropped, unknown fields
rejected (what kubernetes-validate --strict does for built-in kinds), status dropped (the controller writes
it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

OUT = Path(__file__).resolve().parents[1] / "deploy" / "k8s" / "schemas" / "keda-scaledobject-v1alpha1.json"


def strict(node: Any) -> None:
    if isinstance(node, dict):
        for key in [k for k in node if k.startswith("x-kubernetes-")]:
            node.pop(key)
        if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            strict(value)
    elif isinstance(node, list):
        for value in node:
            strict(value)


def convert(crd: dict[str, Any], source: str) -> dict[str, Any]:
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    schema = version["schema"]["openAPIV3Schema"]
    strict(schema)
    schema["properties"].pop("status", None)
    schema["properties"]["metadata"] = {"type": "object"}
    schema["properties"]["apiVersion"] = {"const": "keda.sh/v1alpha1"}
    schema["properties"]["kind"] = {"const": "ScaledObject"}
    schema["required"] = ["apiVersion", "kind", "metadata", "spec"]
    comment = (
        f"KEDA ScaledObject keda.sh/v1alpha1: the openAPIV3Schema of {source}, converted by "
        "scripts/keda_schema.py (x-kubernetes-* dropped, unknown fields rejected, status dropped)."
    )
    return {"$schema": "http://json-schema.org/draft-07/schema#", "$comment": comment, **schema}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    crd = yaml.safe_load(Path(argv[0]).read_text())
    OUT.write_text(json.dumps(convert(crd, argv[1]), indent=1, sort_keys=True) + "\n")
    print(OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
