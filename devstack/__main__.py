"""``make up`` / ``make down``: the local stack on loopback, state in ``$AVAFORGE_STACK_DIR`` (.stack/).

up    starts nats-server (JetStream), the S3 server, Triton (the person detector from deploy/triton/local,
      where the services' detection runs: AVAFORGE_DETECT_BACKEND=triton unless set otherwise),
      and every process of services/common/catalog.py on loopback: the gateway (AVAFORGE_GATEWAY_PORT,
      default 50050), the other gRPC APIs at +1..+6 (ingest, detector, tracker, proposals, via, trainer),
      the annotate service (the workbench, HTTPS) at +7 (AVAFORGE_ANNOTATE_URL in ``stack.env``),
      the queue workers with AVAFORGE_DETECT_WORKERS detector workers (default 2); creates the artifact
      bucket, and writes
      ``stack.env`` (endpoints and credentials, mode 0600) for clients: ``set -a; . .stack/stack.env``.
      S3 credentials come from AVAFORGE_S3_ACCESS_KEY / AVAFORGE_S3_SECRET_KEY, or are generated once.
      Every gRPC port, NATS (``tls://``) and S3 (``https://``) have TLS (a local CA and server certificate
      made once in ``.stack/auth/``; clients check it with AVAFORGE_TLS_CA), and every gRPC port takes
      bearer tokens: ``user`` and ``admin`` for people (``.stack/auth/<name>.token``, mode 0600; in
      ``stack.env`` as AVAFORGE_TOKEN and AVAFORGE_ADMIN_TOKEN, with AVAFORGE_CA), ``service`` for probes.
down  stops what ``up`` started (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from avaforge.detection.model_files import detector_model
from avaforge.detection.model_repo import TRITON_IMGSZ
from avaforge.storage import S3Store
from devstack.certs import Credentials, load_credentials, make_credentials
from devstack.servers import (
    S3Credentials,
    nats_server,
    port_in_use,
    remove_leftovers,
    s3_server,
    triton_server,
    wait_model_ready,
    wait_port,
)
from services.common.catalog import DEPLOYABLES
from services.common.deployment import deployment

REPO = Path(__file__).resolve().parents[1]


def _dir() -> Path:
    return Path(os.environ.get("AVAFORGE_STACK_DIR", ".stack")).resolve()


def _credentials(state: Path) -> S3Credentials:
    env = os.environ
    if env.get("AVAFORGE_S3_ACCESS_KEY") and env.get("AVAFORGE_S3_SECRET_KEY"):
        return S3Credentials(env["AVAFORGE_S3_ACCESS_KEY"], env["AVAFORGE_S3_SECRET_KEY"])
    saved = state / "credentials.json"
    if saved.exists():
        return S3Credentials(**json.loads(saved.read_text()))
    creds = S3Credentials("avaforge-" + secrets.token_hex(4), secrets.token_urlsafe(24))
    saved.write_text(json.dumps(creds.__dict__))
    saved.chmod(0o600)
    return creds


def _auth(state: Path) -> Credentials:
    """The stack's CA, server certificate and tokens: made on the first ``up``, kept for the next."""
    return load_credentials(state / "auth") or make_credentials(state / "auth")


def _commands(ports: dict[str, int]) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Every process of ``services/common/catalog.py``: the APIs on their ports beside the gateway's, the
    queue workers (``AVAFORGE_DETECT_WORKERS`` detector workers, default 2) with no port of their own."""
    out: dict[str, tuple[list[str], dict[str, str]]] = {}
    for d in DEPLOYABLES:
        copies = int(os.environ.get("AVAFORGE_DETECT_WORKERS", "2")) if d.name == "worker-detect" else 1
        for i in range(copies):
            name = d.name if copies == 1 else f"{d.name}-{i}"
            out[name] = (list(d.args), {"AVAFORGE_GRPC_PORT": str(ports.get(d.name, 0))})
    return out


def _start_services(state: Path, env: dict[str, str], ports: dict[str, int]) -> dict[str, subprocess.Popen]:
    """The catalog's processes, logging to ``state/<name>.log``, bound to loopback."""
    base = {
        **os.environ,
        **env,
        "AVAFORGE_CACHE_DIR": str(state / "cache"),
        "AVAFORGE_METRICS_PORT": "0",
        "AVAFORGE_BIND": "127.0.0.1",
        "MALLOC_ARENA_MAX": "2",  # as in the images: streaming transfers reuse the memory they free
    }
    procs = {}
    for name, (args, extra) in _commands(ports).items():
        log = open(state / f"{name}.log", "ab")  # noqa: SIM115  (owned by the child)
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", *args],
            env={**base, **extra},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            start_new_session=True,
        )
    return procs


# Every fixed port ``up`` binds, by what binds it: (variable, default). The other APIs of the catalog sit at
# fixed offsets from the gateway's port (in catalog order), and follow its variable.
_PORTS = {
    "nats": ("AVAFORGE_NATS_PORT", 4222),
    "s3": ("AVAFORGE_S3_PORT", 9000),
    "triton": ("AVAFORGE_TRITON_PORT", 8001),
    "gateway": ("AVAFORGE_GATEWAY_PORT", 50050),
}
_APIS = [d.name for d in DEPLOYABLES if not d.name.startswith("worker-")]
_GATEWAY_OFFSETS = {name: i for i, name in enumerate(_APIS) if name != "gateway"}


def _ports() -> dict[str, int]:
    ports = {name: int(os.environ.get(var, default)) for name, (var, default) in _PORTS.items()}
    return ports | {name: ports["gateway"] + off for name, off in _GATEWAY_OFFSETS.items()}


def _taken(ports: dict[str, int]) -> list[str]:
    """The ports already bound on this machine, each with what needs it and the variable that moves it."""
    out = []
    for name, port in ports.items():
        if port_in_use(port):
            off = _GATEWAY_OFFSETS.get(name)
            var = _PORTS["gateway" if off else name][0]
            out.append(f"{port} ({name}; set {var}" + (f", which it follows at +{off})" if off else ")"))
    return out


def up() -> int:
    state = _dir()
    state.mkdir(parents=True, exist_ok=True)
    if (state / "pids.json").exists():
        print(f"already up (see {state / 'stack.env'}); run make down first", file=sys.stderr)
        return 1
    ports = _ports()
    # Checked before anything starts, so a taken port fails here, by name, and not halfway through the start.
    taken = _taken(ports)
    if taken:
        print(f"up: already in use on this machine: {'; '.join(taken)}", file=sys.stderr)
        return 1
    creds = _credentials(state)
    auth = _auth(state)  # NATS and S3 serve TLS with the stack's certificate too
    nats = nats_server(state, ports["nats"], tls=auth.server_tls).start()
    s3 = s3_server(state, creds, ports["s3"], tls=auth.server_tls).start()
    pids = {"nats": nats.proc.pid, "s3": s3.proc.pid}  # type: ignore[union-attr]
    (state / "leftovers.json").write_text(json.dumps(s3.leftovers))  # for down, a later process
    (state / "pids.json").write_text(json.dumps(pids))
    # the model the deployment's precision names (int8 unless AVAFORGE_DETECT_PRECISION says fp32), as an
    # embedded run on the onnx backend loads it: the services' boxes are the embedded ones byte for byte
    model, version = detector_model(
        os.environ.get("AVAFORGE_DETECTOR_WEIGHTS"), TRITON_IMGSZ, deployment().detect.precision
    )
    triton = triton_server(
        state / "triton",
        model,
        version.partition(":")[2],  # Triton reports it as the model version
        REPO / "deploy" / "triton" / "local",
        ports["triton"],
    )
    triton.start()
    pids["triton"] = triton.proc.pid  # type: ignore[union-attr]
    (state / "pids.json").write_text(json.dumps(pids))
    wait_model_ready(triton.port, "person_detector")
    store = S3Store(f"https://127.0.0.1:{s3.port}", creds.access_key, creds.secret_key, ca=auth.ca)
    store.wait_ready()
    env = {
        "AVAFORGE_NATS_URL": f"tls://127.0.0.1:{nats.port}",
        "AVAFORGE_S3_ENDPOINT": f"https://127.0.0.1:{s3.port}",
        "AVAFORGE_S3_ACCESS_KEY": creds.access_key,
        "AVAFORGE_S3_SECRET_KEY": creds.secret_key,
        "AVAFORGE_S3_BUCKET": store.bucket,
        "AVAFORGE_TLS_CA": str(auth.ca),  # what NATS's and S3's certificates are checked against
        "AVAFORGE_TRITON_URL": f"127.0.0.1:{triton.port}",
    }
    gateway_port = ports["gateway"]
    clients = {  # `avaforge remote` and GatewayClient read these (the user's token; the admin's beside it)
        "AVAFORGE_GATEWAY": f"127.0.0.1:{gateway_port}",
        "AVAFORGE_CA": str(auth.ca),
        "AVAFORGE_TOKEN": auth.tokens["user"],
        "AVAFORGE_ADMIN_TOKEN": auth.tokens["admin"],
        "AVAFORGE_ANNOTATE_URL": f"https://localhost:{ports['annotate']}",  # the certificate names localhost
    }
    env_file = state / "stack.env"
    env_file.touch(mode=0o600, exist_ok=True)
    env_file.chmod(0o600)
    env_file.write_text("".join(f"{k}={v}\n" for k, v in {**env, **clients}.items()))
    # Detection runs on the stack's Triton (services/common/deployment.py) unless the caller names a backend:
    # workers stay light clients instead of each running ONNX Runtime on every core (issue 13).
    backend = {"AVAFORGE_DETECT_BACKEND": os.environ.get("AVAFORGE_DETECT_BACKEND") or "triton"}
    services = _start_services(state, {**env, **auth.server_env(), **backend}, ports)
    pids.update({name: proc.pid for name, proc in services.items()})
    (state / "pids.json").write_text(json.dumps(pids))
    wait_port(gateway_port, 120, services["gateway"], state / "gateway.log")
    print(
        f"up: nats {env['AVAFORGE_NATS_URL']}, S3 ({s3.name}) {env['AVAFORGE_S3_ENDPOINT']}, "
        f"triton {env['AVAFORGE_TRITON_URL']}"
    )
    wait_port(ports["annotate"], 120, services["annotate"], state / "annotate.log")
    print(
        f"annotate (the workbench): {clients['AVAFORGE_ANNOTATE_URL']}/jobs/JOB/#token=$AVAFORGE_TOKEN "
        "(trust AVAFORGE_CA in the browser)"
    )
    print(f"environment for clients: {env_file} (AVAFORGE_CA, AVAFORGE_TOKEN, AVAFORGE_ADMIN_TOKEN)")
    return 0


def down() -> int:
    state = _dir()
    pids_file = state / "pids.json"
    if not pids_file.exists():
        print("not up")
        return 0
    pids = json.loads(pids_file.read_text())
    for pid in pids.values():
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + 10
    for pid in pids.values():
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    pids_file.unlink()
    leftovers = state / "leftovers.json"
    if leftovers.exists():
        remove_leftovers(json.loads(leftovers.read_text()))
        leftovers.unlink()
    print("down")
    return 0


if __name__ == "__main__":
    commands = {"up": up, "down": down}
    if len(sys.argv) != 2 or sys.argv[1] not in commands:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(commands[sys.argv[1]]())
