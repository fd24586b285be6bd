# THUNDER for Blender. Two commands for a newcomer: `make demo`, `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stamp

.PHONY: setup demo test test-blender-lts extension clean

setup: $(STAMP)

# Idempotent: re-runs only when the pins change. torch goes in first, alone, so
# that no later requirement can pull a CUDA build.
$(STAMP): requirements.txt pyproject.toml
	@$(PY) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 required (bpy 5.0.1)"'
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip "setuptools<81" wheel
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	$(BIN)/python -c "import torch, bpy, smplx, onnxruntime; assert not torch.version.cuda, 'CUDA torch'"
	touch $@

# DEMO_OUT / DEMO_ARGS: the test suite runs this very target with a short preview.
DEMO_OUT ?= out/demo
DEMO_ARGS ?=
demo: setup
	$(BIN)/thunder-train demo --out $(DEMO_OUT) $(DEMO_ARGS)

# Lint and format first (ruff, pyproject.toml): a quick failure before the long suite.
test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q -ra tests

extension: setup
	$(BIN)/python tools/build_extension.py --out dist

# The legacy Action.fcurves path on Blender 4.2 LTS (bpy from PyPI; no audio there).
test-blender-lts: setup
	test -x .venv-lts/bin/python || $(PY) -m venv .venv-lts
	.venv-lts/bin/pip install -q "bpy>=4.2,<4.3" "numpy<2"
	THUNDER_BPY_LTS=.venv-lts/bin/python $(BIN)/python -m pytest -q tests/blender/test_lts.py

clean:
	rm -rf out dist .pytest_cache
