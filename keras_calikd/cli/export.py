"""calikd-export: a trained model (a `.keras` file) as checked SavedModel, TFLite, ONNX and LiteRT artifacts.

    calikd-export --checkpoint runs/cinic10_cutmix/checkpoints/best.keras --output exported/cinic10_cutmix
    calikd-export --checkpoint best.keras --output exported/kd --format saved_model,tflite,onnx,litert

Every artifact takes raw uint8 images [N, H, W, C], as the `.keras` file does (the zoo's models normalise their
input themselves), and returns `logits` and `probabilities`: the SavedModel is the output folder itself
(signature serving_default), beside it model.tflite, model.onnx and model_litert.tflite. Each is run on the same
images as the Keras model in its own runtime before the folder is kept; the largest logit differences are
printed and saved in export.json. onnx needs tf2onnx (jax2onnx on JAX) and onnxruntime, litert needs
ai-edge-litert and the TensorFlow backend: a format that cannot be written stops the tool before any work. The
output must be a new path or an earlier export nobody changed since (replaced with --overwrite); nothing is
written into a run folder.
"""

from __future__ import annotations

import argparse
import sys

from keras_calikd.cli import common


def parser() -> argparse.ArgumentParser:
    result = common.tool_parser("calikd-export", __doc__)
    result.add_argument("--checkpoint", required=True, help="a .keras model file (e.g. checkpoints/best.keras)")
    result.add_argument("--output", required=True, help="folder to write (the SavedModel and the other artifacts)")
    result.add_argument("--format", default="saved_model",
                        help="comma-separated subset of saved_model,tflite,onnx,litert (default: saved_model)")
    result.add_argument("--tflite", action="store_true", help=argparse.SUPPRESS)  # replaced by --format
    result.add_argument("--overwrite", action="store_true",
                        help="replace an earlier export at --output (one this tool wrote, unchanged since)")
    common.add_debug_flag(result)
    return result


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.tflite:
        raise ValueError("--tflite was replaced by --format: give --format saved_model,tflite (or any subset of "
                         "saved_model,tflite,onnx,litert).")
    from keras_calikd.files import Outputs
    from keras_calikd.training.evaluation import load_model
    from keras_calikd.training.export import TOOL, check_formats, export_into

    formats = check_formats(args.format)  # before the output is claimed and the model loaded
    outputs = Outputs(TOOL, args.overwrite)
    outputs.claim(args.output, folder=True, option="--output")
    model = load_model(args.checkpoint)
    with outputs:
        report = export_into(model, args.output, formats, source=args.checkpoint)
    differences = ", ".join(f"{k} {v:.2g}" for k, v in report["max_logit_difference"].items())
    print(f"Exported {args.checkpoint} to {args.output} as {', '.join(formats)} (largest logit difference to the "
          f"Keras model: {differences}; tolerance {report['tolerance']:.2g}).")
    return 0


def console() -> int:
    return common.run(main)


if __name__ == "__main__":
    sys.exit(console())
