#!/usr/bin/env bash
# Device call F (issue 23; needs stage.sh's wheels and SPLADE-tiny, carry .device/data/scifact): the SPLADE GPU
# benchmark's A/B of the second run's suspects, one run at a time so they do not share the GPU: the full run as
# committed (numpy tokenisation, dummy 4-d mask), then sprig alone with lists / no mask / both, then the full run
# with the body torch.compile'd. Outputs in $OUT/f.tgz. Usage: bash tools/gpu/call-f.sh [SECONDS]
set -u
LIMIT=${1:-540}; O=/tmp/f
. tools/gpu/lib.sh
sg() { local name=$1; shift; run $name python3 -m sprig.eval.bench.splade_gpu --data .device/data/scifact --docs 20000 --out $O/$name.json "$@"; }
sg full-numpy-mask
sg compiled-lists-nomask --compile --tokenise lists --no-dummy-mask --paths plain,sprig
sg lists-mask --tokenise lists --paths sprig
sg numpy-nomask --no-dummy-mask --paths sprig
sg lists-nomask --tokenise lists --no-dummy-mask --paths sprig
sg compiled-numpy-mask --compile --paths sprig
tar -C /tmp -czf $OUT/f.tgz f
