"""calikd-benchmark: images per second of the distillation step next to its parts, on the current machine.

    calikd-benchmark                                   # VGG13 -> MobileNetV2, KD + mixup, CIFAR-100 shapes
    calikd-benchmark --backend tensorflow,jax --jit both --batch_sizes 64,256 --output bench.json
    calikd-benchmark --teacher resnet20 --student resnet8 --input_shape 28,28,1 --num_classes 10

For every backend x XLA setting x precision x batch size, a fresh process measures:

- `distill`: the full training step of the `Distiller` (teacher on the clean batch, student on the clean and
  the augmented batch, backward, SGD) on batch B;
- `teacher`: the teacher's inference on batch B;
- `student_2x`: the student's plain training step (cross-entropy, SGD) on batch 2B;

and reports images/s (B images per distillation step), the overhead
`distill step time / (teacher time + student_2x time)`, and the process's peak memory
(host RSS; plus the accelerator's peak where the backend reports it). Input data are random NumPy arrays
already in memory, so the input pipeline is not measured (see keras_calikd.cli.benchmark_data).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

from keras_calikd.cli import common


PARTS = ("distill", "teacher", "student")


def parse_args(argv=None):
    parser = common.tool_parser("calikd-benchmark", __doc__)
    parser.add_argument("--backend", default=os.environ.get("KERAS_BACKEND", "jax"),
                        help="comma-separated Keras backends (tensorflow, jax)")
    parser.add_argument("--jit", default="on", choices=("on", "off", "both"), help="XLA compilation of the steps")
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
    parser.add_argument("--input_checks", action="store_true",
                        help="also measure what the Distiller's input checks cost per step on a tf.data pipeline")
    parser.add_argument("--output", help="write the results as JSON")
    parser.add_argument("--trace_dir", help="JAX only: after the timings, record --trace_steps distillation steps "
                                            "with the JAX profiler here (a Perfetto trace, for ui.perfetto.dev)")
    parser.add_argument("--trace_steps", type=int, default=10)
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one configuration, in this process
    common.add_debug_flag(parser)
    args = parser.parse_args(argv)
    unknown = set(args.parts.split(",")) - set(PARTS)
    if unknown:
        raise ValueError(f"--parts: unknown {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}.")
    if args.trace_dir and args.backend.split(",") != ["jax"]:
        raise ValueError(f"--trace_dir records a JAX profile: give --backend jax (got --backend {args.backend}).")
    return args


def _seconds_per_step(run, steps, warmup):
    """Seconds per step of `run(n)` (which runs n steps) after compilation and `warmup` steps, and the seconds
    that compilation and the warm-up took."""
    started = time.perf_counter()
    run(warmup)
    warm = time.perf_counter()
    run(steps)
    return (time.perf_counter() - warm) / steps, warm - started


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


def run_worker(args) -> dict:
    """Measures one configuration (this process's backend; jit, precision and batch size from `args.worker`)."""
    import keras
    import numpy as np

    import keras_calikd as ck

    jit, precision, batch_size = args.worker.split(":")
    jit, batch_size = jit == "on", int(batch_size)
    keras.config.set_dtype_policy(precision)
    keras.utils.set_random_seed(0)
    shape = tuple(int(s) for s in args.input_shape.split(","))
    rng = np.random.default_rng(0)
    count = 2 * batch_size * max(args.steps, args.warmup, args.trace_steps)
    x = rng.uniform(0, 255, size=(count,) + shape).astype("float32")  # raw pixels, as the pipelines yield
    y = rng.integers(0, args.num_classes, count).astype("int32")

    def model(name):
        return zoo_model(name, args.num_classes, shape)

    teacher, student = model(args.teacher), model(args.student)
    distiller = ck.Distiller(teacher, student, distillation=args.distillation, augmentation=args.augmentation)
    distiller.compile(optimizer=paper_sgd(), jit_compile=jit)

    def fit(trainer, batch):
        return lambda n: trainer.fit(x[: batch * n], y[: batch * n], batch_size=batch, epochs=1, verbose=0,
                                     shuffle=False)

    def predict(n):
        teacher.predict(x[: batch_size * n], batch_size=batch_size, verbose=0)

    distill, distill_start = _seconds_per_step(fit(distiller, batch_size), args.steps, args.warmup)
    teacher_time = student_time = None
    if "teacher" in args.parts:
        teacher.compile(jit_compile=jit)
        teacher_time, _ = _seconds_per_step(predict, args.steps, args.warmup)
    if "student" in args.parts:
        plain = model(args.student)
        plain.compile(optimizer=paper_sgd(), jit_compile=jit,
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        student_time, _ = _seconds_per_step(fit(plain, 2 * batch_size), args.steps, args.warmup)

    def per_second(images, seconds):
        return None if seconds is None else images / seconds

    def milliseconds(seconds):
        return None if seconds is None else 1e3 * seconds

    checks = _input_check_overhead(distiller, x, y, batch_size, args) if args.input_checks else None
    trace = record_trace(fit(distiller, batch_size), args.trace_steps, args.trace_dir) if args.trace_dir else None
    return {
        "backend": keras.backend.backend(), "jit": jit, "precision": precision, "batch_size": batch_size,
        "input_check_overhead": checks, "trace": trace,
        "distill_images_per_s": batch_size / distill, "teacher_images_per_s": per_second(batch_size, teacher_time),
        "student_2x_images_per_s": per_second(2 * batch_size, student_time), "distill_step_ms": 1e3 * distill,
        "distill_compile_and_warmup_s": distill_start, "teacher_ms": milliseconds(teacher_time),
        "student_2x_step_ms": milliseconds(student_time),
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

    checked, _ = _seconds_per_step(lambda n: distiller.fit(pipeline(n), epochs=1, verbose=0), args.steps,
                                   args.warmup)
    unchecked, _ = _seconds_per_step(lambda n: keras.Model.fit(distiller, pipeline(n), epochs=1, verbose=0),
                                     args.steps, args.warmup)
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


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(run_worker(args)), flush=True)
        return 0
    jits = {"on": ["on"], "off": ["off"], "both": ["on", "off"]}[args.jit]
    forwarded = list(argv if argv is not None else sys.argv[1:])
    results = []
    header = (f"{'backend':<11}{'xla':<5}{'precision':<16}{'batch':>6}{'distill img/s':>15}{'teacher img/s':>15}"
              f"{'student 2B img/s':>18}{'overhead':>10}{'peak RSS MiB':>14}")
    print(f"{args.teacher} -> {args.student}, {args.distillation} + {args.augmentation}, input {args.input_shape}, "
          f"{args.num_classes} classes, on {machine()}\n{header}", flush=True)
    for backend in args.backend.split(","):
        for jit in jits:
            for precision in args.precision.split(","):
                for batch_size in args.batch_sizes.split(","):
                    command = [sys.executable, "-m", "keras_calikd.cli.benchmark", *forwarded,
                               "--worker", f"{jit}:{precision}:{batch_size}"]
                    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=os.pathsep.join(
                        [_package_root(), os.environ.get("PYTHONPATH", "")]))
                    done = subprocess.run(command, env=env, capture_output=True, text=True)
                    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
                    if done.returncode != 0 or not lines:
                        print(f"{backend:<11}{jit:<5}{precision:<16}{batch_size:>6}  failed: "
                              f"{(done.stderr.strip().splitlines() or ['?'])[-1]}", flush=True)
                        continue
                    r = json.loads(lines[-1][len("RESULT "):])
                    results.append(r)
                    print(f"{backend:<11}{jit:<5}{precision:<16}{batch_size:>6}{r['distill_images_per_s']:>15,.0f}"
                          f"{_shown(r['teacher_images_per_s'], 15, ',.0f')}"
                          f"{_shown(r['student_2x_images_per_s'], 18, ',.0f')}{_shown(r['overhead'], 10, '.3f')}"
                          f"{r['peak_host_rss_mib']:>14,.0f}"
                          + (f"   input checks {100 * r['input_check_overhead']:+.1f}% per step"
                             if r["input_check_overhead"] is not None else ""), flush=True)
    if args.output:
        from keras_calikd.files import write_json

        write_json(args.output, {"machine": machine(), "teacher": args.teacher, "student": args.student,
                                 "distillation": args.distillation, "augmentation": args.augmentation,
                                 "input_shape": args.input_shape, "num_classes": args.num_classes,
                                 "steps": args.steps, "results": results})
    return 0 if results else 1


def console() -> int:
    return common.run(main)


if __name__ == "__main__":
    sys.exit(console())
