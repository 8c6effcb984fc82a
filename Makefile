# avaforge — every entry point a user or CI needs. `make install` is implied by the others.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export YOLO_OFFLINE := 1

.PHONY: install test lint format relock clean demo bench bench-annotate bench-train bench-scale bench-detect \
	bench-track bench-prepare-recall learning-check soak up down protos \
	k8s-validate k8s-manifests image-requirements images push-images image-cpu-local image-gpu-local

install:  ## create .venv with everything pinned (apt ffmpeg, torch, mm stack, pipeline packages)
	@bash scripts/install.sh

test: install  ## lint + the whole test suite (what .ci/run calls)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest

demo: install  ## vtest.avi (or VIDEOS="a.mp4 b.mov") -> VIA projects -> autolabel -> validated dataset + report
	@bash scripts/demo.sh

bench: install  ## prepare vs ffmpeg floor vs the seed's flow (slow; results go in benchmarks/RESULTS.md)
	$(PY) benchmarks/bench_prepare.py --json benchmarks/last_run.json

soak: install  ## 20 jobs on 2 detector workers, one SIGKILLed every 10-20 s, one NATS restart (not in CI)
	$(PY) benchmarks/soak.py --json benchmarks/last_soak.json

bench-annotate: install  ## the workbench in Chromium: page ready, key-to-saved p95, key presses per box vs VIA 3
	$(PY) benchmarks/bench_annotate.py --json benchmarks/last_annotate_run.json

bench-train: install  ## seconds per training iteration on CPU, tiny and SlowFast R50 presets
	$(PY) benchmarks/bench_train.py --json benchmarks/last_train_run.json

bench-scale: install  ## detect-stage frames/s with 1 and 2 workers (thread budgets), ONNX Runtime vs Triton (not in CI)
	$(PY) benchmarks/bench_scale.py --json benchmarks/last_scale_run.json

bench-detect: install  ## detector recall/precision/cost per input size on the hand-labelled frames (benchmarks/detect_labels)
	$(PY) benchmarks/bench_detect.py --json benchmarks/last_detect_run.json

bench-prepare-recall: install  ## prepare vtest.avi with no settings: share of the labelled people pre-boxed, detect cost vs today's
	@bash scripts/bench_prepare_recall.sh

bench-track: install  ## Deep SORT IDF1 and id switches on the MOT ground truth motmetrics ships, per tracker setting
	$(PY) benchmarks/bench_track.py --json benchmarks/last_track_run.json

learning-check: install  ## the tiny model overfits its training keyframes (also part of make test)
	$(PY) -m pytest -q -s tests/test_learning_check.py

up: install  ## local stack on loopback: nats-server (JetStream) + S3 server; env in .stack/stack.env
	$(PY) -m devstack up

down:  ## stop what make up started
	$(PY) -m devstack down

protos: install  ## regenerate the gRPC stubs (avaforge/v1/, not committed) from protos/avaforge/v1/*.proto
	@bash scripts/gen_protos.sh

k8s-validate: install  ## render every kustomize overlay, validate strictly (Kubernetes + KEDA schemas), hadolint
	$(PY) scripts/render_k8s_base.py --check
	$(PY) scripts/image_requirements.py --check
	$(PY) scripts/k8s_validate.py
	$(VENV)/bin/hadolint docker/cpu.Dockerfile docker/gpu.Dockerfile

k8s-manifests: install  ## regenerate deploy/k8s/base/services.yaml from services/common/catalog.py
	$(PY) scripts/render_k8s_base.py

image-requirements: install  ## regenerate requirements/image-{cpu,gpu,build}.txt from the pinned environment
	$(PY) scripts/image_requirements.py

# Images for a cluster: make images push-images REGISTRY=registry.example.com/avaforge [CONTAINER=podman]
CONTAINER ?= docker
REGISTRY ?= localhost:5000
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
images:  ## build the GPU image (models exported in its build stage), then the CPU image from it
	$(CONTAINER) build -f docker/gpu.Dockerfile -t $(REGISTRY)/avaforge-gpu:$(VERSION) .
	$(CONTAINER) build -f docker/cpu.Dockerfile --build-arg MODELS_IMAGE=$(REGISTRY)/avaforge-gpu:$(VERSION) \
		-t $(REGISTRY)/avaforge-cpu:$(VERSION) .

push-images:
	$(CONTAINER) push $(REGISTRY)/avaforge-gpu:$(VERSION)
	$(CONTAINER) push $(REGISTRY)/avaforge-cpu:$(VERSION)

image-cpu-local: install  ## build the CPU image here (mmdebstrap base, podman, no network) and run a job through it
	@bash scripts/image_local.sh cpu

image-gpu-local: install  ## the same for both images (GPU image ~12 GB of disk, ~15 min); e2e also trains
	@bash scripts/image_local.sh gpu

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

relock:  ## re-resolve requirements/{base,nodeps}.txt and rewrite requirements/lock.txt
	@bash scripts/install.sh --relock

clean:
	rm -rf .pytest_cache .ruff_cache build *.egg-info
