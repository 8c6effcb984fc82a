#!/usr/bin/env bash
# make image-cpu-local / image-gpu-local: build the images here, with no registry image and no network inside
# the build, then run their checks (scripts/image_check.sh) and jobs through containers (scripts/image_e2e.py).
#   cpu: the models image is the ONNX export made on this machine (quick; no torch in any image)
#   gpu: the GPU image first (its build stage exports the models), then the CPU image from it, as
#        `make images` does with a registry; the e2e run also trains through the GPU image's worker.
# The base is a Debian bookworm root filesystem made by mmdebstrap (python3, venv, ffmpeg); the wheels are
# downloaded from PyPI beforehand into docker/wheelhouse (bind-mounted by the build, never in a layer).
# podman: runc (crun cannot drop the controllers of this host's hybrid cgroups), lower ulimits (no
# CAP_SYS_RESOURCE), --network none, --pull=never, --format docker (OCI images drop HEALTHCHECK).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${VENV:-.venv}/bin/python"
WORK="$ROOT/.cache/image"
VERSION="$("$PY" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')"
BASE=localhost/avaforge-base:bookworm
MODELS=localhost/avaforge-models:local
IMAGE="localhost/avaforge-cpu:$VERSION"
GPU_IMAGE="localhost/avaforge-gpu:$VERSION"
MODE="${1:-cpu}"
BUILD=(build --format docker --network none --pull=never --build-arg BASE_IMAGE="$BASE"
       --build-arg PIP_NO_INDEX=1 --build-arg PIP_FIND_LINKS=/wheels)
log() { printf '[image] %s\n' "$*" >&2; }
mkdir -p "$WORK"

if ! command -v podman >/dev/null || ! command -v mmdebstrap >/dev/null || ! command -v runc >/dev/null; then
    log "installing podman, mmdebstrap, runc (apt-get)"
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        podman mmdebstrap runc
fi
cat > "$WORK/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
CONF
export CONTAINERS_CONF="$WORK/containers.conf"
PODMAN=(podman)

if ! "${PODMAN[@]}" image exists "$BASE"; then
    log "base: mmdebstrap bookworm (python3, python3-venv, ffmpeg) -> $BASE"
    SOURCE_DATE_EPOCH=1700000000 mmdebstrap --mode=root --variant=apt \
        --include=python3,python3-venv,ffmpeg,ca-certificates \
        --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        bookworm "$WORK/rootfs.tar" http://deb.debian.org/debian
    "${PODMAN[@]}" import --change 'CMD ["/bin/bash"]' "$WORK/rootfs.tar" "$BASE"
    rm -f "$WORK/rootfs.tar"
fi

wheels() {
    log "wheels: PyPI -> docker/wheelhouse ($*)"
    "$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
        -r requirements/image-build.txt "${@/#/--requirement=}" -d docker/wheelhouse
}
if [[ "$MODE" == gpu ]]; then
    wheels requirements/image-gpu.txt
    log "build $GPU_IMAGE (network none)"
    start=$(date +%s)
    "${PODMAN[@]}" "${BUILD[@]}" -f docker/gpu.Dockerfile -t "$GPU_IMAGE" .
    log "built in $(( $(date +%s) - start )) s: $("${PODMAN[@]}" image inspect "$GPU_IMAGE" --format '{{.Size}}') bytes"
    MODELS="$GPU_IMAGE"
else
    log "models: ONNX export on this machine -> $MODELS"
    rm -rf "$WORK/models-root" && mkdir -p "$WORK/models-root/opt/avaforge/cache"
    AVAFORGE_CACHE="$WORK/models-root/opt/avaforge/cache" "$PY" -m avaforge.detection.model_repo bake
    rm -rf "$WORK/models-root/opt/avaforge/cache/ultralytics"
    tar -C "$WORK/models-root" --owner=0 --group=0 -cf "$WORK/models.tar" opt
    "${PODMAN[@]}" import "$WORK/models.tar" "$MODELS"
fi

wheels requirements/image-cpu.txt
log "build $IMAGE (network none)"
start=$(date +%s)
"${PODMAN[@]}" "${BUILD[@]}" -f docker/cpu.Dockerfile --build-arg MODELS_IMAGE="$MODELS" -t "$IMAGE" .
log "built in $(( $(date +%s) - start )) s: $("${PODMAN[@]}" image inspect "$IMAGE" --format '{{.Size}}') bytes"
# A rebuild leaves the tag's previous image (1.4 GB, 7.4 GB for the GPU one) dangling; drop those so that
# repeated runs do not fill the disk.
"${PODMAN[@]}" image prune -f >/dev/null

IMAGE="$IMAGE" bash scripts/image_check.sh 2> >(grep -v "systemd connection" >&2)  # no systemd here: timers off
if [[ "$MODE" == gpu ]]; then
    log "GPU image: torch and the trainer's stack import as uid 10001 on a read-only root"
    podman run --rm --read-only --network none --entrypoint python "$GPU_IMAGE" -c '
import torch, mmaction, mmengine, ultralytics, avaforge.trainer.train
print("torch", torch.__version__, "cuda build", torch.version.cuda, "gpu here", torch.cuda.is_available())' \
        2> >(grep -v "systemd connection" >&2)
    export GPU_IMAGE
fi
IMAGE="$IMAGE" "$PY" scripts/image_e2e.py 2> >(grep -v "systemd connection" >&2)
