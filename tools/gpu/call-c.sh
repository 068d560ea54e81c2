#!/usr/bin/env bash
# Device call C (issue 18), after stage.sh with Gemma's parts: the untrained decoder rows of SmolLM2 and Gemma 3
# 270M (echo SPLADE and PromptReps, with postings and index bytes); with TRAIN=1 two seeds of Gemma echo SPLADE + LoRA.
# Usage: [MODELS="gemma smol"] [TRAIN=1] bash tools/gpu/call-c.sh [SECONDS]
set -u
LIMIT=${1:-540}
export PYTHONPATH=/tmp/site:$PWD SPRIG_CACHE=/tmp/sprig-cache PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
O=/tmp/c; mkdir -p $O
END=$((SECONDS + LIMIT))
run() { local name=$1; shift; timeout $((END - SECONDS)) "$@" > $O/$name.log 2>&1; echo "$name rc=$? $(date +%T)" >> $O/done.txt; }
for m in ${MODELS:-gemma smol}; do for d in scifact nfcorpus; do  # one process per model and set
  run untrained-$m-$d python3 -m sprig.eval.bench.decoder_sparse --data .device/data --model /tmp/$m.gguf \
    --out $O/$m-$d --scratch /tmp/ds-$m-$d $d &
done; done
[ "${TRAIN:-0}" = 1 ] && (  # TRAIN=1: also two seeds of Gemma echo SPLADE + LoRA (needs MiniLM and SPLADE-tiny staged)
  run teachers python3 -m sprig.eval.bench.train_sparse --data .device/data --teachers /tmp/teachers --device cuda --runs teachers --out $O/teachers.json
  for s in 0 1; do
    run gemma-s$s python3 -m sprig.eval.bench.train_sparse --data .device/data --teachers /tmp/teachers --device cuda \
      --runs decoder --seeds $s --init /tmp/gemma.gguf --steps 300 --eval-every 50 \
      --override "{\"time_limit_s\": $((END - SECONDS - 200))}" --work /tmp/gdec$s --out $O/gemma-decoder-s$s.json &
  done
  wait
) &
sleep 90; nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv >> $O/done.txt
wait
tar -C /tmp -czf $OUT/c.tgz c
