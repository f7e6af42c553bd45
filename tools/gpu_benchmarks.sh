#!/usr/bin/env bash
# The GPU measurements of docs/benchmarks.md, in one call of a lent GPU machine, on the JAX backend. The machine
# has JAX, PyTorch and CUDA but no TensorFlow and no network: Keras, gin-config and the Keras dependencies it
# lacks travel as wheels in .whl/ (git-ignored), with the PyTorch reference loop.
#
#   bash tools/gpu_benchmarks.sh prepare [path/to/torch_ref.py]   # here, with PyPI: fills .whl/
#   bash tools/gpu_benchmarks.sh run                              # there, in the checkout's root, OUT set
#
# The device call: command "bash tools/gpu_benchmarks.sh run", carry [".whl"], timeout_s 600. The parts run in
# this order, each under its own time limit, and a part starts only while the budget (GPU_BUDGET_S, default
# 540 s from the start) holds it, so the call ends in time whatever a part does:
#   machine            the GPU, the versions, and a check that keras_calikd imports without TensorFlow;
#   fp32_b64_fused     calikd-benchmark's distillation step, float32, batch 64, the student's passes fused: step
#                      time, compilation (distill_first_call_s, distill_compile_and_warmup_s), the compiled
#                      step's HLO counts, and a profile of 10 steps;
#   torch_2, torch_1   the PyTorch loop (STEM_STRIDE=2: the zoo's MobileNetV2), eager and channels-last bf16,
#                      batches 64 and 256: two student passes (this project's work), then one pass on the two
#                      batches concatenated;
#   fp32_b64_separate  the same step with the student's two passes as two calls (before issue 36's fusion);
#   bf16_b256_*        the mixed_bfloat16 step at batch 256, with XLA's defaults and with compile-time candidates
#   fp32_b64_*         (keras_calikd/cli/xla.py, CANDIDATES): compilation and step time of each;
#   fp32_b64_spe8      8 steps per execution (the compiled step comes from fp32_b64_fused's cache);
#   fit                calikd-benchmark-fit, KD + mixup: two epochs of 50,000 CIFAR-shaped images, 10,000
#                      evaluated after each, and the projected minutes of a 240-epoch Table-1 cell.
# $OUT receives log.txt (everything printed), results.json (every part's status, seconds and results, rewritten
# after each part), the profile and the optimised HLO of the float32 steps (gzipped): 5 files.
# GPU_BENCH_SMALL=1 runs every part at toy sizes (ResNet-8 pair, 16x16 images, a few steps), on any machine with
# JAX and PyTorch: the dry run that checks the script before a lease (docs/benchmarks.md says how it was run).
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
wheels=${GPU_WHEELS:-$root/.whl}

if [ "${1:-}" = prepare ]; then
    # Versions as in the environment the tests ran with; Python 3.12 as on the GPU machines (PY to change it).
    mkdir -p "$wheels"
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version "${PY:-3.12}" --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$wheels" keras==3.15.1 gin-config==0.5.0 namex==0.1.0 optree==0.20.0 || exit 1
    reference=${2:-}
    for candidate in "$root/../shared/reference/torch_ref.py" "$root/../../shared/reference/torch_ref.py"; do
        [ -z "$reference" ] && [ -f "$candidate" ] && reference=$candidate
    done
    install -m 644 "$reference" "$wheels/torch_ref.py" || exit 1
    ls -la "$wheels"
    exit 0
fi
[ "${1:-}" = run ] || { echo "usage: bash tools/gpu_benchmarks.sh prepare [torch_ref.py] | run" >&2; exit 2; }

out=${OUT:-gpu_results}
work=$(mktemp -d /tmp/calikd_gpu.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out" "$work/json"
exec > >(tee -a "$out/log.txt") 2>&1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$work/site" \
    "$wheels"/*.whl || exit 1
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3 PYTHONPATH="$work/site:$root"
start=$(date +%s)
budget=${GPU_BUDGET_S:-540}
scale=1 min_part=40
b64=64 b256=256 steps=200 warmup=10 spe_warmup=16 trace_steps=10 torch_steps=30 torch_modes=eager,cl+bf16 torch_batches=64,256
models="--teacher vgg13 --student MobileNetV2 --num_classes 100 --input_shape 32,32,3"
fit_sizes="--examples 50000 --validation_examples 10000 --eval_batch_size 500"
if [ "${GPU_BENCH_SMALL:-0}" = 1 ]; then  # toy sizes: the same parts, on a CPU in minutes
    budget=${GPU_BUDGET_S:-3600} scale=4 min_part=20
    b64=8 b256=16 steps=3 warmup=1 spe_warmup=8 trace_steps=2 torch_steps=1 torch_batches=4
    models="--teacher resnet8 --student resnet8 --num_classes 10 --input_shape 16,16,3"
    fit_sizes="--examples 256 --validation_examples 64 --eval_batch_size 32"
fi
bench="python3 -m keras_calikd.cli.benchmark --backend jax --parts distill --steps $steps --warmup $warmup $models"
cache=$work/jax_cache  # the float32 fused step, compiled once: reused by the steps-per-execution part and the fit

stamp() { echo "== $(date -u +%H:%M:%S) $*"; }
merge() {  # results.json: the parts so far, with what each wrote
    python3 - "$work" "$out/results.json" <<'PY'
import json, os, sys
work, target = sys.argv[1:]
parts = {}
with open(os.path.join(work, "parts.tsv")) as f:
    for line in f:
        name, status, seconds, limit = line.rstrip("\n").split("\t")
        parts[name] = {"status": status, "seconds": int(seconds), "limit_s": int(limit)}
for name, part in parts.items():
    for suffix in (".json", ".jsonl"):
        path = os.path.join(work, "json", name + suffix)
        if os.path.exists(path):
            with open(path) as f:
                text = f.read()
            try:
                part["results"] = json.loads(text) if suffix == ".json" else [
                    json.loads(line) for line in text.splitlines() if line.startswith("{")]
            except ValueError as error:
                part["results_error"] = str(error)
with open(target + ".tmp", "w") as f:
    json.dump({"parts": parts}, f, indent=1)
os.replace(target + ".tmp", target)
PY
}
part() {  # part NAME LIMIT COMMAND...: runs COMMAND under min(LIMIT, what the budget leaves), records it
    local name=$1 limit=$(( $2 * scale )); shift 2
    local left=$(( budget - ($(date +%s) - start) - 10 ))
    if [ "$left" -lt "$min_part" ]; then
        stamp "$name skipped: $left s of the budget left"
        printf '%s\tskipped\t0\t0\n' "$name" >> "$work/parts.tsv"
        merge
        return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    stamp "$name (limit $limit s)"
    local began=$(date +%s) status=ok
    timeout -k 10 "$limit" "$@"
    local rc=$?
    [ $rc -eq 124 ] || [ $rc -eq 137 ] && status="ended at its limit"
    [ $rc -ne 0 ] && [ "$status" = ok ] && status="failed with status $rc"
    printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$(( $(date +%s) - began ))" "$limit" >> "$work/parts.tsv"
    merge
}
export MACHINE_PY='
import json, os, platform, sys
import jax, keras, numpy
import keras_calikd  # noqa: F401  (the training core, models and strategies)
assert "tensorflow" not in sys.modules, "importing keras_calikd imported TensorFlow"
try:
    import torch
    torch_version = torch.__version__
except ImportError:
    torch_version = "none"
versions = {"python": platform.python_version(), "jax": jax.__version__, "jaxlib": jax.lib.__version__,
            "keras": keras.__version__,
            "numpy": numpy.__version__, "torch": torch_version, "devices": [str(d) for d in jax.devices()],
            "tensorflow_imported": False, "xla_flags": os.environ.get("XLA_FLAGS", "")}
print(json.dumps(versions))
with open(os.path.join(os.environ["CALIKD_GPU_WORK"], "json", "machine.json"), "w") as f:
    json.dump(versions, f)
'
export CALIKD_GPU_WORK=$work

part machine 30 bash -c 'command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total \
    --format=csv,noheader; python3 -c "$MACHINE_PY"'
part fp32_b64_fused 120 env JAX_COMPILATION_CACHE_DIR="$cache" $bench --precision float32 --batch_sizes $b64 \
    --timeout $(( 110 * scale )) --trace_dir "$work/trace" --trace_steps $trace_steps --hlo_dir "$work/hlo" \
    --output "$work/json/fp32_b64_fused.json"
trace=$(ls -t "$work"/trace/plugins/profile/*/perfetto_trace.json.gz 2>/dev/null | head -1)
[ -n "$trace" ] && cp "$trace" "$out/trace_fp32_b64_fused.json.gz"
for passes in 2 1; do
    part torch_$passes 60 bash -o pipefail -c "STEM_STRIDE=2 STUDENT_PASSES=$passes python3 '$wheels/torch_ref.py' $torch_steps \
        $torch_modes $torch_batches | tee '$work/json/torch_$passes.jsonl'"
done
part fp32_b64_separate 100 $bench --precision float32 --batch_sizes $b64 --student_passes separate \
    --timeout $(( 90 * scale )) --hlo_dir "$work/hlo" --output "$work/json/fp32_b64_separate.json"
for f in "$work"/hlo/*.txt; do [ -f "$f" ] && gzip -c "$f" > "$out/hlo_$(basename "$f").gz"; done
part bf16_b256_no_triton_gemm 110 $bench --precision mixed_bfloat16 --batch_sizes $b256 --xla_flags no_triton_gemm \
    --timeout $(( 100 * scale )) --output "$work/json/bf16_b256_no_triton_gemm.json"
part bf16_b256_xla_default 130 $bench --precision mixed_bfloat16 --batch_sizes $b256 --xla_flags xla_default \
    --timeout $(( 120 * scale )) --output "$work/json/bf16_b256_xla_default.json"
part fp32_b64_spe8 60 env JAX_COMPILATION_CACHE_DIR="$cache" $bench --precision float32 --batch_sizes $b64 \
    --steps_per_execution 8 --warmup $spe_warmup --steps $(( steps < 8 ? 8 : steps )) \
    --timeout $(( 55 * scale )) --output "$work/json/fp32_b64_spe8.json"
part fit 130 env JAX_COMPILATION_CACHE_DIR="$cache" python3 -m keras_calikd.cli.benchmark_fit --runs kd+mixup \
    --epochs 2 --batch_size $b64 $models $fit_sizes --output "$work/json/fit.json"
for candidate in command_buffers_with_convolutions no_triton_gemm autotune_0; do
    part fp32_b64_$candidate 90 $bench --precision float32 --batch_sizes $b64 --xla_flags $candidate \
        --timeout $(( 85 * scale )) --output "$work/json/fp32_b64_$candidate.json"
done
part bf16_b256_autotune_0 90 $bench --precision mixed_bfloat16 --batch_sizes $b256 --xla_flags autotune_0 \
    --timeout $(( 85 * scale )) --output "$work/json/bf16_b256_autotune_0.json"
stamp "done in $(( $(date +%s) - start )) s"
