"""The package stands on its own: a wheel installed outside the repository trains, exports and finds its gin files."""

import glob
import json
import os
import shutil
import subprocess
import sys

import pytest

# Backend-neutral: tools/run_tests.sh runs this module once, in its TensorFlow pass.
pytestmark = pytest.mark.backend_neutral

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

import data_fakes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "keras_calikd")


def test_the_package_never_mentions_tools():
    mentions = [path for path in glob.glob(os.path.join(PACKAGE, "**", "*.py"), recursive=True)
                if "tools/" in open(path).read()]
    assert mentions == []


def test_every_subpackage_is_listed_for_the_wheel():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        listed = set(tomllib.load(f)["tool"]["setuptools"]["packages"])
    found = {os.path.relpath(os.path.dirname(p), ROOT).replace(os.sep, ".")
             for p in glob.glob(os.path.join(PACKAGE, "**", "__init__.py"), recursive=True)}
    assert found <= listed and listed - found == {"keras_calikd.configs"}


@pytest.fixture(scope="session")
def installed(tmp_path_factory):
    """The wheel built from the checkout, installed (not editable) into a folder outside it."""
    work = tmp_path_factory.mktemp("installed")
    wheels = work / "wheels"
    # Built from a copy of the sources: setuptools reuses an in-tree build/ folder, whose modules of an earlier
    # build (a module renamed or deleted since) would otherwise go into the wheel.
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "runs", "*.egg-info",
                                                               "__pycache__", ".whl"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(wheels), str(source)], check=True, capture_output=True, timeout=600)
    site = work / "site"
    wheel = glob.glob(str(wheels / "keras_calikd-*.whl"))[0]
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), wheel],
                   check=True, capture_output=True, timeout=600)
    return work, site


def run_installed(installed, *args, cwd, backend="tensorflow"):
    work, site = installed
    env = dict(os.environ, PYTHONPATH=str(site), TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND=backend)
    return subprocess.run([sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=900)


def test_the_installed_wheel_has_its_experiments_and_console_scripts(installed):
    work, site = installed
    assert glob.glob(str(site / "keras_calikd" / "configs" / "cifar100" / "*.gin"))
    console = site / "bin" / "calikd-train"
    assert console.exists()
    find = "import importlib.util; print(importlib.util.find_spec('keras_calikd').origin)"  # without importing Keras
    where = run_installed(installed, "-c", find, cwd=str(work))
    assert where.stdout.strip().startswith(str(site)), where.stderr[-2000:]  # not the checkout
    shown = run_installed(installed, str(console), "--help", cwd=str(work))
    assert shown.returncode == 0 and "cifar100/vgg13_mobilenetv2_kd_mixup" in shown.stdout, shown.stderr[-2000:]


@pytest.mark.heavy
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_an_installed_wheel_trains_and_exports_a_run_by_experiment_name(installed, backend):
    work, site = installed
    data_dir = work / f"tfds_{backend}"
    data_fakes.write_fashion_mnist(str(data_dir / "downloads" / "manual" / "fashion-mnist"), n_train=64, n_test=32)
    bindings = {"RUNS_DIR": repr(str(work / f"runs_{backend}")), "DATA_DIR": repr(str(data_dir)),
                "Experiment.epochs": 1, "Experiment.batch_size": 32, "Experiment.eval_batch_size": 32,
                "Experiment.model": "'resnet8'", "Experiment.train_split": "'train'", "Experiment.verbose": 0,
                "Experiment.validation_split": "'test'", "Experiment.diagram_formats": "('png',)"}
    args = [arg for key, value in bindings.items() for arg in ("--gin_param", f"{key} = {value}")]
    done = run_installed(installed, str(site / "bin" / "calikd-train"), "--gin", "quickstart/teacher", *args,
                         cwd=str(work), backend=backend)
    assert done.returncode == 0, done.stderr[-3000:]
    run = work / f"runs_{backend}" / "quickstart" / "teacher"
    record = json.loads((run / "run.json").read_text())
    assert record["finished"] and record["provenance"]["backend"] == backend
    report = json.loads((run / "saved_model" / "export.json").read_text())
    assert report["max_logit_difference"]["saved_model"] < 1e-4
