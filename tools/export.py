#!/usr/bin/env python
"""Exports a trained model (a `.keras` checkpoint) as a TensorFlow SavedModel with serving signatures.

    python tools/export.py --checkpoint runs/cinic10_cutmix/checkpoints/best.keras \
        --output exported/cinic10_cutmix --dataset cinic10

Signatures: `serving_default(images: uint8 [N, H, W, C])` (normalisation built
in, from the data set's mean and std) and `serve_normalized(images: float32)`;
both return `logits` and `probabilities`. Always runs on the TensorFlow backend.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ["KERAS_BACKEND"] = "tensorflow"  # SavedModels are TensorFlow graphs
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a .keras model file (e.g. checkpoints/best.keras)")
    parser.add_argument("--output", required=True, help="SavedModel folder to write")
    parser.add_argument("--dataset", help="data set whose normalisation the uint8 signature applies")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.checkpoint):
        raise SystemExit(f"error: checkpoint {args.checkpoint!r} does not exist.")

    import keras

    import keras_calikd  # noqa: F401  (registers the library's serializable classes)
    from keras_calikd.training.export import export_saved_model

    mean = std = None
    if args.dataset:
        import keras_calikd.data as data

        info = data.info(args.dataset)
        mean, std = [255.0 * m for m in info.mean], [255.0 * s for s in info.std]
    model = keras.models.load_model(args.checkpoint, compile=False)
    export_saved_model(model, args.output, mean=mean, std=std)
    print(f"Exported {args.checkpoint} to {args.output} (signatures: serving_default, serve_normalized).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
