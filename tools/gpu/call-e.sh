#!/usr/bin/env bash
# Device call E (after stage.sh with Gemma's parts and MiniLM): REFRAG with Gemma 3 270M as the decoder at k = 16
# alone, one process per GPU job and few at once (call D's eight ran out of memory on one H100): the rows that need
# no projector; and the projector's stages a -> b -> c (shortened budgets), then its rows in two processes; beside
# them call D's untrained Gemma 3 retrieval rows again (with the tokenizer prepare.sh converts; D's split text into characters).
# Outputs in $OUT/e.tgz; then `python -m sprig.eval.bench.refrag merge`. Usage: bash tools/gpu/call-e.sh [SECONDS]
set -u
LIMIT=${1:-540}; O=/tmp/e; R=.device/refrag; G=/tmp/gemma.gguf; P=/tmp/e/refrag
. tools/gpu/lib.sh
link_data; mkdir -p $P
ev() {  # ev NAME SIZES ROWS
  run eval-$1 python3 -m sprig.eval.bench.refrag eval --projectors $P --sizes "$2" --rows $3 --data $R/data \
    --hits $R/hits.json --generator $G --device cuda --batch 48 --out $O/eval-$1
}
ev base "" closed-book,oracle,none &
[ "${TRAIN:-1}" = 1 ] && (  # TRAIN=0: only the rows without a projector and the retrieval rows
  run train-k16 python3 -m sprig.eval.bench.refrag train --k 16 --minutes ${MINUTES:-0.5,1,1} --data $R/data \
    --hits $R/hits.json --generator $G --device cuda --out $P
  ev k16a 16 refrag-k16@0,refrag-k16@0.25 &
  ev k16b 16 refrag-k16@0.1,recomp-extractive=refrag-k16@0.1 &
  wait
) &
for d in ${SETS:-scifact nfcorpus}; do
  run untrained-gemma-$d python3 -m sprig.eval.bench.decoder_sparse --data .device/data --model $G --out $O/gemma-$d \
    --scratch /tmp/ds-gemma-$d $d &
done
gpu_use 120
wait
tar -C /tmp -czf $OUT/e.tgz e
