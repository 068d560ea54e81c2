#!/usr/bin/env bash
# Device call H (issue 18; after stage.sh, carry .device/data): echo SPLADE + LoRA trained on the pruned vectors
# (train.prune_in_training), two seeds side by side, nothing else on the GPU (beside call G's REFRAG trainings the
# pair ran out of memory on an H100). Each run stops training 150 s before the call's end so that its test
# evaluation finishes (its rows record the sparse index bytes). Outputs in $OUT/h.tgz and $OUT/adapter-s{0,1}.tgz.
# Usage: INIT=/tmp/gemma.gguf bash tools/gpu/call-h.sh [SECONDS]
# CENTRE=N centres the head on N training documents first (train.head_centring_docs; the next SmolLM2 run: 128);
# PRUNE=false trains on the dense vectors instead.
# (2026-12-07, one H100, LIMIT 470 with Gemma 3: 300 steps in 318-320 s each; docs/benchmarks/decoder-sparse.md.)
set -u
LIMIT=${1:-470}; O=/tmp/h; T=/tmp/teachers; INIT=${INIT:-/tmp/gemma.gguf}
. tools/gpu/lib.sh
[ -d $T ] || run teachers python3 -m sprig.eval.bench.train_sparse --data .device/data --teachers $T --device cuda --runs teachers --out $O/teachers.json
for s in 0 1; do
  run decoder-s$s python3 -m sprig.eval.bench.train_sparse --data .device/data --teachers $T --device cuda --runs decoder \
    --seeds $s --init $INIT --steps 300 --eval-every 100 --override "{\"time_limit_s\": $((END - SECONDS - 150)), \"prune_in_training\": ${PRUNE:-true}, \"head_centring_docs\": ${CENTRE:-0}}" \
    --work /tmp/h$s --out $O/decoder-s$s.json &
done
gpu_use 90
wait
tar -C /tmp -czf $OUT/h.tgz h
# the adapters, one file each (a Gemma LoRA of rank 16 on all seven projections is ~15 MB in float32)
for s in 0 1; do tar -C /tmp/h$s -czf $OUT/adapter-s$s.tgz decoder-s$s/model; done
