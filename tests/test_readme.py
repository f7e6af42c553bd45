"""Every Python snippet of README.md runs verbatim, in order, on both backends (on real Fashion-MNIST)."""

import os
import re
import subprocess
import sys

import pytest

# Backend-neutral: tools/run_tests.sh runs this module once, in its TensorFlow pass.
pytestmark = pytest.mark.backend_neutral

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def snippets():
    with open(os.path.join(ROOT, "README.md")) as f:
        return re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)


def test_the_readme_has_its_snippets():
    assert len(snippets()) >= 2


@pytest.mark.heavy
def test_every_readme_snippet_runs_verbatim(tmp_path):
    script = tmp_path / "readme.py"
    script.write_text("\n".join(snippets()))
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3", TFDS_DATA_DIR=str(tmp_path / "tfds"))
    done = subprocess.run([sys.executable, str(script)], cwd=str(tmp_path), env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    assert (tmp_path / "student.keras").exists() and (tmp_path / "student_savedmodel" / "saved_model.pb").exists()
