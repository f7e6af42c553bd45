"""Framework start-up chatter kept out of the console.

TensorFlow (which Keras imports on the TensorFlow backend, and the input
pipelines on every backend) writes a few lines to the process's stderr from
C++ when it starts: a note that logs go to stderr before logging starts, that
no CUDA driver was found, that oneDNN is on, which CPU instructions the binary
could use. They say nothing about the user's work, so `import keras_calikd`
imports the frameworks with stderr captured and writes back every line except
those (an error, or any line not on the list, still shows). Set
`CALIKD_FRAMEWORK_LOGS=1` to see everything.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile

CHATTER = re.compile("|".join((
    r"All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    r"cudart_stub\.cc.*Could not find cuda drivers",
    r"oneDNN custom operations are on",
    r"This TensorFlow binary is optimized to use available CPU instructions",
    r"To enable the following instructions: .* in other operations, rebuild TensorFlow",
    r"Unable to register cu(DNN|FFT|BLAS) factory",
    r"computation placer already registered",
    r"TF-TRT Warning: Could not find TensorRT",
    r"failed call to cuInit",
    r"cuda_platform\.cc.*cuInit",
)))


@contextlib.contextmanager
def filtered_stderr():
    """Captures what is written to file descriptor 2 inside the block; writes it back without the chatter."""
    if os.environ.get("CALIKD_FRAMEWORK_LOGS"):
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (e.g. an embedded interpreter): nothing to filter
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode(errors="replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if not CHATTER.search(line))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


def import_frameworks() -> None:
    """Imports Keras (and with it the backend) with the start-up chatter filtered from stderr.

    Nothing looks for devices here: JAX and TensorFlow find their devices when
    they first compute (or when `keras_calikd.training.distribution.setup`
    configures them), so a multi-process job can still be set up after the
    import.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TensorFlow's INFO logs off; warnings and errors stay
    if "keras" in sys.modules:
        return
    with filtered_stderr():
        import keras  # noqa: F401


def find_devices() -> None:
    """Lets the backend look for its devices now, with what it says about them filtered from stderr.

    Called where a run sets up its devices (`distribution.setup`) and where a
    tool first loads a model (`training.evaluation.load_model`), never at
    import: JAX's multi-process runtime must be started before JAX looks for
    devices. Idempotent; it is the frameworks' own lookup, done once.
    """
    if "keras" not in sys.modules:
        return
    import keras

    with filtered_stderr():
        if keras.backend.backend() == "jax":
            import jax

            jax.devices()
        elif keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            tf.config.list_physical_devices()


def import_tensorflow():
    """Imports TensorFlow (the input pipelines need it on every backend) with its start-up chatter filtered."""
    if "tensorflow" not in sys.modules:
        with filtered_stderr():
            import tensorflow  # noqa: F401
    return sys.modules["tensorflow"]
