#!/usr/bin/env bash
# Device call D (after stage.sh with Gemma's parts): REFRAG with Gemma 3 270M as the decoder (issue 20): stages
# a -> b -> c for k = 8, 16, 32 and the rows that need no projector; and the untrained decoder rows of issue 18
# (SmolLM2 and Gemma 3: echo SPLADE and PromptReps with postings and index bytes). Outputs in /tmp/d (kept for
# call E while the machine is warm) and $OUT/d.tgz. Usage: bash tools/gpu/call-d.sh [SECONDS]
set -u
LIMIT=${1:-540}; O=/tmp/d; R=.device/refrag; G=/tmp/gemma.gguf
. tools/gpu/lib.sh
link_data; mkdir -p $O/refrag
for k in 8 16 32; do
  run train-k$k python3 -m sprig.eval.bench.refrag train --k $k --minutes 1,1.5,2 --data $R/data --hits $R/hits.json \
    --generator $G --device cuda --out $O/refrag &
done
run eval-base python3 -m sprig.eval.bench.refrag eval --projectors /tmp --sizes "" --rows closed-book,oracle,none \
  --data $R/data --hits $R/hits.json --generator $G --device cuda --batch 128 --out $O/refrag/eval-base &
sleep 20  # the REFRAG processes load first; then one untrained-decoder process per model and set
for m in gemma smol; do for d in scifact nfcorpus; do
  run untrained-$m-$d python3 -m sprig.eval.bench.decoder_sparse --data .device/data --model /tmp/$m.gguf \
    --out $O/$m-$d --scratch /tmp/ds-$m-$d $d &
done; done
gpu_use 120
wait
tar -C /tmp -czf $OUT/d.tgz d
