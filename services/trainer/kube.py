"""The trainer's three Kubernetes API calls on PyTorchJobs (create, get, delete), as its service account.

Deliberately thin: HTTPS to the API server named by the pod's environment, the service account's token and
CA, JSON in and out; RBAC in deploy/k8s/components/training/rbac.yaml grants exactly these verbs. No cluster
runs in the tests, so this layer is not exercised there; everything it sends is made by pytorchjob.render,
which is (tests/test_pytorchjob.py, make k8s-validate).
"""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

SA = Path("/var/run/secrets/kubernetes.io/serviceaccount")
GROUP_VERSION = "apis/kubeflow.org/v1"


class KubeError(RuntimeError):
    """The API server refused or could not be reached (the message says which call)."""


class PyTorchJobs:
    def __init__(self, namespace: str, server: str | None = None, token_file: Path = SA / "token") -> None:
        host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
        if server is None and not (host and port):
            raise KubeError("not in a Kubernetes pod (KUBERNETES_SERVICE_HOST is not set)")
        self.base = server or f"https://{host}:{port}"
        self.namespace = namespace
        self.token_file = token_file
        self.context = (
            ssl.create_default_context(cafile=str(SA / "ca.crt")) if (SA / "ca.crt").exists() else None
        )

    def _url(self, name: str | None = None) -> str:
        url = f"{self.base}/{GROUP_VERSION}/namespaces/{self.namespace}/pytorchjobs"
        return f"{url}/{name}" if name else url

    def _call(self, method: str, url: str, body: dict[str, Any] | None = None) -> dict[str, Any] | None:
        # the token is re-read each call: Kubernetes rotates projected service-account tokens
        headers = {
            "Authorization": f"Bearer {self.token_file.read_text().strip()}",
            "Accept": "application/json",
        }
        data = None
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, context=self.context, timeout=30) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            if exc.code == 404 and method in ("GET", "DELETE"):
                return None
            detail = exc.read()[:300].decode(errors="replace")
            raise KubeError(f"{method} {url}: HTTP {exc.code}: {detail}") from None
        except OSError as exc:
            raise KubeError(f"{method} {url}: {type(exc).__name__}: {exc}") from None

    def create(self, job: dict[str, Any]) -> None:
        """Create; an existing job of the same name (a redelivered queue item) is kept, not an error."""
        try:
            self._call("POST", self._url(), job)
        except KubeError as exc:
            if "HTTP 409" not in str(exc):
                raise

    def get(self, name: str) -> dict[str, Any] | None:
        return self._call("GET", self._url(name))

    def delete(self, name: str) -> None:
        self._call("DELETE", self._url(name), {"propagationPolicy": "Foreground"})


def finished(job: dict[str, Any] | None) -> str | None:
    """'Succeeded' or 'Failed' from the operator's status conditions; None while it runs."""
    for condition in (job or {}).get("status", {}).get("conditions", []):
        if condition.get("type") in ("Succeeded", "Failed") and condition.get("status") == "True":
            return str(condition["type"])
    return None
