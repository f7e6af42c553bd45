#!/usr/bin/env python
"""Time per epoch of one distillation on 1 process and on 2 processes of this machine (loopback, one CPU each).

    python dev/scale_out_timing.py [--epochs 3] [--images 2048] [--batch_size 64]

Each configuration trains ResNet-8 -> ResNet-8 with KD + mixup on random 28x28 images (global batch
`--batch_size`) for `--epochs` epochs; the first epoch (tracing, compilation) is reported apart from the
mean of the others. The two-process job is started here, as a real job is: `TF_CONFIG` on TensorFlow,
`KERAS_DISTRIBUTION_*` on JAX (the backend is `KERAS_BACKEND`'s). The processes share this machine's cores.
"""

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _worker(args) -> None:
    sys.path.insert(0, ROOT)
    from keras_calikd.training import distribution

    cluster = distribution.setup("multi_worker" if args.processes > 1 else None)
    import keras
    import numpy as np
    import tensorflow as tf

    import keras_calikd as ck

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (args.images, 28, 28, 1)).astype("float32")
    labels = rng.integers(0, 10, args.images).astype("int32")
    with cluster.scope():
        teacher = ck.models.get("resnet8", num_classes=10, input_shape=(28, 28, 1))
        student = ck.models.get("resnet8", num_classes=10, input_shape=(28, 28, 1))
        distiller = ck.Distiller(teacher, student, distillation="kd", augmentation="mixup")
        distiller.compile(optimizer=ck.training.SGD(0.05, momentum=0.9, l2_weight_decay=5e-4))
    train = tf.data.Dataset.from_tensor_slices((images, labels)).batch(args.batch_size, drop_remainder=True)
    train = cluster.shard(train.repeat())
    times = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    distiller.fit(train, epochs=args.epochs, steps_per_epoch=args.images // args.batch_size, verbose=0,
                  callbacks=[Clock()])
    if cluster.is_chief:
        print(json.dumps({"epoch_seconds": times}))


def _job(args, processes: int) -> list:
    from keras_calikd.training.distribution import free_local_ports

    ports = free_local_ports(processes)
    commands, children = [sys.executable, __file__, "--worker", "--processes", str(processes), "--epochs",
                          str(args.epochs), "--images", str(args.images), "--batch_size", str(args.batch_size)], []
    for index in range(processes):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
        if processes > 1:
            env.update(TF_CONFIG=json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                                             "task": {"type": "worker", "index": index}}),
                       KERAS_DISTRIBUTION_JOB_ADDRESSES=f"127.0.0.1:{ports[0]}",
                       KERAS_DISTRIBUTION_NUM_PROCESSES=str(processes), KERAS_DISTRIBUTION_PROCESS_ID=str(index))
        children.append(subprocess.Popen(commands, env=env, stdout=subprocess.PIPE, text=True))
    outputs = [child.communicate(timeout=1800)[0] for child in children]
    if any(child.returncode for child in children):
        raise SystemExit(f"a process of the {processes}-process job failed")
    return json.loads(outputs[0].strip().splitlines()[-1])["epoch_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--processes", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return _worker(args)
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    for processes in (1, 2):
        seconds = _job(args, processes)
        rest = seconds[1:] or seconds
        print(f"{backend}, {processes} process(es), {args.images} images, global batch {args.batch_size}: "
              f"first epoch {seconds[0]:.1f} s, then {sum(rest) / len(rest):.1f} s per epoch "
              f"({[round(s, 1) for s in seconds]})")


if __name__ == "__main__":
    main()
