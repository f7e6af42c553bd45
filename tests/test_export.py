"""calikd-export's formats, each artifact run in its own runtime on raw uint8 images beside the Keras model.

ONNX is written by tf2onnx on TensorFlow and jax2onnx on JAX and run by
onnxruntime; TFLite by TensorFlow's converter from the SavedModel (both
backends) and run by `tf.lite.Interpreter`; LiteRT by Keras' LiteRT export,
which Keras 3.15 offers on TensorFlow only, and run by ai-edge-litert's
interpreter. On JAX the LiteRT format is refused with a message instead.
"""

import json
import os
import re

import keras
import numpy as np
import pytest

from keras_calikd.cli import common
from keras_calikd.cli import export as export_tool
from keras_calikd.training import export
from tiny import zoo_tiny

ON_TF = keras.backend.backend() == "tensorflow"
FORMATS = ("saved_model", "tflite", "onnx", "litert") if ON_TF else ("saved_model", "tflite", "onnx")


def run_artifact(folder, export_format, images):
    """The artifact's logits and probabilities on `images`, from its own runtime (no Keras, no keras_calikd)."""
    import tensorflow as tf

    if export_format == "saved_model":
        outputs = tf.saved_model.load(folder).signatures["serving_default"](images=tf.constant(images))
        return outputs["logits"].numpy(), outputs["probabilities"].numpy()
    if export_format == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(os.path.join(folder, "model.onnx"), providers=["CPUExecutionProvider"])
        assert [(i.name, i.type) for i in session.get_inputs()] == [("images", "tensor(uint8)")]
        return session.run(["logits", "probabilities"], {"images": images})
    if export_format == "litert":
        from ai_edge_litert.interpreter import Interpreter

        outputs = Interpreter(model_path=os.path.join(folder, "model_litert.tflite")).get_signature_runner(
            "serving_default")(images=images)
    else:
        outputs = tf.lite.Interpreter(model_path=os.path.join(folder, "model.tflite")).get_signature_runner(
            "serving_default")(images=images)
    return outputs["logits"], outputs["probabilities"]


@pytest.mark.heavy
def test_every_format_gives_the_keras_models_predictions_on_raw_pixels(tmp_path, capsys):
    keras.utils.set_random_seed(0)
    model = zoo_tiny(10, (28, 28, 1), name="m", normalization=((72.9,), (90.0,)))
    checkpoint, exported = str(tmp_path / "best.keras"), str(tmp_path / "exported")
    model.save(checkpoint)
    assert export_tool.main(["--checkpoint", checkpoint, "--output", exported, "--format", ",".join(FORMATS)]) == 0
    assert "largest logit difference" in capsys.readouterr().out
    report = json.loads(open(os.path.join(exported, "export.json")).read())
    assert set(report["max_logit_difference"]) == set(FORMATS) and report["input"]["dtype"] == "uint8"
    assert all(difference <= report["tolerance"] for difference in report["max_logit_difference"].values())
    images = np.random.default_rng(5).integers(0, 256, (5, 28, 28, 1), dtype=np.uint8)  # not the probe images
    expected = keras.ops.convert_to_numpy(model(images.astype("float32")))
    for export_format in FORMATS:
        logits, probabilities = run_artifact(exported, export_format, images)
        np.testing.assert_allclose(logits, expected, atol=1e-4, err_msg=export_format)
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5, err_msg=export_format)
    # An earlier export is replaced only with --overwrite; a run folder never.
    with pytest.raises(FileExistsError, match="--overwrite"):
        export_tool.main(["--checkpoint", checkpoint, "--output", exported])
    assert export_tool.main(["--checkpoint", checkpoint, "--output", exported, "--overwrite"]) == 0
    assert sorted(os.listdir(exported)) == [".calikd-outputs.json", "assets", "export.json", "fingerprint.pb",
                                            "saved_model.pb", "variables"]  # the manifest: what calikd-export wrote
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text("{}")
    with pytest.raises(FileExistsError, match="run folder"):
        export_tool.main(["--checkpoint", checkpoint, "--output", str(tmp_path / "run"), "--overwrite"])


@pytest.mark.parametrize("argv, message", [
    (["--format", "onnx,pdf"], r"Unknown export format \['pdf'\]; give a comma-separated subset of "
                               "saved_model,tflite,onnx,litert"),
    (["--tflite"], "--tflite was replaced by --format: give --format saved_model,tflite"),
    (["--format", "saved_model,onnx"], "The onnx format needs onnxruntime on the .* backend, which is not installed: "
                                       "pip install onnxruntime" + (r' \(or pip install "keras-calikd\[export\]"'
                                                                    if ON_TF else r"\.$")),
    (["--format", "litert"], "The litert format needs ai-edge-litert" if ON_TF else
     "The litert format needs the TensorFlow backend .*KERAS_BACKEND=tensorflow, or give tflite"),
])
def test_a_format_that_cannot_be_written_stops_the_tool_before_any_work(tmp_path, capsys, monkeypatch, argv,
                                                                        message):
    """The checkpoint does not even exist: the format is refused first, in one `error:` line."""
    installed = export._installed
    monkeypatch.setattr(export, "_installed", lambda module: module not in ("onnxruntime", "ai_edge_litert")
                        and installed(module))
    output = tmp_path / "exported"
    status = common.run(export_tool.main, ["--checkpoint", str(tmp_path / "missing.keras"), "--output", str(output),
                                           *argv])
    lines = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
    assert re.search(message, lines[0]), lines[0]
    assert not output.exists()


@pytest.mark.backend_neutral
def test_a_converter_that_fails_leaves_nothing_and_says_which_format(tmp_path, monkeypatch):
    def broken(serving, file, images):
        raise NotImplementedError("no converter for the operation 'Einsum'\nsecond line")

    monkeypatch.setattr(export, "_write_onnx", broken)
    with pytest.raises(export.ExportConversionError, match=r"The onnx export of m failed \(NotImplementedError: no "
                                                           r"converter for the operation 'Einsum'\)\. Export the other"):
        export.export_model(zoo_tiny(3, (4, 4, 1), name="m"), str(tmp_path / "out"), ("onnx",))
    assert os.listdir(tmp_path) == []


@pytest.mark.backend_neutral
def test_tflite_without_the_saved_model_leaves_only_its_file(tmp_path):
    """TFLite is converted from a SavedModel, written aside and removed when the SavedModel was not asked for."""
    report = export.export_model(zoo_tiny(3, (4, 4, 1), name="m"), str(tmp_path / "out"), "tflite")
    assert sorted(os.listdir(tmp_path / "out")) == [".calikd-outputs.json", "export.json", "model.tflite"]
    assert report["artifacts"] == {"tflite": "model.tflite"} and set(report["max_logit_difference"]) == {"tflite"}
