"""tools/benchmark.py measures one small configuration and writes consistent JSON."""

import json
import os
import subprocess
import sys

import keras
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The tool's arithmetic and report are the same on every backend (its timings are what differ, and timings are
# not tested): tools/run_tests.sh runs this module once, in its TensorFlow pass.
pytestmark = pytest.mark.backend_neutral


@pytest.mark.heavy
def test_benchmark_writes_the_step_its_parts_and_the_overhead(tmp_path):
    backend = keras.backend.backend()
    output = tmp_path / "bench.json"
    command = [sys.executable, os.path.join(ROOT, "tools", "benchmark.py"), "--backend", backend,
               # Without XLA on both backends: the tool's arithmetic is what is tested, and three XLA
               # compilations of the step would take most of a minute on a CPU.
               "--jit", "off", "--teacher", "resnet8", "--student", "resnet8",
               "--input_shape", "28,28,1", "--num_classes", "10", "--batch_sizes", "8",
               "--steps", "2", "--warmup", "1", "--output", str(output)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads(output.read_text())
    assert (report["teacher"], report["student"], report["augmentation"]) == ("resnet8", "resnet8", "mixup")
    [result] = report["results"]
    assert (result["backend"], result["batch_size"], result["precision"]) == (backend, 8, "float32")
    # The reported rates and the overhead follow from the measured step times.
    assert result["distill_images_per_s"] == pytest.approx(8 / (result["distill_step_ms"] / 1e3))
    assert result["student_2x_images_per_s"] == pytest.approx(16 / (result["student_2x_step_ms"] / 1e3))
    assert result["overhead"] == pytest.approx(
        result["distill_step_ms"] / (result["teacher_ms"] + result["student_2x_step_ms"]))
    assert result["peak_host_rss_mib"] > 100
    assert result["peak_accelerator_mib"] is None or result["peak_accelerator_mib"] > 0  # None on a CPU
