#!/usr/bin/env bash
# Benchmarks the AlexNet train step (Krizhevsky et al., 2012) on one GPU: bfloat16 compute,
# global batch 256 and 512, synthetic device-resident data, mesh 1x1.
#
# It prints images/s and MFU. The peak defaults to 989 TFLOP/s, the dense
# BF16 figure of an H200 SXM: NVIDIA's H200 spec sheet gives 1,979 TFLOP/s
# with 2:4 sparsity, and dense is half of that, so MFU is an estimate. Set
# PEAK_TFLOPS for another GPU.
#
# Needs a CUDA build of the pinned JAX, for example:
#   pip install "jax[cuda12]==0.10.2"
#
# NOTE: not yet run on a GPU; only the CPU path of the bench is tested.
#
# Usage: benchmarks/gpu.sh [extra bench flags]
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
PEAK_TFLOPS="${PEAK_TFLOPS:-989}"
OUTPUT="${OUTPUT:-gpu_bench.json}"

"$PYTHON" -c 'import jax, sys
gpus = [d for d in jax.devices() if d.platform == "gpu"]
if not gpus:
  sys.exit(f"No GPU visible to JAX (devices: {jax.devices()}). Install a "
           "CUDA build: pip install \"jax[cuda12]==0.10.2\".")
print(f"GPU: {gpus[0].device_kind}")'

"$PYTHON" -m alexnet_jax.bench \
  --config=configs/ilsvrc2012.py \
  --meshes=1x1 \
  --batch_sizes=256,512 \
  --dtypes=bfloat16 \
  --warmup=5 \
  --steps=20 \
  --peak_tflops="$PEAK_TFLOPS" \
  --output="$OUTPUT" \
  "$@"
