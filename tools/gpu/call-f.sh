#!/usr/bin/env bash
# Device call F (issue 23; needs stage.sh's wheels and SPLADE-tiny, carry .device/data/scifact): the SPLADE GPU
# benchmark with the packed pipeline as `sprig index` now runs it (sprig.encoders.packed: lists tokenisation, no
# dummy mask), the plain loop and sentence-transformers in the same run; then the second run's settings for
# reference; then `sprig index` on SciFact with SPLADE only on CUDA, whose log names the path it took. One run at a
# time so they do not share the GPU. Outputs in $OUT/f.tgz. Usage: bash tools/gpu/call-f.sh [SECONDS]
# (Its first run, 2026-12-07, was the A/B of tokenisation, dummy mask and torch.compile, with the flags of commit
# b29c58a: docs/benchmarks/encoding-gpu.md.)
set -u
LIMIT=${1:-540}; O=/tmp/f
. tools/gpu/lib.sh
sg() { local name=$1; shift; run $name python3 -m sprig.eval.bench.splade_gpu --data .device/data/scifact --docs 20000 --out $O/$name.json "$@"; }
sg full
sg numpy-mask --tokenise numpy --dummy-mask --paths sprig
run index-splade python3 -m sprig.api.cli index .device/data/scifact --out /tmp/f-idx --sparse splade --dense none --no-sentence-vectors --device cuda
tar -C /tmp -czf $OUT/f.tgz f
