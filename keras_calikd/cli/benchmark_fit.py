"""calikd-benchmark-fit: whole epochs of `Distiller.fit` on in-memory data, timed, with the step's compile count.

    calikd-benchmark-fit                                # KD + mixup, KD + CutMix, CRD + CutMix; 50,000 images
    calikd-benchmark-fit --runs kd+mixup --epochs 3 --batch_size 256 --precision mixed_bfloat16
    calikd-benchmark-fit --gin_param 'CRD.num_negatives = 4096' --output fit.json
    calikd-benchmark-fit --runs kd+mixup --validation_examples 10000 --project_epochs 240

Where `calikd-benchmark` times the step alone, this tool runs what a user runs: `fit` on NumPy arrays of the
data set's shape (random pixels and labels, CIFAR-100's shape by default), through Keras' own data handling
and callbacks. For each run (`<distillation>+<augmentation>`, registered names) it reports:

- the seconds of every epoch (the first includes compiling the step), of which the evaluation of
  `--validation_examples` held-out images at the end of each epoch (as `calikd-train` evaluates, in batches of
  `--eval_batch_size`), and the training images/s of the last epoch;
- the minutes that `--project_epochs` epochs would take: the first epoch's seconds plus the last one's for each
  further epoch (a Table-1 cell is 240 epochs, evaluation included);
- how many times the training step was traced, that is compiled, and for which batch shapes: on JAX once per
  distinct batch shape, so twice when the last batch of an epoch is smaller (50,000 images in batches of 64
  end with a batch of 16); on TensorFlow once, with the batch dimension left unknown (with `--jit off`, JAX
  runs the step eagerly and every step counts);
- the last epoch's loss, and the process's peak memory (host RSS, and the accelerator's where the backend
  reports it).

It runs on the backend that `KERAS_BACKEND` names, in this process; the JAX backend needs no TensorFlow.
Strategy options are gin bindings (`--gin_param`), as in `calikd-train`. `--jit auto` (the default) compiles as
`fit` does by default. XLA flags come from the environment (`XLA_FLAGS`, read when the tool starts).
"""

from __future__ import annotations

import resource
import sys
import time

from keras_calikd.cli import common

DEFAULT_RUNS = "kd+mixup,kd+cutmix,crd+cutmix"


def parse_args(argv=None):
    parser = common.tool_parser("calikd-benchmark-fit", __doc__)
    parser.add_argument("--runs", default=DEFAULT_RUNS,
                        help="comma-separated <distillation>+<augmentation> pairs of registered names")
    parser.add_argument("--teacher", default="vgg13")
    parser.add_argument("--student", default="MobileNetV2")
    parser.add_argument("--num_classes", type=int, default=100)
    parser.add_argument("--input_shape", default="32,32,3")
    parser.add_argument("--examples", type=int, default=50_000, help="training images per epoch")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--precision", default="float32", choices=("float32", "mixed_bfloat16", "mixed_float16"))
    parser.add_argument("--jit", default="auto", choices=("auto", "on", "off"),
                        help="XLA compilation of the step: auto (as fit compiles by default), on, off")
    parser.add_argument("--steps_per_execution", type=int, default=1)
    parser.add_argument("--validation_examples", type=int, default=0,
                        help="held-out images evaluated at the end of every epoch (CIFAR's test set: 10,000)")
    parser.add_argument("--eval_batch_size", type=int, default=500, help="batch size of the evaluation")
    parser.add_argument("--project_epochs", type=int, default=240,
                        help="the number of epochs whose duration is projected from the measured ones")
    parser.add_argument("--gin_param", action="append", default=[], metavar="BINDING",
                        help="gin binding of a strategy option, e.g. 'CRD.num_negatives = 4096' (repeatable)")
    parser.add_argument("--output", help="write the results as JSON")
    common.add_debug_flag(parser)
    args = parser.parse_args(argv)
    args.runs = [_run_pair(run) for run in args.runs.split(",")]
    for name in ("examples", "epochs", "batch_size", "num_classes", "steps_per_execution", "eval_batch_size",
                 "project_epochs"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be a positive integer; got {getattr(args, name)}.")
    if args.validation_examples < 0:
        raise ValueError(f"--validation_examples must be 0 or more; got {args.validation_examples}.")
    return args


def _run_pair(run: str) -> tuple:
    parts = run.strip().split("+")
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"--runs: {run!r} is not a <distillation>+<augmentation> pair, such as kd+mixup.")
    return tuple(parts)


def _epoch_timer():
    """A Keras callback recording each epoch's seconds (and those of its evaluation) and loss (made here: this
    module imports Keras lazily)."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds, self.evaluation_seconds, self.losses = [], [], []

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_test_begin(self, logs=None):
            self.evaluation_started = time.perf_counter()

        def on_test_end(self, logs=None):
            self.evaluation_seconds.append(time.perf_counter() - self.evaluation_started)

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.started)
            self.losses.append(float(logs["loss"]))

    return EpochTimer()


def projected_minutes(epoch_seconds, epochs: int) -> float:
    """Minutes of `epochs` epochs: the first measured epoch (compilation included), then the last one's time for
    each further epoch."""
    return (epoch_seconds[0] + (epochs - 1) * epoch_seconds[-1]) / 60.0


def run_one(args, distillation: str, augmentation: str, x, y, validation=None) -> dict:
    """Fits a fresh Distiller for `args.epochs` epochs and returns what was measured."""
    import keras
    import numpy as np

    import keras_calikd as ck
    from keras_calikd.cli.benchmark import _accelerator_peak_mib, paper_sgd, student_passes, zoo_model
    from keras_calikd.contract import INDICES, join_inputs, split_inputs

    keras.utils.clear_session()
    keras.config.set_dtype_policy(args.precision)
    keras.utils.set_random_seed(0)
    teacher, student = (zoo_model(name, args.num_classes, x.shape[1:]) for name in (args.teacher, args.student))
    distiller = ck.Distiller(teacher, student, distillation=distillation, augmentation=augmentation)
    jit_compile = {"auto": "auto", "on": True, "off": False}[args.jit]
    distiller.compile(optimizer=paper_sgd(), jit_compile=jit_compile, steps_per_execution=args.steps_per_execution)
    traces = []
    step_losses = distiller.compute_step_losses

    def counted(data, training=True):  # Python runs here only while the compiled step is traced
        images, _ = split_inputs(data[0])
        traces.append(tuple(images.shape))
        return step_losses(data, training)

    distiller.compute_step_losses = counted
    inputs = x
    if INDICES in distiller.requirements:  # CRD's memory banks are addressed by each image's dataset index
        inputs = join_inputs(x, np.arange(len(x), dtype="int32"))
    timer = _epoch_timer()
    distiller.fit(inputs, y, batch_size=args.batch_size, epochs=args.epochs, verbose=0, callbacks=[timer],
                  validation_data=validation, validation_batch_size=args.eval_batch_size)
    training_seconds = timer.seconds[-1] - (timer.evaluation_seconds[-1] if timer.evaluation_seconds else 0.0)
    return {
        "run": f"{distillation}+{augmentation}", "backend": keras.backend.backend(),
        "jit": bool(distiller.jit_compile), "precision": args.precision, "batch_size": args.batch_size,
        "steps_per_execution": args.steps_per_execution, "examples": len(x),
        "student_passes": student_passes(distiller),
        "validation_examples": 0 if validation is None else len(validation[1]),
        "epoch_seconds": timer.seconds, "evaluation_seconds": timer.evaluation_seconds,
        "last_epoch_images_per_s": len(x) / training_seconds,
        "projected_epochs": args.project_epochs,
        "projected_minutes": projected_minutes(timer.seconds, args.project_epochs),
        "step_traces": len(traces), "traced_batch_shapes": [list(s) for s in traces],
        "last_epoch_loss": timer.losses[-1],
        "distillations": [d.get_config() for d in distiller.distillations],
        "augmentation": distiller.augmentation.get_config(),
        "peak_host_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_accelerator_mib": _accelerator_peak_mib(),
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    import numpy as np

    from keras_calikd.cli.benchmark import machine

    from keras_calikd import augmentations, distillations, models

    for distillation, augmentation in args.runs:  # unknown names fail here, listing the known ones
        distillations.DISTILLATIONS.get(distillation)
        augmentations.AUGMENTATIONS.get(augmentation)
    for name in (args.teacher, args.student):
        models.MODELS.get(name)
    if args.gin_param:
        from keras_calikd.gin_support import configure

        configure([], args.gin_param)
    shape = tuple(int(s) for s in args.input_shape.split(","))
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(args.examples,) + shape, dtype="uint8").astype("float32")  # raw pixels
    y = rng.integers(0, args.num_classes, args.examples).astype("int32")
    validation = None
    if args.validation_examples:
        validation = (rng.integers(0, 256, size=(args.validation_examples,) + shape, dtype="uint8").astype("float32"),
                      rng.integers(0, args.num_classes, args.validation_examples).astype("int32"))
    import keras

    print(f"{args.teacher} -> {args.student}, {args.examples:,} images {args.input_shape}, {args.num_classes} "
          f"classes, batch {args.batch_size}, {args.precision}, XLA {args.jit}, {keras.backend.backend()}, "
          f"{args.validation_examples:,} images evaluated per epoch, on {machine()}", flush=True)
    print(f"{'run':<14}{'epoch seconds':<24}{'of which evaluation':<24}{'last epoch img/s':>17}{'step traces':>13}"
          f"{'last loss':>11}{f'{args.project_epochs} epochs, min':>20}", flush=True)
    results = []
    for distillation, augmentation in args.runs:
        r = run_one(args, distillation, augmentation, x, y, validation)
        results.append(r)
        seconds = ", ".join(f"{s:.1f}" for s in r["epoch_seconds"])
        evaluation = ", ".join(f"{s:.1f}" for s in r["evaluation_seconds"]) or "-"
        print(f"{r['run']:<14}{seconds:<24}{evaluation:<24}{r['last_epoch_images_per_s']:>17,.0f}"
              f"{r['step_traces']:>13}{r['last_epoch_loss']:>11.4f}{r['projected_minutes']:>20.1f}", flush=True)
        if args.output:  # after every run: a process ended from outside keeps what it measured
            from keras_calikd.files import write_json

            write_json(args.output, {"machine": machine(), "teacher": args.teacher, "student": args.student,
                                     "input_shape": args.input_shape, "num_classes": args.num_classes,
                                     "epochs": args.epochs, "gin_params": args.gin_param, "results": results})
    return 0


def console() -> int:
    return common.run(main)


if __name__ == "__main__":
    sys.exit(console())
