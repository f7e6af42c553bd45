#!/usr/bin/env python
"""Evaluates trained models: accuracy, ECE/OE, NLL, Brier, reliability diagrams, temperature scaling, CIFAR-100-C.

    # one model on a test split, with a temperature-scaling baseline and a reliability diagram
    python tools/evaluate.py --model runs/cifar100/kd_x/checkpoints/best.keras --dataset cifar100 \
        --temperature_scaling --diagram kd.png

    # Table 6: several models on CIFAR-100-C, each corruption averaged over severities 1-5
    python tools/evaluate.py --dataset cifar100_corrupted --corruptions frost,snow,gaussian_blur,motion_blur \
        --model Teacher=runs/cifar100/teacher_resnet32x4/checkpoints/best.keras \
        --model KD=runs/cifar100/resnet32x4_shufflev1_kd/checkpoints/best.keras

A model is a `.keras` file or a SavedModel folder written by tools/export.py.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_model(path: str):
    """A callable from normalised float32 images to logits, from a `.keras` file or a SavedModel folder."""
    import keras

    import keras_calikd  # noqa: F401  (registers the library's serializable classes)

    if os.path.isdir(path):
        import tensorflow as tf

        serve = tf.saved_model.load(path).signatures["serve_normalized"]
        return lambda images, training=False: serve(images=tf.constant(images))["logits"]
    if not os.path.isfile(path):
        raise SystemExit(f"error: model {path!r} does not exist (a .keras file or a SavedModel folder).")
    return keras.models.load_model(path, compile=False)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, metavar="[LABEL=]PATH",
                        help="model to evaluate (repeatable); LABEL names its row")
    parser.add_argument("--dataset", required=True, help="data set name (cifar100, cifar100_corrupted, ...)")
    parser.add_argument("--split", default="test", help="evaluated split (default: test)")
    parser.add_argument("--data_dir", help="TFDS data folder")
    parser.add_argument("--bins", default="100,15", help="ECE/OE bin counts, comma-separated (default: 100,15)")
    parser.add_argument("--corruptions", help="CIFAR-100-C: comma-separated corruptions, or 'all'")
    parser.add_argument("--temperature_scaling", action="store_true",
                        help="also report post-hoc temperature scaling fitted on --calibration_split")
    parser.add_argument("--calibration_split",
                        help="split to fit the temperature on (default: 'validation' when the data set has "
                             "one, else half of the evaluated split, the other half being reported)")
    parser.add_argument("--diagram", help="reliability diagram PNG (first model)")
    parser.add_argument("--output", help="write the results as JSON")
    parser.add_argument("--batch_size", type=int, default=500)
    args = parser.parse_args(argv)

    from keras_calikd.training import evaluation_tool

    return evaluation_tool.run(args, load_model)


if __name__ == "__main__":
    sys.exit(main())
