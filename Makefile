# sim2real: `make repro` runs the pipeline on the embedded miniature world, `make test` the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export PATH := $(abspath $(BIN)):$(PATH)
export YOLO_OFFLINE := true
export WANDB_MODE ?= offline
export SIM2REAL_NO_PROGRESS ?= 0

.PHONY: install repro test test-fast bench clean chromium

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@! $(BIN)/python -c "import albumentations" 2>/dev/null || \
	  (echo "albumentations is installed: ultralytics would add hidden blur augmentations" >&2; exit 1)
	touch $(STAMP)

repro: $(STAMP)
	$(BIN)/dvc repro

# Two pytest workers (pytest-xdist), one file per unit of work; tests/conftest.py orders the files
# and shares one pipeline run between the workers.
TEST_WORKERS ?= 2
# The workers share the cores: OpenMP threads that busy-wait would make torch up to 20x slower. Not
# for repro: one stage at a time, and YOLO training steps are 1.7x faster on 2 threads that spin a while.
test test-fast: export OMP_WAIT_POLICY ?= PASSIVE
test: $(STAMP) chromium
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder

# The pure-library tests (no DVC pipeline, no training, no browser): under a minute on 2 idle cores.
FAST_TESTS := tests/physics/test_physics_properties.py tests/physics/test_physics.py tests/test_formats.py tests/test_labels.py \
              tests/metrics/test_kitti_ap.py tests/test_parallel_io.py tests/test_dvc_deps.py tests/test_docs.py
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q $(FAST_TESTS)

# The report test opens reports/index.html in headless Chromium (Debian package `chromium`).
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium:
	@test -x $(CHROMIUM) || { \
	  echo "installing chromium (Debian package) for the report's browser test"; \
	  $(SUDO) apt-get update && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; }

bench: $(STAMP)
	for f in benchmarks/*.py; do $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) data/*/ .pytest_cache
