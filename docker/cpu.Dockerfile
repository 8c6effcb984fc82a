# syntax=docker/dockerfile:1
# avaforge CPU image: the light services of services/common/catalog.py (gateway, ingest, detector client, tracker,
# proposals, via, trainer API and their queue workers). No torch and no build tools: the ONNX models come baked
# from the GPU image's build stage (MODELS_IMAGE), so both images carry the same model bytes.
#
#   docker build -f docker/cpu.Dockerfile --build-arg MODELS_IMAGE=avaforge-gpu:0.1.0 -t avaforge-cpu:0.1.0 .
ARG BASE_IMAGE=python:3.11.11-slim-bookworm
ARG MODELS_IMAGE=avaforge-gpu:0.1.0

FROM ${MODELS_IMAGE} AS models

FROM ${BASE_IMAGE} AS build
# Offline builds (make image-cpu-local): --build-arg PIP_NO_INDEX=1 --build-arg PIP_FIND_LINKS=/wheels
ARG PIP_NO_INDEX
ARG PIP_FIND_LINKS
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src
COPY requirements/image-build.txt requirements/image-cpu.txt requirements/
# docker/wheelhouse is bind-mounted, not copied: offline builds do not carry the wheels in a layer
RUN --mount=type=bind,source=docker/wheelhouse,target=/wheels \
    python3 -m venv /opt/tools \
    && /opt/tools/bin/pip install --no-cache-dir --no-deps -r requirements/image-build.txt \
    && python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --no-deps -r requirements/image-cpu.txt
COPY pyproject.toml README.md ./
COPY protos protos
COPY scripts/gen_protos.sh scripts/
COPY avaforge avaforge
COPY services services
RUN VENV=/opt/tools bash scripts/gen_protos.sh \
    && /opt/venv/bin/pip install --no-cache-dir --no-deps --no-build-isolation . \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib

FROM ${BASE_IMAGE} AS runtime
ARG FFMPEG_VERSION=7:5.1.*
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# ffmpeg from Debian (a base image built with mmdebstrap already has it); the image's user owns nothing but the
# artifact cache, which Kubernetes replaces with an emptyDir anyway.
RUN if ! command -v ffmpeg >/dev/null; then \
        apt-get update \
        && apt-get install -y --no-install-recommends "ffmpeg=${FFMPEG_VERSION}" \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin avaforge \
    && install -d -o 10001 -g 10001 /var/cache/avaforge
COPY --from=build /opt/venv /opt/venv
COPY --from=models /opt/avaforge/cache/models /opt/avaforge/cache/models
COPY deploy/triton /opt/avaforge/triton
# Everything writable lives under /tmp or /var/cache/avaforge: the root filesystem can be read-only.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    AVAFORGE_CACHE=/opt/avaforge/cache \
    AVAFORGE_CACHE_DIR=/var/cache/avaforge \
    MPLCONFIGDIR=/tmp/matplotlib \
    YOLO_OFFLINE=1 \
    YOLO_CONFIG_DIR=/tmp/ultralytics \
    MALLOC_ARENA_MAX=2
USER 10001:10001
EXPOSE 50050 50051 50056 9100
# Docker/podman; Kubernetes runs the same probe as an exec probe (TLS, the service token: AVAFORGE_TLS_CA, _TOKEN_FILE).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 CMD ["python", "-m", "services.common.probe"]
ENTRYPOINT ["python", "-m"]
CMD ["services.gateway"]
