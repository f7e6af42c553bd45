"""calikd-benchmark-data: the throughput of keras_calikd's input pipelines alone (no model), in images per second.

Two data sources:

- `fashion_mnist`: the real Fashion-MNIST (prepared from `--raw-dir`, or from
  Debian's /usr/share/datasets/fashion-mnist), 60,000 28x28x1 training images;
- `fake_cifar`: a CIFAR-10-sized stand-in (50,000 + 10,000 random 32x32x3
  images) written once as a prepared copy of TFDS's `cifar10` (same builder,
  version and PNG features), then loaded through `load("cifar10", ...)`.

For each source it times opening the training split with `read` (preparing
it if needed and checking its TFRecord files; then once more, when the check
is already done), the first pass over the training split (reading, decoding
and filling the cache), then, per batch size and after one warm-up pass,
`--epochs` passes of: the training pipeline of `load` (a fresh epoch key at
each pass; random crop and flip), the epoch-keyed training pipeline of
resumable runs (`keras_calikd.training.input.epoch_batches`; the same order,
for given epochs), and one pass of the evaluation pipeline of the test split.

    calikd-benchmark-data --work_dir /tmp/ckd_bench --output /tmp/ckd_bench/result.json
    calikd-benchmark-data --sources fake_cifar --batch_sizes 64,256 --epochs 3
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time

from keras_calikd.cli import common


def _machine() -> dict:
    """CPU model, core counts, GPUs, load average and versions of the machine measured."""
    import tensorflow as tf

    model = platform.processor() or "unknown"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model = next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name:")),
                     model)
    except OSError:
        pass
    return {
        "cpu": model,
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
        "load_average_1_5_15min": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "tensorflow": tf.__version__,
        "python": platform.python_version(),
    }


def write_fake_cifar(data_dir: str, train: int = 50_000, test: int = 10_000, seed: int = 0) -> None:
    """Prepares a fake `cifar10` (random images, TFDS's own features and version) in `data_dir`, once.

    Args:
        data_dir: The TFDS data directory.
        train: Number of training images.
        test: Number of test images.
        seed: Seed of the images.

    Example:

    ```python
    write_fake_cifar("/tmp/bench/fake_cifar", train=1000, test=100)
    ```
    """
    import numpy as np
    import tensorflow_datasets as tfds

    base = tfds.builder_cls("cifar10")
    if os.path.isfile(os.path.join(data_dir, "cifar10", str(base.VERSION), "dataset_info.json")):
        return
    sizes = {"train": train, "test": test}

    class FakeCifar10(base, skip_registration=True):
        def _split_generators(self, dl_manager):
            return {split: self._generate_examples(split) for split in sizes}

        def _generate_examples(self, split):
            rng = np.random.default_rng(seed + (split == "test"))
            for i in range(sizes[split]):
                # Smooth-ish random images: PNG sizes closer to natural images than pure noise.
                small = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
                image = np.repeat(np.repeat(small, 4, axis=0), 4, axis=1)
                image = np.clip(image.astype(np.int16) + rng.integers(-8, 9, size=image.shape), 0, 255)
                yield f"{split}_{i:05d}", {"id": f"{split}_{i:05d}", "image": image.astype(np.uint8),
                                           "label": int(i % 10)}

    FakeCifar10.name = "cifar10"
    FakeCifar10(data_dir=data_dir).download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))


def _count(batches) -> int:
    """Iterates one pass of `batches`; returns the number of images."""
    from keras_calikd.contract import split_inputs

    n = 0
    for x, _ in batches:
        n += int(split_inputs(x)[0].shape[0])
    return n


def _timed(make, passes: int) -> dict:
    """Times `passes` passes over `make()` after one warm-up pass (which fills the cache)."""
    _count(make())
    start = time.perf_counter()
    n = sum(_count(make()) for _ in range(passes))
    seconds = time.perf_counter() - start
    return {"images": n, "seconds": round(seconds, 3), "images_per_s": round(n / seconds)}


def bench_source(name: str, data_dir: str, batch_sizes, epochs: int, raw_dir=None) -> dict:
    """Measures the pipelines of one data set (see the module docstring); prints each run as a JSON line.

    Args:
        name: The data set (`read`'s name).
        data_dir: Its TFDS data directory.
        batch_sizes: The batch sizes to measure.
        epochs: Timed passes per training pipeline.
        raw_dir: Folder of its raw files, if it must be prepared from elsewhere.

    Returns:
        The measurements: `read_first_s`, `read_again_s`, `first_pass` and one entry per run in `runs`.

    Example:

    ```python
    bench_source("fashion_mnist", "/tmp/bench/fashion_mnist", [64, 256], epochs=3)
    ```
    """
    import keras_calikd.data as ckd
    from keras_calikd.training.input import epoch_batches

    kwargs = {"data_dir": data_dir, "raw_dir": raw_dir}
    result = {"dataset": name, "data_dir": data_dir, "runs": []}
    for key in ("read_first_s", "read_again_s"):  # the first read prepares if needed and checks the files
        start = time.perf_counter()
        ckd.read(name, "train", **kwargs)
        result[key] = round(time.perf_counter() - start, 3)
    start = time.perf_counter()
    n = _count(ckd.load(name, "train", batch_sizes[0], seed=0, **kwargs))
    seconds = time.perf_counter() - start
    result["first_pass"] = {"batch_size": batch_sizes[0], "images": n, "seconds": round(seconds, 2),
                            "images_per_s": round(n / seconds)}
    for batch_size in batch_sizes:
        train = ckd.load(name, "train", batch_size, seed=0, **kwargs)
        split = ckd.read(name, "train", **kwargs)
        test = ckd.load(name, "test", batch_size, **kwargs)
        counters = {
            "train": (lambda: train, epochs),
            "train_epoch_keyed": (lambda: epoch_batches(split, batch_size, 0, first_epoch=0, num_epochs=1), epochs),
            "eval": (lambda: test, 1),
        }
        for pipeline, (make, passes) in counters.items():
            run = {"pipeline": pipeline, "batch_size": batch_size, "passes": passes, **_timed(make, passes)}
            result["runs"].append(run)
            print(json.dumps({"dataset": name, **run}), flush=True)
    return result


SOURCES = ("fashion_mnist", "fake_cifar")


def parser():
    result = common.tool_parser("calikd-benchmark-data", __doc__)
    result.add_argument("--sources", type=common.comma_list(), default=list(SOURCES),
                        help=f"comma-separated data sources: {', '.join(SOURCES)} (default: both)")
    result.add_argument("--work_dir", default="/tmp/keras_calikd_benchmark",
                        help="TFDS data directory for the prepared benchmark data sets")
    result.add_argument("--raw_dir", default=None, help="Fashion-MNIST IDX folder (default: Debian's)")
    result.add_argument("--batch_sizes", type=common.comma_list(int), default=[64, 256],
                        help="comma-separated batch sizes (default: 64,256)")
    result.add_argument("--epochs", type=int, default=3, help="timed passes per training run, after a warm-up pass")
    result.add_argument("--output", help="also write the results to this JSON file")
    common.add_debug_flag(result)
    return result


def main(argv=None) -> int:
    """Runs the benchmark; prints JSON lines and, with `--output`, writes all results to a file.

    Args:
        argv: Command-line arguments (default `sys.argv[1:]`); `--help` lists them.

    Returns:
        0.

    Example:

    ```python
    main(["--sources", "fashion_mnist", "--batch_sizes", "64", "--epochs", "1"])
    ```
    """
    args = parser().parse_args(argv)
    unknown = sorted(set(args.sources) - set(SOURCES))
    if unknown:
        raise ValueError(f"--sources: unknown {', '.join(unknown)}; choose from {', '.join(SOURCES)}.")
    if args.epochs < 1 or not args.batch_sizes or min(args.batch_sizes) < 1:
        raise ValueError(f"--epochs and --batch_sizes must be positive integers; got {args.epochs} and "
                         f"{args.batch_sizes}.")

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    results = {"machine": _machine(), "sources": []}
    print(json.dumps({"machine": results["machine"]}), flush=True)
    for source in args.sources:
        data_dir = os.path.join(args.work_dir, source)
        if source == "fake_cifar":
            start = time.perf_counter()
            write_fake_cifar(data_dir)
            print(json.dumps({"fake_cifar_written_s": round(time.perf_counter() - start, 1)}), flush=True)
            results["sources"].append(bench_source("cifar10", data_dir, args.batch_sizes, args.epochs))
        else:
            results["sources"].append(
                bench_source("fashion_mnist", data_dir, args.batch_sizes, args.epochs, raw_dir=args.raw_dir))
    if args.output:
        from keras_calikd.files import write_json

        write_json(args.output, results)
    return 0


def console() -> int:
    return common.run(main)


if __name__ == "__main__":
    sys.exit(console())
