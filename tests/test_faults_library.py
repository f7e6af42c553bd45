"""Nothing lost, every error clear, through the library: one table row per fault class, on both backends.

`tests/test_faults.py` drives the tools (once, in the TensorFlow pass); the rows here reach a Keras backend
(a Distiller's data checks, the calibration metrics in compiled steps, loading saved models), so both passes
run them, unless a row is marked `backend_neutral`.
"""

import keras
import numpy as np
import pytest

import keras_calikd as ck
from tiny import blobs, tiny_cnn


# ---------------------------------------------------------------- a failed data check is the library's ValueError

def _pipeline(x, y):
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices((x, y)).batch(16)


def _distiller():
    distiller = ck.Distiller(tiny_cnn(name="t"), tiny_cnn(name="s"))
    distiller.compile(optimizer="sgd")
    return distiller


PIPELINE_LABELS = {
    "fit, labels out of range": (lambda x, y: _distiller().fit(_pipeline(x, y + 5), verbose=0),
                                 "training labels must be class ids in [0, 9] for models with 10 classes; "
                                 "a batch holds one outside."),
    "fit, fractional labels": (lambda x, y: _distiller().fit(_pipeline(x, (y + 0.7).astype("float32")), verbose=0),
                               "training labels must be whole class ids; a batch holds a fractional one "
                               "(labels are never truncated)."),
    "validation labels out of range": (
        lambda x, y: _distiller().fit(x, y, validation_data=_pipeline(x, y - 1), verbose=0),
        "validation labels must be class ids in [0, 9] for models with 10 classes; a batch holds one outside."),
}


@pytest.mark.parametrize("case", sorted(PIPELINE_LABELS))
def test_a_failed_pipeline_check_raises_the_librarys_value_error(case):
    action, sentence = PIPELINE_LABELS[case]
    x, y = blobs(32)
    with pytest.raises(ValueError) as error:
        action(x, y)
    assert type(error.value) is ValueError and str(error.value) == sentence  # the sentence, not a graph dump
    assert error.value.__suppress_context__  # `from None`: no framework traceback chained to it
