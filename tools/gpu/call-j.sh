#!/usr/bin/env bash
# Device call J (issue 18; after stage.sh, carry .device/data): echo SPLADE + LoRA runs side by side, nothing else on
# the GPU, each given as NAME SEED INIT EXTRA, EXTRA being TrainConfig overrides as JSON members ('"expansion": false',
# or '' for the bench's decoder settings). Each run stops training RESERVE seconds (default 170) before the call's end
# so that its test evaluation finishes (its rows record the sparse index bytes): 170 s held two SmolLM2 runs and 230 s
# three; with three beside a fourth, 170 s was too short. The teachers are computed first unless
# an earlier call of the same machine left them. Outputs in $OUT/j.tgz; each adapter as $OUT/adapter-NAME.tgz.NN
# parts under the 16 MB a returned file may have (a SmolLM2 LoRA of rank 16 on all seven projections is ~20 MB).
# Usage: bash tools/gpu/call-j.sh SECONDS NAME SEED INIT EXTRA [NAME SEED INIT EXTRA ...]
# (2026-12-07, one H100: docs/benchmarks/decoder-sparse.md, "Fourth attempt: each text's own ids only".)
set -u
LIMIT=$1; shift; O=/tmp/j; T=/tmp/teachers
. tools/gpu/lib.sh
[ -d $T ] || run teachers python3 -m sprig.eval.bench.train_sparse --data .device/data --teachers $T --device cuda --runs teachers --out $O/teachers.json
names=()
while [ $# -ge 4 ]; do
  name=$1 seed=$2 init=$3 extra=$4; shift 4; names+=("$name")
  run "$name" python3 -m sprig.eval.bench.train_sparse --data .device/data --teachers $T --device cuda --runs decoder --seeds "$seed" \
    --init "$init" --steps 300 --eval-every 100 --override "{\"time_limit_s\": $((END - SECONDS - ${RESERVE:-170}))${extra:+, $extra}}" \
    --work "/tmp/w-$name" --out "$O/$name.json" &
done
gpu_use 90
wait
tar -C /tmp -czf "$OUT/j.tgz" j
for name in "${names[@]}"; do tar -C "/tmp/w-$name" -cz . | split -b 15M -d - "$OUT/adapter-$name.tgz."; done
