#!/usr/bin/env bash
# Device call A (after stage.sh): REFRAG stages a -> b -> c for k = 8, 16, 32 and the eval rows that need no trained
# projector (issue 20); the inference-free training runs (issue 19). Six GPU processes; each writes under /tmp/a (kept for call B
# while the machine is warm) as it goes, so a run cut by the call's limit still returns its finished parts. Usage: bash tools/gpu/call-a.sh [SECONDS]
set -u
LIMIT=${1:-540}
R=.device/refrag; O=/tmp/a; mkdir -p $O/refrag $O/if /tmp/shipped
cp -r sprig/rag/projectors/smollm2-minilm-k16 /tmp/shipped/k16
. tools/gpu/lib.sh
link_data
for k in 8 16 32; do
  run train-k$k python3 -m sprig.eval.bench.refrag train --k $k --minutes 1,1.5,2 --data $R/data --hits $R/hits.json \
    --generator /tmp/smol.gguf --device cuda --out $O/refrag &
done
run eval-base python3 -m sprig.eval.bench.refrag eval --projectors /tmp/shipped --sizes 16 --rows closed-book,oracle,none \
  --data $R/data --hits $R/hits.json --generator /tmp/smol.gguf --device cuda --batch 128 --out $O/refrag/eval-base &
T=/tmp/teachers
(
  run teachers python3 -m sprig.eval.bench.train_sparse --data .device/data --teachers $T --device cuda --runs teachers --out $O/if/teachers.json
  # seed 1 of the old IDF-aware FLOPS + distillation row (lambda_d 1e-3, ramp 0.3, 2 epochs), selected as the old runs were
  run if-seed1 python3 -m sprig.eval.bench.train_sparse --data .device/data --teachers $T --device cuda --runs if-idf-distill \
    --seeds 1 --epochs 2 --override '{"keep_untrained": false}' --work /tmp/if-s1 --out $O/if/if-idf-distill-s1.json &
  # the lambda_d sweep, ramp over the whole run, step 0 selectable
  for s in 0 1; do
    run if-sweep-s$s python3 -m sprig.eval.bench.train_sparse --data .device/data --teachers $T --device cuda \
      --runs if-idf-distill if-plain-distill --flops-doc 1e-5 1e-4 --seeds $s --steps 200 --eval-every 50 \
      --stop-after $((END - SECONDS - 150)) --override '{"flops_warmup": 1.0, "time_limit_s": 45}' --work /tmp/if-sw$s \
      --out $O/if/if-sweep-s$s.json &
  done
  wait
) &
gpu_use 60
wait
nvidia-smi --query-gpu=name,memory.used --format=csv >> $O/done.txt
tar -C /tmp -czf $OUT/a.tgz a
