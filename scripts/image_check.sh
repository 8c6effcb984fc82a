#!/usr/bin/env bash
# Checks of a built CPU image ($IMAGE), run read-only, non-root, without network, as Kubernetes would run it:
# every service module imports, ffmpeg runs, the baked models make a Triton model repository, and a service
# started in the container reports SERVING to the image's own HEALTHCHECK command.
set -euo pipefail
IMAGE="${IMAGE:?IMAGE=...}"
log() { printf '[image-check] %s\n' "$*" >&2; }

log "imports"
podman run --rm --read-only --network none --entrypoint python "$IMAGE" -c '
import services.gateway.__main__, services.ingest.__main__, services.detector.__main__, services.tracker.__main__
import services.proposals.__main__, services.via.__main__, services.trainer.__main__, services.common.probe, avaforge.detection.onnx_backend, avaforge.stages.track
import os, pwd; print("imports ok as", pwd.getpwuid(os.getuid()).pw_name)'

podman run --rm --read-only --network none --entrypoint ffmpeg "$IMAGE" -hide_banner -version | head -1

log "Triton model repository from the baked export"
podman run --rm --read-only --network none --tmpfs /models:rw,mode=1777 "$IMAGE" \
    avaforge.detection.model_repo repo /opt/avaforge/triton/gpu/person_detector/config.pbtxt /models

log "a stage service in the container answers its health check"
name="avaforge-check-$$"
podman run -d --rm --read-only --network none --name "$name" \
    -e AVAFORGE_GRPC_PORT=50051 -e AVAFORGE_S3_ACCESS_KEY=check -e AVAFORGE_S3_SECRET_KEY=check-secret \
    "$IMAGE" services.tracker >/dev/null
trap 'podman rm -f "$name" >/dev/null 2>&1 || true' EXIT
for _ in $(seq 1 60); do
    if podman exec "$name" python -m services.common.probe 2>/dev/null; then
        podman healthcheck run "$name"  # the image's HEALTHCHECK (needs podman build --format docker)
        log "healthcheck: healthy"
        podman stop -t 10 "$name" >/dev/null
        log "ok"
        exit 0
    fi
    sleep 1
done
podman logs "$name" | tail -20
log "the service never reported SERVING"
exit 1
