# Everything runs from the project's own virtualenv (.venv), made and filled from requirements.txt.
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
GPU_INSTALLED := $(VENV)/.gpu-installed

# .venv's interpreter: PYTHON if given, else the first of python3, python3.12, python3.11, python3.10
# that is a Python of requires-python (pyproject.toml): 3.10-3.12, as NumPy 1.26 (<2: what Triton's
# Python stub needs) has no 3.13 wheel. A PYTHON of another version than .venv's makes .venv anew.
SUPPORTED_PYTHON := 3.10 3.11 3.12
version_of = $(shell $(1) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
supported = $(filter $(SUPPORTED_PYTHON),$(call version_of,$(1)))
ifeq ($(origin PYTHON),undefined)
# looked for once, and only when .venv is to be made
PYTHON = $(eval PYTHON := $(firstword $(foreach p,python3 python3.12 python3.11 python3.10,$(if $(call supported,$(p)),$(p)))))$(PYTHON)
else ifneq ($(wildcard $(PY)),)
PYTHON_GIVEN := yes
ifneq ($(call version_of,$(PY)),$(call version_of,$(PYTHON)))
$(INSTALLED): FORCE
endif
endif
# what stops `make install`, in one line; empty when PYTHON can make .venv
python_problem = $(if $(PYTHON),$(if $(call supported,$(PYTHON)),$(no_venv_module),$(unsupported_python)),$(no_python))
no_python = no Python 3.10-3.12 found (python3 is $(or $(call version_of,python3),not found)): install one, then run make PYTHON=python3.12 (or python3.11, python3.10)
unsupported_python = PYTHON=$(PYTHON) $(if $(call version_of,$(PYTHON)),is Python $(call version_of,$(PYTHON)),is not found); yolo-triton needs Python 3.10-3.12 (NumPy 1.26 has no 3.13 wheel)
no_venv_module = $(if $(shell $(PYTHON) -c 'import ensurepip, venv' 2>/dev/null && echo ok),,$(PYTHON) cannot make a virtualenv: install its venv module (Debian/Ubuntu: apt install python3-venv, or e.g. python3.12-venv))
# .venv made anew: of an unsupported Python, or of another than a PYTHON given
venv_outdated = $(if $(wildcard $(PY)),$(if $(call supported,$(PY)),$(if $(PYTHON_GIVEN),$(filter-out $(call version_of,$(PYTHON)),$(call version_of,$(PY)))),$(or $(call version_of,$(PY)),broken)))

.PHONY: install repository serve test test-data lint bench bench-input clean FORCE

install: $(INSTALLED) $(GPU_INSTALLED)

$(INSTALLED): requirements.txt pyproject.toml
	$(if $(python_problem),$(error $(python_problem)))
	$(if $(venv_outdated),@echo "$(VENV) is Python $(venv_outdated): making it anew with $(PYTHON)" && rm -rf $(VENV))
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

# where nvidia-smi works, the GPU runtime for its CUDA major (requirements-gpu-cu12.txt / -cu13.txt); else nothing
$(GPU_INSTALLED): $(INSTALLED) requirements-gpu-cu12.txt requirements-gpu-cu13.txt yolo_triton/gpu_extra.py
	$(PY) -m yolo_triton.gpu_extra --install --stamp $@
# and again where the choice the stamp records (the file, the driver's CUDA major) is not this machine's any
# more: a driver installed after the first `make serve`, one of another CUDA major (asks nvidia-smi each time)
ifneq ($(wildcard $(GPU_INSTALLED)),)
ifneq ($(shell $(PY) -m yolo_triton.gpu_extra --changed $(GPU_INSTALLED) 2>/dev/null),)
$(GPU_INSTALLED): FORCE
endif
endif

# export the models and write model_repository/ (YOLO_WEIGHTS, YOLO_WEIGHTS_DIR, YOLO_MODELS: see docs/serving.md)
repository: install
	$(PY) -m yolo_triton.repository

# serve the ensembles on 127.0.0.1: HTTP 8000, gRPC 8001, metrics 8002
serve: install
	$(PY) -m yolo_triton.serve

# the CPU benchmark (benchmarks/RESULTS.md):  make bench BENCH_IMAGES=/path/to/jpegs BENCH_WEIGHTS=/path/yolo11n.pt
# into BENCH_OUT, build/bench/results by default: the committed benchmarks/results/cpu only when named
BENCH_OUT ?= build/bench/results
bench: install
	@test -n "$(BENCH_IMAGES)" -a -n "$(BENCH_WEIGHTS)" || { echo "usage: make bench BENCH_IMAGES=/path/to/jpegs BENCH_WEIGHTS=/path/yolo11n.pt"; exit 2; }
	$(PY) -m benchmarks.bench --images $(BENCH_IMAGES) --weights $(BENCH_WEIGHTS) --out $(BENCH_OUT)

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

FORCE:

clean:
	rm -rf build
	find model_repository -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +
