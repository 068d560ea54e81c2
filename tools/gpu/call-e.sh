#!/usr/bin/env bash
# Device call E, right after call D on the same warm machine: the REFRAG rows of the Gemma 3 projectors D trained
# (/tmp/d/refrag), one process per group of rows. Outputs in $OUT/e.tgz; then `python -m sprig.eval.bench.refrag merge`.
set -u
LIMIT=${1:-540}; O=/tmp/e; R=.device/refrag; P=/tmp/d/refrag
. tools/gpu/lib.sh
link_data
ev() {  # ev NAME K ROWS
  run eval-$1 python3 -m sprig.eval.bench.refrag eval --projectors $P --sizes $2 --rows $3 --data $R/data \
    --hits $R/hits.json --generator /tmp/gemma.gguf --device cuda --batch 128 --out $O/eval-$1
}
ev k8a 8 refrag-k8@0,refrag-k8@0.1 &
ev k8b 8 refrag-k8@0.25 &
ev k16a 16 refrag-k16@0,refrag-k16@0.25 &
ev k16b 16 refrag-k16@0.1,recomp-extractive=refrag-k16@0.1 &
ev k32a 32 refrag-k32@0,refrag-k32@0.1 &
ev k32b 32 refrag-k32@0.25 &
gpu_use 90
wait
tar -C /tmp -czf $OUT/e.tgz e
