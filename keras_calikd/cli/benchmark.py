"""calikd-benchmark: images per second of the distillation step next to its parts, on the current machine.

    calikd-benchmark                                   # VGG13 -> MobileNetV2, KD + mixup, CIFAR-100 shapes
    calikd-benchmark --backend tensorflow,jax --jit both --batch_sizes 64,256 --output bench.json
    calikd-benchmark --teacher resnet20 --student resnet8 --input_shape 28,28,1 --num_classes 10
    calikd-benchmark --backend jax --batch_sizes 64 --student_passes fused,separate --parts distill
    calikd-benchmark --backend jax --parts distill --xla_flags xla_default --xla_flags autotune_1 --timeout 120

For every backend x XLA setting x precision x batch size x student passes x XLA flags, a fresh process
measures:

- `distill`: the full training step of the `Distiller` (teacher on the clean batch, student on the clean and
  the augmented batch, backward, SGD) on batch B;
- `teacher`: the teacher's inference on batch B;
- `student_2x`: the student's plain training step (cross-entropy, SGD) on batch 2B;

and reports images/s (B images per distillation step), the overhead
`distill step time / (teacher time + student_2x time)`, the time of the first `fit` call of the distillation
step (its compilation, plus one execution), and the process's peak memory (host RSS; plus the accelerator's
peak where the backend reports it). Input data are random NumPy arrays already in memory, so the input
pipeline is not measured (see keras_calikd.cli.benchmark_data).

`--jit auto` (the default) compiles as `fit` does by default (`jit_compile="auto"`: XLA on JAX and on a
TensorFlow GPU, TensorFlow's graph on a CPU). On JAX with XLA the compiled step's optimised HLO is counted:
its convolutions, dot products and fusions, and its launches (`keras_calikd.cli.xla.count_operations`).
`--student_passes separate` runs the student's clean and augmented passes as two calls instead of one fused
call (JAX; TensorFlow always runs two). `--xla_flags` takes XLA flags, or the name of one of
`keras_calikd.cli.xla.CANDIDATES`, once per setting to measure; `--timeout` ends a configuration that runs
longer (its row says so). On JAX the seconds the step's compilation spent in tracing, lowering and XLA's
compiler are reported too (the table's "XLA s").
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from typing import NamedTuple

from keras_calikd.cli import common, xla


PARTS = ("distill", "teacher", "student")
PASSES = ("fused", "separate")
JIT = {"auto": "auto", "on": True, "off": False}


def parse_args(argv=None):
    parser = common.tool_parser("calikd-benchmark", __doc__)
    parser.add_argument("--backend", default=os.environ.get("KERAS_BACKEND", "jax"),
                        help="comma-separated Keras backends (tensorflow, jax)")
    parser.add_argument("--jit", default="auto", choices=("auto", "on", "off", "both"),
                        help="XLA compilation of the steps: auto (as fit compiles by default), on, off, both (on, off)")
    parser.add_argument("--precision", default="float32", help="comma-separated: float32, mixed_bfloat16")
    parser.add_argument("--batch_sizes", default="64,256")
    parser.add_argument("--teacher", default="vgg13")
    parser.add_argument("--student", default="MobileNetV2")
    parser.add_argument("--distillation", default="kd", help="registered distillation strategy")
    parser.add_argument("--augmentation", default="mixup", help="registered augmentation strategy")
    parser.add_argument("--num_classes", type=int, default=100)
    parser.add_argument("--input_shape", default="32,32,3")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help="comma-separated measurements to make (distill is always made): teacher, student")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps after compilation")
    parser.add_argument("--student_passes", default="fused",
                        help="comma-separated: fused (one call for both passes, where the student allows; JAX), "
                             "separate (two calls)")
    parser.add_argument("--steps_per_execution", type=int, default=1, help="steps per execution of the compiled step")
    parser.add_argument("--xla_flags", action="append", default=None, metavar="FLAGS",
                        help="XLA flags for the measured processes, or a candidate's name ("
                             + ", ".join(xla.CANDIDATES) + "); repeat to measure several settings")
    parser.add_argument("--timeout", type=float, help="seconds after which a configuration's process is ended")
    parser.add_argument("--hlo_dir", help="JAX with XLA: keep each configuration's compiled step (optimised HLO "
                                          "text) in this folder")
    parser.add_argument("--input_checks", action="store_true",
                        help="also measure what the Distiller's input checks cost per step on a tf.data pipeline")
    parser.add_argument("--output", help="write the results as JSON")
    parser.add_argument("--trace_dir", help="JAX only: after the timings, record --trace_steps distillation steps "
                                            "with the JAX profiler here (a Perfetto trace, for ui.perfetto.dev)")
    parser.add_argument("--trace_steps", type=int, default=10)
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one configuration, in this process
    common.add_debug_flag(parser)
    args = parser.parse_args(argv)
    args.xla_flags = args.xla_flags or [""]
    for option, given, known in (("--parts", args.parts, PARTS), ("--student_passes", args.student_passes, PASSES)):
        unknown = set(given.split(",")) - set(known)
        if unknown:
            raise ValueError(f"{option}: unknown {', '.join(sorted(unknown))}; choose from {', '.join(known)}.")
    if args.steps_per_execution < 1:
        raise ValueError(f"--steps_per_execution must be a positive integer; got {args.steps_per_execution}.")
    if args.trace_dir and args.backend.split(",") != ["jax"]:
        raise ValueError(f"--trace_dir records a JAX profile: give --backend jax (got --backend {args.backend}).")
    return args


class Timing(NamedTuple):
    """Seconds per step after the first call and the warm-up; seconds of the first call (which compiles), of
    the first call and the warm-up, and the process's CPU seconds in the first call (less sensitive than the
    wall clock to other processes on a shared machine)."""

    step: float
    first_call: float
    first_call_and_warmup: float
    first_call_cpu: float


def _seconds_per_step(run, steps, warmup, first=1) -> Timing:
    """Times `run(n)` (which runs n steps): a first call of `first` steps, `warmup` steps, then `steps` steps."""
    started, started_cpu = time.perf_counter(), time.process_time()
    run(first)
    compiled, compiled_cpu = time.perf_counter(), time.process_time()
    run(warmup)
    warm = time.perf_counter()
    run(steps)
    return Timing((time.perf_counter() - warm) / steps, compiled - started, warm - started,
                  compiled_cpu - started_cpu)


def record_trace(run, steps, folder) -> str:
    """Runs `run(steps)` under the JAX profiler; returns the path of the Perfetto trace (gzipped JSON) it wrote.

    Each call adds a time-stamped folder under `folder/plugins/profile/`; the newest trace is this call's.
    """
    import glob

    import jax

    with jax.profiler.trace(folder, create_perfetto_trace=True):
        run(steps)
    traces = glob.glob(os.path.join(folder, "plugins", "profile", "*", "perfetto_trace.json.gz"))
    return max(traces, key=os.path.getmtime)


def zoo_model(name: str, num_classes: int, shape: tuple):
    """A zoo model for raw pixels in [0, 255]: the zoo's models normalise their input themselves."""
    import keras_calikd as ck

    return ck.models.get(name, num_classes=num_classes, input_shape=shape,
                         normalization=((127.5,) * shape[-1], (64.0,) * shape[-1]))


def paper_sgd():
    """The paper's optimiser (SGD, momentum 0.9, weight decay 5e-4), at the MobileNet students' rate 0.01."""
    import keras_calikd as ck

    return ck.training.SGD(0.01, momentum=0.9, l2_weight_decay=5e-4)


def student_passes(distiller) -> str:
    """How the trained step ran the student: "single" (no augmented pass), "fused" (both passes in one call) or
    "separate" (two calls)."""
    if not distiller.augmentation.transforms_images:
        return "single"
    return "fused" if getattr(distiller, "student_passes_fused", False) else "separate"


def _accelerator_peak_mib():
    """The accelerator's peak memory in MiB, or `None` on a CPU or where the backend does not report it."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        device = jax.devices()[0]
        if device.platform != "cpu":
            peak = (device.memory_stats() or {}).get("peak_bytes_in_use")
            return None if peak is None else peak / 2**20
    elif keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if tf.config.list_physical_devices("GPU"):
            return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    return None


@contextlib.contextmanager
def compilation_seconds(backend: str):
    """On JAX, a dict that collects the seconds the training step's compilation spends in tracing, lowering to
    HLO and XLA's compiler (JAX's compilation events for functions named `train_step`) while the context is
    open; empty on other backends."""
    seconds, recording = {}, [True]
    if backend == "jax":
        import jax

        stages = {"jaxpr_trace_duration": "trace", "jaxpr_to_mlir_module_duration": "lowering",
                  "backend_compile_duration": "xla"}

        def listener(event, duration, **kwargs):
            stage = stages.get(event.rsplit("/", 1)[-1])
            if recording[0] and stage and "train_step" in str(kwargs.get("fun_name", "")):
                seconds[stage] = seconds.get(stage, 0.0) + duration

        jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield seconds
    finally:
        recording[0] = False


def run_worker(args) -> dict:
    """Measures one configuration (this process's backend; the rest from `args.worker`)."""
    import keras
    import numpy as np

    import keras_calikd as ck

    jit, precision, batch_size, passes, flags = args.worker.split(":")
    jit_compile, batch_size = JIT[jit], int(batch_size)
    keras.config.set_dtype_policy(precision)
    keras.utils.set_random_seed(0)
    shape = tuple(int(s) for s in args.input_shape.split(","))
    rng = np.random.default_rng(0)
    k = args.steps_per_execution
    count = 2 * batch_size * max(args.steps, args.warmup, args.trace_steps, k)
    x = rng.uniform(0, 255, size=(count,) + shape).astype("float32")  # raw pixels, as the pipelines yield
    y = rng.integers(0, args.num_classes, count).astype("int32")

    def model(name):
        return zoo_model(name, args.num_classes, shape)

    teacher, student = model(args.teacher), model(args.student)
    distiller = ck.Distiller(teacher, student, distillation=args.distillation, augmentation=args.augmentation)
    if hasattr(distiller, "fuse_student_passes"):  # the JAX step; TensorFlow's runs two calls
        distiller.fuse_student_passes = passes == "fused"
    distiller.compile(optimizer=paper_sgd(), jit_compile=jit_compile, steps_per_execution=k)

    def fit(trainer, batch):
        return lambda n: trainer.fit(x[: batch * n], y[: batch * n], batch_size=batch, epochs=1, verbose=0,
                                     shuffle=False)

    def predict(n):
        teacher.predict(x[: batch_size * n], batch_size=batch_size, verbose=0)

    with compilation_seconds(keras.backend.backend()) as compilation:
        timing = _seconds_per_step(fit(distiller, batch_size), args.steps, args.warmup, first=k)
    distill = timing.step
    dumped = os.environ.get("CALIKD_HLO_DUMP")
    module = dumped and xla.first_dumped_module(dumped)
    hlo = xla.count_operations(open(module).read()) if module else None
    teacher_time = student_time = None
    if "teacher" in args.parts:
        teacher.compile(jit_compile=jit_compile)
        teacher_time = _seconds_per_step(predict, args.steps, args.warmup).step
    if "student" in args.parts:
        plain = model(args.student)
        plain.compile(optimizer=paper_sgd(), jit_compile=jit_compile,
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        student_time = _seconds_per_step(fit(plain, 2 * batch_size), args.steps, args.warmup).step

    def per_second(images, seconds):
        return None if seconds is None else images / seconds

    def milliseconds(seconds):
        return None if seconds is None else 1e3 * seconds

    checks = _input_check_overhead(distiller, x, y, batch_size, args) if args.input_checks else None
    trace = record_trace(fit(distiller, batch_size), args.trace_steps, args.trace_dir) if args.trace_dir else None
    return {
        "backend": keras.backend.backend(), "jit": bool(distiller.jit_compile), "jit_option": jit,
        "precision": precision, "batch_size": batch_size, "steps_per_execution": k,
        "student_passes": student_passes(distiller), "xla_flags": args.xla_flags[int(flags)], "hlo_operations": hlo,
        "input_check_overhead": checks, "trace": trace,
        "distill_images_per_s": batch_size / distill, "teacher_images_per_s": per_second(batch_size, teacher_time),
        "student_2x_images_per_s": per_second(2 * batch_size, student_time), "distill_step_ms": 1e3 * distill,
        "distill_first_call_s": timing.first_call, "distill_first_call_cpu_s": timing.first_call_cpu,
        "distill_compile_and_warmup_s": timing.first_call_and_warmup,
        "distill_compilation_s": compilation or None,
        "teacher_ms": milliseconds(teacher_time), "student_2x_step_ms": milliseconds(student_time),
        "overhead": None if None in (teacher_time, student_time) else distill / (teacher_time + student_time),
        "peak_host_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_accelerator_mib": _accelerator_peak_mib(),
    }


def _input_check_overhead(distiller, x, y, batch_size, args) -> float:
    """Step time on a tf.data pipeline with the Distiller's batch checks, over the time without, minus 1."""
    import keras
    import tensorflow as tf

    def pipeline(n):
        return tf.data.Dataset.from_tensor_slices((x[: batch_size * n], y[: batch_size * n])).batch(batch_size)

    checked = _seconds_per_step(lambda n: distiller.fit(pipeline(n), epochs=1, verbose=0), args.steps,
                                args.warmup).step
    unchecked = _seconds_per_step(lambda n: keras.Model.fit(distiller, pipeline(n), epochs=1, verbose=0),
                                  args.steps, args.warmup).step
    return checked / unchecked - 1.0


def _shown(value, width: int, spec: str) -> str:
    """`value` formatted right-aligned in `width` columns, or "-" for a part that was not measured."""
    return f"{'-' if value is None else format(value, spec):>{width}}"


def _package_root() -> str:
    """The folder holding the `keras_calikd` package in use (the workers import the same one)."""
    import keras_calikd

    return os.path.dirname(os.path.dirname(os.path.abspath(keras_calikd.__file__)))


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} CPUs"


def _measure(args, forwarded, backend, configuration, xla_flags) -> tuple:
    """Runs one configuration's worker process: `(result or None, why it failed)`."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="calikd_hlo_") as dump:
        flags = [xla_flags]
        if backend == "jax" and not configuration.startswith("off:"):
            flags.append(xla.dump_flags(dump))  # the compiled step's HLO, counted by the worker
        env = xla.with_flags(dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3", CALIKD_HLO_DUMP=dump,
                                  PYTHONPATH=os.pathsep.join([_package_root(), os.environ.get("PYTHONPATH", "")])),
                             *flags)
        command = [sys.executable, "-m", "keras_calikd.cli.benchmark", *forwarded, "--worker", configuration]
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            return None, f"ended after its --timeout of {args.timeout:g} s"
        module = xla.first_dumped_module(dump)
        if args.hlo_dir and module:
            import shutil

            os.makedirs(args.hlo_dir, exist_ok=True)
            shutil.copyfile(module, os.path.join(args.hlo_dir, f"{backend}_{configuration.replace(':', '_')}.txt"))
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        return None, f"failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}"
    return json.loads(lines[-1][len("RESULT "):]), None


def _row(r) -> str:
    hlo = r["hlo_operations"]
    counts = "-" if hlo is None else f"{hlo['convolutions']}/{hlo['dots']}/{hlo['fusions']}"
    return (f"{r['distill_images_per_s']:>14,.0f}{_shown(r['teacher_images_per_s'], 14, ',.0f')}"
            f"{_shown(r['student_2x_images_per_s'], 17, ',.0f')}{_shown(r['overhead'], 9, '.3f')}"
            f"{r['distill_first_call_s']:>12.1f}{_shown((r['distill_compilation_s'] or {}).get('xla'), 8, '.1f')}"
            f"{counts:>18}{r['peak_host_rss_mib']:>13,.0f}"
            + (f"   input checks {100 * r['input_check_overhead']:+.1f}% per step"
               if r["input_check_overhead"] is not None else ""))


def main(argv=None) -> int:
    import itertools

    args = parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(run_worker(args)), flush=True)
        return 0
    import signal

    # Ended from outside (`timeout`, a scheduler): unwind, so that the running worker is ended and its HLO
    # folder removed.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    jits = {"auto": ["auto"], "on": ["on"], "off": ["off"], "both": ["on", "off"]}[args.jit]
    forwarded = list(argv if argv is not None else sys.argv[1:])
    results, failures = [], []
    header = (f"{'backend':<11}{'xla':<5}{'precision':<16}{'batch':>6}{'passes':>9}  {'XLA flags':<34}"
              f"{'distill img/s':>14}{'teacher img/s':>14}{'student 2B img/s':>17}{'overhead':>9}{'1st call s':>12}"
              f"{'XLA s':>8}{'conv/dot/fusion':>18}{'peak RSS MiB':>13}")
    print(f"{args.teacher} -> {args.student}, {args.distillation} + {args.augmentation}, input {args.input_shape}, "
          f"{args.num_classes} classes, {args.steps_per_execution} step(s) per execution, on {machine()}\n{header}",
          flush=True)
    for backend, jit, precision, batch_size, passes, flags in itertools.product(
            args.backend.split(","), jits, args.precision.split(","), args.batch_sizes.split(","),
            args.student_passes.split(","), range(len(args.xla_flags))):
        label = args.xla_flags[flags] or "-"
        configuration = f"{jit}:{precision}:{batch_size}:{passes}:{flags}"
        r, failure = _measure(args, forwarded, backend, configuration, xla.resolve(args.xla_flags[flags]))
        shown = passes if r is None else r["student_passes"]  # as measured: TensorFlow's step runs two calls
        print(f"{backend:<11}{jit:<5}{precision:<16}{batch_size:>6}{shown:>9}  {label[:34]:<34}"
              + (f"  {failure}" if r is None else _row(r)), flush=True)
        if r is None:
            failures.append({"backend": backend, "configuration": configuration, "xla_flags": args.xla_flags[flags],
                             "failure": failure})
        else:
            results.append(r)
        if args.output:  # after every configuration: a process ended from outside keeps what it measured
            from keras_calikd.files import write_json

            write_json(args.output, {"machine": machine(), "teacher": args.teacher, "student": args.student,
                                     "distillation": args.distillation, "augmentation": args.augmentation,
                                     "input_shape": args.input_shape, "num_classes": args.num_classes,
                                     "steps": args.steps, "results": results, "failures": failures})
    return 0 if results else 1


def console() -> int:
    return common.run(main)


if __name__ == "__main__":
    sys.exit(console())
