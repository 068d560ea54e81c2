#!/usr/bin/env bash
# Device call G (after stage.sh with Gemma's parts, its tokenizer, MiniLM and SPLADE-tiny; carry
# .device/data, .device/refrag): what issues 20 and 18 still lack with Gemma 3 270M. REFRAG: the projector at k = 8
# and k = 32 (stages a -> b -> c, MINUTES budgets), then their rows; decoder sparse: the teachers' scores, then two
# seeds of the echo SPLADE LoRA training on Gemma, as call B ran them on SmolLM2. At most five GPU processes (call
# E's four used 40 GiB of an H200). Outputs in $OUT/g.tgz; then `refrag merge` with refrag-runs-gemma3/eval.json.
# PRUNE=true trains on the pruned vectors (train.prune_in_training). Usage: bash tools/gpu/call-g.sh [SECONDS]
# (2026-12-07, one H100: the REFRAG half ran; the two decoder trainings ran out of GPU memory beside it (one REFRAG
# training held 40 GiB), so they ran again alone as call-h.sh.)
set -u
LIMIT=${1:-540}; O=/tmp/g; R=.device/refrag; G=/tmp/gemma.gguf; P=/tmp/g/refrag
. tools/gpu/lib.sh
link_data; mkdir -p $P
for k in 8 32; do
  (
    run train-k$k python3 -m sprig.eval.bench.refrag train --k $k --minutes ${MINUTES:-0.5,1,1} --data $R/data \
      --hits $R/hits.json --generator $G --device cuda --out $P
    run eval-k$k python3 -m sprig.eval.bench.refrag eval --projectors $P --sizes $k \
      --rows refrag-k$k@0,refrag-k$k@0.1,refrag-k$k@0.25 --data $R/data --hits $R/hits.json --generator $G \
      --device cuda --batch 48 --out $O/eval-k$k
  ) &
done
T=/tmp/teachers
(
  run teachers python3 -m sprig.eval.bench.train_sparse --data .device/data --teachers $T --device cuda --runs teachers --out $O/teachers.json
  for s in 0 1; do
    run decoder-gemma-s$s python3 -m sprig.eval.bench.train_sparse --data .device/data --teachers $T --device cuda \
      --runs decoder --seeds $s --init $G --steps 300 --eval-every 100 --override "{\"time_limit_s\": $((END - SECONDS - 120)), \"prune_in_training\": ${PRUNE:-false}}" \
      --work /tmp/dec$s --out $O/decoder-gemma-s$s.json &
  done
  wait
) &
gpu_use 120
wait
tar -C /tmp -czf $OUT/g.tgz g
