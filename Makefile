# Everything runs from the project's own virtualenv (.venv), made and filled from requirements.txt.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
GPU_INSTALLED := $(VENV)/.gpu-installed

.PHONY: install repository serve test test-data lint bench bench-input clean

install: $(INSTALLED) $(GPU_INSTALLED)

$(INSTALLED): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

# where nvidia-smi works, the GPU runtime for its CUDA major (requirements-gpu-cu12.txt / -cu13.txt); else nothing
$(GPU_INSTALLED): $(INSTALLED) requirements-gpu-cu12.txt requirements-gpu-cu13.txt yolo_triton/gpu_extra.py
	$(PY) -m yolo_triton.gpu_extra --install --stamp $@

# export the models and write model_repository/ (YOLO_WEIGHTS, YOLO_WEIGHTS_DIR, YOLO_MODELS: see docs/serving.md)
repository: install
	$(PY) -m yolo_triton.repository

# serve the ensembles on 127.0.0.1: HTTP 8000, gRPC 8001, metrics 8002
serve: install
	$(PY) -m yolo_triton.serve

# the CPU benchmark (benchmarks/RESULTS.md):  make bench BENCH_IMAGES=/path/to/jpegs BENCH_WEIGHTS=/path/yolo11n.pt
bench: install
	@test -n "$(BENCH_IMAGES)" -a -n "$(BENCH_WEIGHTS)" || { echo "usage: make bench BENCH_IMAGES=/path/to/jpegs BENCH_WEIGHTS=/path/yolo11n.pt"; exit 2; }
	$(PY) -m benchmarks.bench --images $(BENCH_IMAGES) --weights $(BENCH_WEIGHTS) --out benchmarks/results/cpu

# perf_analyzer's input data from a folder of images, for `docker compose run --rm perf_analyzer`:
#   make bench-input BENCH_IMAGES=/path/to/jpegs
bench-input: install
	@test -n "$(BENCH_IMAGES)" || { echo "usage: make bench-input BENCH_IMAGES=/path/to/images"; exit 2; }
	$(PY) -m benchmarks.perf_input $(BENCH_IMAGES) -o build/bench/perf_input.json

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

# the weights and coco128 images the tests read (online), into YOLO_TEST_DATA (default ../shared/data)
test-data: install
	$(PY) tests/fixtures/fetch_test_data.py

# ruff, configured in pyproject.toml: the lint rules and the code's format
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf build
	find model_repository -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +
