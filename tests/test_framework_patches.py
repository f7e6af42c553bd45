"""Fixes of Keras internals apply only where they were written for; importing keras_calikd looks for no device."""

import os
import subprocess
import sys

import keras
import pytest

from keras_calikd.training import keras_patches
from keras_calikd.training.keras_patches import MULTI_WORKER_TRAINER, KerasPatchError

# Backend-neutral: the source of Keras' TensorFlow trainer and a TensorFlow process; tools/run_tests.sh runs this
# module once, in its TensorFlow pass (the JAX process's import is checked in test_distiller.py).
pytestmark = pytest.mark.backend_neutral

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_installed_keras_is_one_the_multi_worker_fix_was_written_for():
    """Fails when Keras changes the functions the fix replaces: check the fix again, then record their new source."""
    version = keras_patches.minor_version()
    assert version in MULTI_WORKER_TRAINER.written_for, (
        f"Keras {keras.__version__}: check the fix of {MULTI_WORKER_TRAINER.name} on it (tests/test_multi_worker.py) "
        f"and record its fingerprints {keras_patches.fingerprints(MULTI_WORKER_TRAINER)}")
    assert keras_patches.fingerprints(MULTI_WORKER_TRAINER) == MULTI_WORKER_TRAINER.written_for[version]
    keras_patches.check(MULTI_WORKER_TRAINER)


def test_another_keras_or_other_code_is_refused_before_anything_is_replaced(monkeypatch):
    import importlib

    module = importlib.import_module(MULTI_WORKER_TRAINER.module)
    monkeypatch.delattr(module, "_keras_calikd_originals", raising=False)
    before = (module.reduce_per_replica, module.TensorFlowTrainer._maybe_symbolic_build)
    with monkeypatch.context() as patched:
        patched.setattr(keras, "__version__", "3.99.0")
        with pytest.raises(KerasPatchError, match=r"written for Keras 3\.15; Keras 3\.99\.0 is installed.*keras==3\.15"):
            keras_patches.install_multi_worker_trainer()
    changed = MULTI_WORKER_TRAINER._replace(written_for={keras_patches.minor_version(): dict(
        MULTI_WORKER_TRAINER.written_for[keras_patches.minor_version()], reduce_per_replica="0" * 16)})
    with pytest.raises(KerasPatchError, match="reduce_per_replica as released, but the installed Keras"):
        keras_patches.install(changed, {"reduce_per_replica": print})
    assert (module.reduce_per_replica, module.TensorFlowTrainer._maybe_symbolic_build) == before


def test_importing_keras_calikd_looks_for_no_device():
    """A multi-process job must set its runtime up before the devices are looked for (distribution.setup)."""
    code = ("import keras_calikd, keras_calikd.training\n"
            "from tensorflow.python.eager import context\n"
            "assert context.context()._physical_devices is None, 'importing keras_calikd listed the devices'\n"
            "keras_calikd.training.distribution.setup()\n"
            "assert context.context()._physical_devices is not None\n"
            "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, KERAS_BACKEND="tensorflow", PYTHONPATH=ROOT))
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
