#!/usr/bin/env bash
# Device call B, right after call A on the same warm machine: the REFRAG rows of the projectors A trained (/tmp/a),
# and two seeds of the decoder (SmolLM2 echo SPLADE + LoRA) training run (issue 18), on A's teacher files.
set -u
LIMIT=${1:-540}
R=.device/refrag; P=/tmp/a/refrag; O=/tmp/b; mkdir -p $O
. tools/gpu/lib.sh
link_data
ev() {  # ev K ROWS
  run eval-k$1 python3 -m sprig.eval.bench.refrag eval --projectors $P --sizes $1 --rows $2 --data $R/data \
    --hits $R/hits.json --generator /tmp/smol.gguf --device cuda --batch 128 --out $O/eval-k$1
}
ev 8 refrag-k8@0,refrag-k8@0.1,refrag-k8@0.25 &
ev 16 refrag-k16@0,refrag-k16@0.1,refrag-k16@0.25,recomp-extractive=refrag-k16@0.1 &
ev 32 refrag-k32@0,refrag-k32@0.1,refrag-k32@0.25 &
for s in 0 1; do
  run decoder-s$s python3 -m sprig.eval.bench.train_sparse --data .device/data --teachers /tmp/teachers --device cuda \
    --runs decoder --seeds $s --init /tmp/smol.gguf --steps 300 --eval-every 100 --override '{"time_limit_s": 210}' \
    --work /tmp/dec$s --out $O/decoder-s$s.json &
done
gpu_use 60
wait
tar -C /tmp -czf $OUT/b.tgz b
