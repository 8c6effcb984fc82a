#!/usr/bin/env bash
# make image-cpu-local: build the CPU image here, with no registry image and no network inside the build, then
# run its checks (scripts/image_check.sh) and a job through containers of it (scripts/image_e2e.py).
# The base is a Debian bookworm root filesystem made by mmdebstrap (python3, venv, ffmpeg); the models image is
# the ONNX export made on this machine; the wheels are downloaded from PyPI beforehand.
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

log "models: ONNX export on this machine -> $MODELS"
rm -rf "$WORK/models-root" && mkdir -p "$WORK/models-root/opt/avaforge/cache"
AVAFORGE_CACHE="$WORK/models-root/opt/avaforge/cache" "$PY" -m avaforge.detection.model_repo bake
rm -rf "$WORK/models-root/opt/avaforge/cache/ultralytics"
tar -C "$WORK/models-root" --owner=0 --group=0 -cf "$WORK/models.tar" opt
"${PODMAN[@]}" import "$WORK/models.tar" "$MODELS"

log "wheels: PyPI -> docker/wheelhouse"
"$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    -r requirements/image-cpu.txt -r requirements/image-build.txt -d docker/wheelhouse

log "build $IMAGE (network none)"
start=$(date +%s)
"${PODMAN[@]}" build --format docker --network none --pull=never -f docker/cpu.Dockerfile \
    --build-arg BASE_IMAGE="$BASE" --build-arg MODELS_IMAGE="$MODELS" \
    --build-arg PIP_NO_INDEX=1 --build-arg PIP_FIND_LINKS=/wheels -t "$IMAGE" .
log "built in $(( $(date +%s) - start )) s: $("${PODMAN[@]}" image inspect "$IMAGE" --format '{{.Size}}') bytes"

IMAGE="$IMAGE" bash scripts/image_check.sh 2> >(grep -v "systemd connection" >&2)  # no systemd here: timers off
IMAGE="$IMAGE" "$PY" scripts/image_e2e.py 2> >(grep -v "systemd connection" >&2)
