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

import multi_device_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_on(devices):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "tests")]), TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "multi_device_run.py"), str(devices)],
                          env=env, capture_output=True, text=True, timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


@pytest.mark.heavy
def test_two_devices_match_one():
    ones, twos = multi_device_run.train_cases(), run_on(2)  # this process's one device; a process with two
    for case in ("kd_mixup", "crd_cutmix"):
        one, two = ones[case], twos[case]
        assert (one["replicas"], two["replicas"]) == (1, 2), case
        assert set(one["history"]) == set(two["history"]) and len(one["history"]["loss"]) == 3, case
        for key, values in one["history"].items():
            np.testing.assert_allclose(two["history"][key], values, rtol=2e-4, atol=2e-5, err_msg=f"{case} {key}")
        assert set(one["evaluation"]) == {"loss", "accuracy", "ece"} == set(two["evaluation"]), case
        for key, value in one["evaluation"].items():
            np.testing.assert_allclose(two["evaluation"][key], value, rtol=2e-4, atol=2e-5, err_msg=f"{case} {key}")
        np.testing.assert_allclose(two["memory"], one["memory"], rtol=1e-4, atol=1e-5, err_msg=case)
    assert ones["kd_mixup"]["memory"] == [] and len(ones["crd_cutmix"]["memory"]) == 4
