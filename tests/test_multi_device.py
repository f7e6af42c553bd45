"""The Distiller on two logical CPU devices gives the losses and metrics of one device.

TensorFlow trains under `tf.distribute.MirroredStrategy`, JAX under
`keras.distribution.DataParallel`; mixup partners, CutMix boxes, CRD negatives
and memory-bank updates are drawn over the global batch, so they match.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(case, devices):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "tests")]), TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "multi_device_run.py"), case, str(devices)],
                          env=env, capture_output=True, text=True, timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


@pytest.mark.parametrize("case", ["kd_mixup", "crd_cutmix"])
def test_two_devices_match_one(case):
    one, two = run(case, 1), run(case, 2)
    assert (one["replicas"], two["replicas"]) == (1, 2)
    assert set(one["history"]) == set(two["history"]) and len(one["history"]["loss"]) == 3
    for key, values in one["history"].items():
        np.testing.assert_allclose(two["history"][key], values, rtol=2e-4, atol=2e-5, err_msg=key)
    assert set(one["evaluation"]) == {"loss", "accuracy", "ece"} == set(two["evaluation"])
    for key, value in one["evaluation"].items():
        np.testing.assert_allclose(two["evaluation"][key], value, rtol=2e-4, atol=2e-5, err_msg=key)
    np.testing.assert_allclose(two["memory"], one["memory"], rtol=1e-4, atol=1e-5)
