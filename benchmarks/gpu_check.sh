#!/usr/bin/env bash
# The GPU check for sessions lent a GPU: the CUDA tests, the checks still waiting for a GPU (every objective's
# step at DiT-B/2 batch 256 with its MFU and peak memory, attention under the JVP, 1,000 samples through the VAE),
# then the earlier benchmarks, in at most 8 minutes on one H100/H200: a stage whose limit would end past the
# deadline is skipped (see benchmarks/RESULTS.md for what a run printed).
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]        # default OUT_DIR: $OUT, else gpu-check/
#
# Uses the machine's python3 (PyTorch with CUDA) and this checkout's src/ (no install). Wheels that the
# machine lacks (diffusers for the VAE benchmarks) are installed from .whl/ when that folder exists; make it with
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 -d .whl \
#       diffusers==0.42.1 importlib_metadata
# Each stage has its own time limit, so a slow stage costs its own numbers only. Results go to OUT_DIR.
set -u
cd "$(dirname "$0")/.."
out=${1:-${OUT:-gpu-check}}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD/src:$PWD/benchmarks${PYTHONPATH:+:$PYTHONPATH}
deadline=${GPU_CHECK_SECONDS:-480}
stage() {  # stage NAME SECONDS COMMAND...: run with a limit, keep the log, report time and status
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  if (( SECONDS + limit > deadline )); then
    echo "=== $name: skipped (its ${limit}s limit would end past the ${deadline}s deadline)"; return
  fi
  echo "=== $name (limit ${limit}s): $*"
  timeout "$limit" "$@" 2>&1 | tee "$out/$name.txt"
  echo "=== $name: exit ${PIPESTATUS[0]} after $((SECONDS - t0)) s"
}
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; python3 -c "import torch; print('torch', torch.__version__)"; } \
  > "$out/env.txt" 2>&1; cat "$out/env.txt"
stage tests 110 python3 -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider
b2=(model=DiT-B/2 data=synthetic:4x32x32 batch_size=256 precision=bf16)
stage objectives 120 python3 benchmarks/objective_steps.py --repeats 8 "${b2[@]}"
stage objective_memory 90 python3 benchmarks/objective_steps.py --memory --objective meanflow --objective esc \
  --objective imf --objective sct "${b2[@]}"
stage jvp_attention 40 python3 benchmarks/jvp_attention.py --rows 64 --repeats 10
stage sample_1000 60 python3 benchmarks/gpu_throughput.py --models DiT-B/2 --no-training --sample-batch 1000
stage train_step 45 python3 benchmarks/train_step.py --repeats 20
stage sampling 40 python3 benchmarks/sampling_overhead.py --model DiT-B/2 --shape 4x32x32 --classes 1000 --batch 64 --repeats 2
stage sampling_guided 25 python3 benchmarks/sampling_overhead.py --model DiT-B/2 --shape 4x32x32 --classes 1000 --batch 128 --cfg-scale 1.5 --repeats 3 --steps 1,16
stage reference 60 python3 benchmarks/reference_loop.py --repeats 8
stage throughput 200 python3 benchmarks/gpu_throughput.py --compile-models DiT-B/2 --json "$out/throughput.jsonl"
