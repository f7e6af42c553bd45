#!/usr/bin/env bash
# The GPU measurements of docs/benchmarks.md, in one go, on the JAX backend (no TensorFlow needed):
#   OUT=results_folder bash tools/gpu_benchmarks.sh [path/to/torch_ref.py]
# 1. the PyTorch reference step (when its path is given), float32 and bfloat16, batches 64 and 256;
# 2. calikd-benchmark: VGG13 -> MobileNetV2, KD + mixup, float32 at batch 64 (with a profiler trace of 10
#    steps) and mixed_bfloat16 at batch 256;
# 3. calikd-benchmark-fit: two epochs of KD + mixup, KD + CutMix and CRD + CutMix on 50,000 CIFAR-shaped images.
# Every part has its own time limit and writes its results under $OUT as it ends, so a part that fails or runs
# out of time leaves the others' results. BENCH_ARGS and FIT_ARGS, when set, are appended to the options of
# calikd-benchmark and calikd-benchmark-fit (later options win): a small trial run on a CPU, for instance.
set -u
out=${OUT:-gpu_results}
mkdir -p "$out"
root=$(cd "$(dirname "$0")/.." && pwd)
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
stamp() { echo "== $(date -u +%H:%M:%S) $*"; }

stamp machine
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/machine.txt"
python3 - <<'PY' | tee -a "$out/machine.txt"
import platform, sys
import jax, keras, numpy
import keras_calikd  # noqa: F401  (the training core, models and strategies)
assert "tensorflow" not in sys.modules, "importing keras_calikd imported TensorFlow"
try:
    import torch
    torch_version = torch.__version__
except ImportError:
    torch_version = "none"
print(f"python {platform.python_version()}, jax {jax.__version__}, keras {keras.__version__}, "
      f"numpy {numpy.__version__}, torch {torch_version}, devices {jax.devices()}; keras_calikd imported "
      "without TensorFlow")
PY

if [ $# -ge 1 ]; then
    stamp "PyTorch reference step (STEM_STRIDE=2, the zoo's MobileNetV2)"
    STEM_STRIDE=2 timeout 120 python3 "$1" 50 eager,cl+bf16 64,256 | tee "$out/torch_ref.jsonl"
fi

stamp "calikd-benchmark, float32, batch 64"
timeout 200 python3 "$root/tools/benchmark.py" --backend jax --jit on --precision float32 --batch_sizes 64 \
    --steps 200 --warmup 10 --trace_dir /tmp/calikd_trace --output "$out/bench_float32_64.json" ${BENCH_ARGS:-}
trace=$(ls -t /tmp/calikd_trace/plugins/profile/*/perfetto_trace.json.gz 2>/dev/null | head -1)
[ -n "$trace" ] && cp "$trace" "$out/trace_float32_64.json.gz"

stamp "calikd-benchmark, mixed_bfloat16, batch 256"
timeout 200 python3 "$root/tools/benchmark.py" --backend jax --jit on --precision mixed_bfloat16 \
    --batch_sizes 256 --steps 200 --warmup 10 --output "$out/bench_bfloat16_256.json" ${BENCH_ARGS:-}

stamp "calikd-benchmark-fit: 2 epochs x 3 runs, 50,000 images, batch 64, float32"
timeout 300 python3 "$root/tools/benchmark_fit.py" --output "$out/fit.json" ${FIT_ARGS:-}
stamp done
