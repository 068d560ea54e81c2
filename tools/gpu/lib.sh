# Sourced by the call-*.sh scripts: the staged environment, the deadline, and `run NAME CMD...`, which runs CMD
# with what is left of the call's time, logs to $O/NAME.log and records its exit code and end time in $O/done.txt.
# Set O (output folder) and LIMIT (seconds) before sourcing.
export PYTHONPATH=/tmp/site:$PWD SPRIG_CACHE=/tmp/sprig-cache PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
mkdir -p "$O"
END=$((SECONDS + LIMIT))  # every process ends by then, whenever it started
run() { local name=$1; shift; timeout $((END - SECONDS)) "$@" > "$O/$name.log" 2>&1; echo "$name rc=$? $(date +%T)" >> "$O/done.txt"; }
link_data() { for d in scifact nfcorpus; do ln -sfn "$PWD/.device/data/$d" ".device/refrag/data/$d"; done; }  # carrying .device/refrag drops stage.sh's links
gpu_use() { sleep "$1"; nvidia-smi --query-gpu=name,memory.used,utilization.gpu --format=csv >> "$O/done.txt"; }
