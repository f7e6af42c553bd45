"""Test configuration: the Keras backend comes from KERAS_BACKEND (the suite runs once per backend)."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "backend_neutral: tests of code that no Keras backend reaches (data pipelines, files, tools, "
                   "reports, packaging); tools/run_tests.sh runs them once, in its TensorFlow pass")
    config.addinivalue_line(
        "markers", "jax_pass: whole-run tests whose TensorFlow case another test already covers (each says which); "
                   "tools/run_tests.sh runs them in its JAX pass only")
    config.addinivalue_line(
        "markers", "heavy: a test that takes tens of seconds (whole runs, other processes); heavy tests are "
                   "collected first, so that the test processes of `pytest -n` start with them and end together")


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: item.get_closest_marker("heavy") is None)  # stable: otherwise in file order


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Each test starts from a clean Keras session and a float32 policy (floatx float32 again after it).

    Without Python's full garbage collection (`free_memory=False`): it costs about half a second per test and
    the suite does not need the memory back between tests.
    """
    keras.backend.clear_session(free_memory=False)
    keras.config.set_dtype_policy("float32")
    yield
    keras.config.set_dtype_policy("float32")
    keras.config.set_floatx("float32")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
