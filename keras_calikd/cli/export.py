"""calikd-export: a trained model (a `.keras` file) as a checked TensorFlow SavedModel, and optionally TFLite.

    calikd-export --checkpoint runs/cinic10_cutmix/checkpoints/best.keras --output exported/cinic10_cutmix
    calikd-export --checkpoint best.keras --output exported/kd --tflite

The SavedModel's `serving_default(images: uint8 [N, H, W, C])` returns `logits` and `probabilities`; the
zoo's models normalise their input themselves, so it takes the same raw images as the `.keras` file. The
export is run on a few images and compared with the Keras model before it is kept (the largest logit
difference is printed and saved in `export.json`). The output must be a new path or an earlier export
(replaced with --overwrite); a run folder is never replaced. Runs on the TensorFlow and the JAX backend.
"""

from __future__ import annotations

import argparse
import sys

from keras_calikd.cli import common


def parser() -> argparse.ArgumentParser:
    result = common.tool_parser("calikd-export", __doc__)
    result.add_argument("--checkpoint", required=True, help="a .keras model file (e.g. checkpoints/best.keras)")
    result.add_argument("--output", required=True, help="SavedModel folder to write")
    result.add_argument("--tflite", action="store_true", help="also write model.tflite (checked the same way)")
    result.add_argument("--overwrite", action="store_true", help="replace an earlier export at --output")
    common.add_debug_flag(result)
    return result


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    from keras_calikd.training.evaluation import load_model
    from keras_calikd.training.export import EXPORT_MARKER, export_saved_model
    from keras_calikd.files import claim_output

    claim_output(args.output, EXPORT_MARKER, args.overwrite)  # before the model is loaded
    report = export_saved_model(load_model(args.checkpoint), args.output, overwrite=args.overwrite,
                                tflite=args.tflite, source=args.checkpoint)
    differences = ", ".join(f"{k} {v:.2g}" for k, v in report["max_logit_difference"].items())
    print(f"Exported {args.checkpoint} to {args.output} (signature serving_default; largest logit difference "
          f"to the Keras model: {differences}).")
    return 0


def console() -> int:
    return common.run(main)


if __name__ == "__main__":
    sys.exit(console())
