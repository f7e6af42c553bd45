"""tools/benchmark.py measures one small configuration and writes consistent JSON."""

import gzip
import json
import math
import os
import subprocess
import sys

import keras
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The tool's arithmetic and report are the same on every backend (its timings are what differ, and timings are
# not tested): tools/run_tests.sh runs this module once, in its TensorFlow pass.
pytestmark = pytest.mark.backend_neutral


@pytest.mark.heavy
def test_benchmark_writes_the_step_its_parts_and_the_overhead(tmp_path):
    backend = keras.backend.backend()
    output = tmp_path / "bench.json"
    command = [sys.executable, os.path.join(ROOT, "tools", "benchmark.py"), "--backend", backend,
               # Without XLA on both backends: the tool's arithmetic is what is tested, and three XLA
               # compilations of the step would take most of a minute on a CPU.
               "--jit", "off", "--teacher", "resnet8", "--student", "resnet8",
               "--input_shape", "28,28,1", "--num_classes", "10", "--batch_sizes", "8",
               "--steps", "2", "--warmup", "1", "--output", str(output)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads(output.read_text())
    assert (report["teacher"], report["student"], report["augmentation"]) == ("resnet8", "resnet8", "mixup")
    [result] = report["results"]
    assert (result["backend"], result["batch_size"], result["precision"]) == (backend, 8, "float32")
    # The reported rates and the overhead follow from the measured step times.
    assert result["distill_images_per_s"] == pytest.approx(8 / (result["distill_step_ms"] / 1e3))
    assert result["student_2x_images_per_s"] == pytest.approx(16 / (result["student_2x_step_ms"] / 1e3))
    assert result["overhead"] == pytest.approx(
        result["distill_step_ms"] / (result["teacher_ms"] + result["student_2x_step_ms"]))
    assert result["peak_host_rss_mib"] > 100
    assert result["peak_accelerator_mib"] is None or result["peak_accelerator_mib"] > 0  # None on a CPU


def test_benchmark_measures_the_distillation_step_alone_when_asked():
    from keras_calikd.cli import benchmark

    args = benchmark.parse_args(["--teacher", "resnet8", "--student", "resnet8", "--input_shape", "8,8,1",
                                 "--num_classes", "4", "--steps", "2", "--warmup", "1", "--parts", "distill",
                                 "--worker", "off:float32:8:separate:0"])
    result = benchmark.run_worker(args)
    assert (result["jit"], result["student_passes"], result["hlo_operations"]) == (False, "separate", None)
    assert result["distill_compilation_s"] is None  # JAX's compilation events only
    # The parts left out are reported as not measured, and so is the overhead that needs them.
    assert (result["teacher_images_per_s"], result["teacher_ms"]) == (None, None)
    assert (result["student_2x_images_per_s"], result["student_2x_step_ms"], result["overhead"]) == (None,) * 3
    assert result["distill_images_per_s"] == pytest.approx(8 / (result["distill_step_ms"] / 1e3))
    assert 0 < result["distill_first_call_s"] < result["distill_compile_and_warmup_s"]
    assert result["distill_first_call_cpu_s"] > 0
    assert benchmark._shown(None, 6, ".1f") == "     -" and benchmark._shown(2.25, 6, ".1f") == "   2.2"


@pytest.mark.parametrize("argv, message", [
    (["--parts", "distill,gpu"], "--parts: unknown gpu; choose from distill, teacher, student."),
    (["--student_passes", "fused,one"], "--student_passes: unknown one; choose from fused, separate."),
    (["--steps_per_execution", "0"], "--steps_per_execution must be a positive integer; got 0."),
    (["--backend", "tensorflow", "--trace_dir", "t"],
     "--trace_dir records a JAX profile: give --backend jax (got --backend tensorflow)."),
])
def test_benchmark_rejects_bad_options_with_one_error_line(argv, message, capsys):
    from keras_calikd.cli import benchmark, common

    assert common.run(benchmark.main, argv) == common.EXIT_ERROR
    assert capsys.readouterr().err == f"error: {message}\n"


def test_a_configuration_past_its_timeout_is_reported_and_the_rest_kept(tmp_path, capsys):
    from keras_calikd.cli import benchmark, common

    output = tmp_path / "bench.json"
    argv = ["--backend", "jax", "--parts", "distill", "--batch_sizes", "8", "--student_passes", "fused,separate",
            "--timeout", "0.01", "--output", str(output)]  # no worker starts, let alone measures, in 0.01 s
    assert common.run(benchmark.main, argv) == 1  # nothing measured
    rows = capsys.readouterr().out.splitlines()[2:]
    assert [row.split()[:5] for row in rows] == [["jax", "auto", "float32", "8", passes] for passes in
                                                 ("fused", "separate")]
    assert all(row.endswith("ended after its --timeout of 0.01 s") for row in rows)
    report = json.loads(output.read_text())
    assert report["results"] == [] and [f["configuration"] for f in report["failures"]] == [
        "auto:float32:8:fused:0", "auto:float32:8:separate:0"]


def test_a_benchmark_ended_from_outside_leaves_no_worker_and_no_temporary_folder(tmp_path, monkeypatch):
    import signal
    import tempfile
    import threading
    import time

    from keras_calikd.cli import benchmark

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    workers = []
    popen = subprocess.Popen

    def recorded(*args, **kwargs):
        workers.append(popen(*args, **kwargs))
        return workers[-1]

    monkeypatch.setattr(subprocess, "Popen", recorded)

    def end_from_outside():  # as `timeout` does, once the worker runs
        while not workers:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)

    handler = signal.getsignal(signal.SIGTERM)
    threading.Thread(target=end_from_outside, daemon=True).start()
    try:
        with pytest.raises(SystemExit) as ended:
            benchmark.main(["--backend", "jax", "--parts", "distill", "--batch_sizes", "8"])
    finally:
        signal.signal(signal.SIGTERM, handler)
    assert ended.value.code == 128 + signal.SIGTERM
    assert workers[0].poll() is not None  # the worker was ended with its parent
    assert list(tmp_path.iterdir()) == []  # and its HLO folder removed


# A GPU's optimised HLO, abridged to one instruction of each kind that counts (and some that do not).
GPU_HLO = """HloModule jit_train_step, is_scheduled=true, entry_computation_layout={(f32[8]{0})->f32[8]{0}}

%add (x: f32[], y: f32[]) -> f32[] {
  %x = f32[] parameter(0)
  %y = f32[] parameter(1)
  ROOT %add.1 = f32[] add(f32[] %x, f32[] %y)
}

%fused_convert (param_0: f32[8]) -> f32[8] {
  %param_0 = f32[8]{0} parameter(0)
  ROOT %negate = f32[8]{0} negate(f32[8]{0} %param_0)
}

%triton_gemm (p0: bf16[8,8], p1: bf16[8,8]) -> bf16[8,8] {
  %p0 = bf16[8,8]{1,0} parameter(0)
  %p1 = bf16[8,8]{1,0} parameter(1)
  ROOT %dot.2 = bf16[8,8]{1,0} dot(bf16[8,8]{1,0} %p0, bf16[8,8]{1,0} %p1), lhs_contracting_dims={1}
}

%command_buffer (p: f32[8]) -> f32[8] {
  %p = f32[8]{0} parameter(0)
  ROOT %loop_fusion = f32[8]{0} fusion(f32[8]{0} %p), kind=kLoop, calls=%fused_convert
}

ENTRY %main.9 (Arg_0.1: f32[8]) -> f32[8] {
  %Arg_0.1 = f32[8]{0} parameter(0)
  %constant.1 = f32[] constant(0)
  %custom-call.1 = (f32[1,4,4,8]{3,2,1,0}, u8[0]{0}) custom-call(f32[8]{0} %Arg_0.1), custom_call_target="__cudnn$convForward"
  %get-tuple-element.1 = f32[1,4,4,8]{3,2,1,0} get-tuple-element((f32[1,4,4,8]{3,2,1,0}, u8[0]{0}) %custom-call.1), index=0
  %custom-call.2 = (f32[8,8]{1,0}, s8[4]{0}) custom-call(f32[8]{0} %Arg_0.1), custom_call_target="__cublas$gemm"
  %gemm_fusion = bf16[8,8]{1,0} fusion(f32[8]{0} %Arg_0.1), kind=kCustom, calls=%triton_gemm
  %reduce.1 = f32[] reduce(f32[8]{0} %Arg_0.1, f32[] %constant.1), dimensions={0}, to_apply=%add
  %call.1 = f32[8]{0} call(f32[8]{0} %Arg_0.1), to_apply=%command_buffer
  ROOT %copy.1 = f32[8]{0} copy(f32[8]{0} %call.1)
}
"""


def test_hlo_counts_count_what_a_step_launches():
    from keras_calikd.cli import xla

    # convolutions: the cuDNN call; dots: the cuBLAS call and the dot inside the Triton GEMM fusion; fusions: the
    # Triton fusion and the fusion inside the command buffer; launches: those, the reduce and the copy, not the
    # parameter, constant, tuple access or call; the add inside the reduce's computation is no launch.
    assert xla.count_operations(GPU_HLO) == dict(convolutions=1, dots=2, fusions=2, launches=6, command_buffers=1)


def test_hlo_counts_of_a_program_compiled_here():
    import jax
    import jax.numpy as jnp

    from keras_calikd.cli import xla

    def program(images, kernel, weights):
        features = jax.lax.conv_general_dilated(images, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO",
                                                                                                    "NHWC"))
        return jnp.tanh(features.mean(axis=(1, 2)) @ weights), jnp.tanh(features.sum() * weights).sum()

    shapes = [jax.ShapeDtypeStruct(s, "float32") for s in ((2, 8, 8, 3), (3, 3, 3, 4), (4, 5))]
    counts = xla.count_operations(jax.jit(program).lower(*shapes).compile().as_text())
    assert (counts["convolutions"], counts["dots"]) == (1, 1) and counts["fusions"] >= 1
    assert counts["launches"] >= counts["fusions"] + 1  # the convolution at least, outside the fusions


def test_the_compilation_seconds_of_the_training_step_are_collected_on_jax():
    import jax
    import jax.numpy as jnp

    from keras_calikd.cli import benchmark

    def train_step(x):
        return jnp.tanh(x).sum()

    def other(x):
        return jnp.cos(x).sum()

    with benchmark.compilation_seconds("jax") as seconds:
        jax.jit(other)(jnp.ones(3))
        assert seconds == {}  # another function's compilation is not the step's
        jax.jit(train_step)(jnp.ones(3))
    assert set(seconds) == {"trace", "lowering", "xla"} and min(seconds.values()) > 0
    counted = dict(seconds)
    jax.jit(train_step)(jnp.ones(4))  # a new shape, compiled after the context: not counted
    assert seconds == counted
    assert benchmark.compilation_seconds("tensorflow").__enter__() == {}


def test_xla_flags_are_appended_to_the_users_and_candidates_resolve_by_name():
    from keras_calikd.cli import xla

    assert xla.with_flags({"XLA_FLAGS": "--a=1", "HOME": "h"}, "--b=2", "")["XLA_FLAGS"] == "--a=1 --b=2"
    assert xla.with_flags({}, xla.resolve("autotune_0"))["XLA_FLAGS"] == "--xla_gpu_autotune_level=0"
    assert xla.resolve("xla_default") == "" and xla.resolve("--xla_x=1") == "--xla_x=1"


def test_record_trace_writes_a_perfetto_trace_of_the_run(tmp_path):
    # In a process of its own on JAX: the profiler is JAX's, and this pass's process holds TensorFlow's.
    code = ("import sys\nimport jax.numpy as jnp\nfrom keras_calikd.cli.benchmark import record_trace\n"
            "def traced_run(n):\n    return [float(jnp.arange(4.0).sum()) for _ in range(n)]\n"
            "print(record_trace(traced_run, 3, sys.argv[1]))\n")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=ROOT))
    assert done.returncode == 0, done.stderr[-2000:]
    path = done.stdout.strip().splitlines()[-1]
    assert path.startswith(str(tmp_path / "plugins" / "profile")) and path.endswith("perfetto_trace.json.gz")
    with gzip.open(path) as f:
        names = [event.get("name", "") for event in json.load(f)["traceEvents"]]
    assert sum(name.endswith(" traced_run") for name in names) == 1  # the run, recorded once


@pytest.mark.heavy
def test_benchmark_fit_times_each_epoch_and_counts_the_step_compilations(tmp_path):
    output = tmp_path / "fit.json"
    command = [sys.executable, os.path.join(ROOT, "tools", "benchmark_fit.py"), "--runs", "kd+mixup,crd+cutmix",
               "--teacher", "resnet8", "--student", "resnet8", "--input_shape", "16,16,3", "--num_classes", "10",
               "--examples", "80", "--batch_size", "32", "--epochs", "2", "--jit", "off",
               "--validation_examples", "16", "--eval_batch_size", "8", "--project_epochs", "10",
               "--gin_param", "CRD.num_negatives = 8", "--output", str(output)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads(output.read_text())
    results = report["results"]
    assert [r["run"] for r in results] == ["kd+mixup", "crd+cutmix"]
    for r in results:
        assert len(r["epoch_seconds"]) == 2 and min(r["epoch_seconds"]) > 0
        # 16 held-out images evaluated after each epoch, timed apart from the training images/s
        assert len(r["evaluation_seconds"]) == 2 and 0 < r["evaluation_seconds"][-1] < r["epoch_seconds"][-1]
        assert r["last_epoch_images_per_s"] == pytest.approx(
            80 / (r["epoch_seconds"][-1] - r["evaluation_seconds"][-1]))
        assert r["projected_minutes"] == pytest.approx((r["epoch_seconds"][0] + 9 * r["epoch_seconds"][1]) / 60)
        # Batches of 32, 32 and 16, in both epochs: TensorFlow (this module's pass) traces the step once, for any
        # batch size; JAX traces it once per batch shape (two here; the GPU runs of docs/benchmarks.md show it).
        assert r["step_traces"] == 1 and r["traced_batch_shapes"] == [[None, 16, 16, 3]]
        assert math.isfinite(r["last_epoch_loss"]) and r["last_epoch_loss"] > 0
    assert [r["augmentation"]["name"] for r in results] == ["mix_up", "cut_mix"]
    assert results[1]["distillations"][0]["num_negatives"] == 8  # the gin binding reached the strategy
    assert report["gin_params"] == ["CRD.num_negatives = 8"] and report["epochs"] == 2


@pytest.mark.parametrize("argv, message", [
    (["--runs", "kd"], "--runs: 'kd' is not a <distillation>+<augmentation> pair, such as kd+mixup."),
    (["--epochs", "0"], "--epochs must be a positive integer; got 0."),
    (["--runs", "kd+mixupp"], "Unknown augmentation strategy 'mixupp'. Known names: "),
    (["--runs", "kd+mixup", "--student", "resnet9"], "Unknown model architecture 'resnet9'. Known names: "),
])
def test_benchmark_fit_rejects_bad_options_with_one_error_line(argv, message, capsys):
    from keras_calikd.cli import benchmark_fit, common

    assert common.run(benchmark_fit.main, argv) == common.EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1  # checked before any data is made
