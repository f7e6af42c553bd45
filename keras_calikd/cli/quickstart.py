"""The quickstart study on Fashion-MNIST: teacher, student from scratch, KD, KD + mixup, KD + CutMix, KD + cutout.

    python -m keras_calikd.cli.quickstart [--runs_dir runs] [--data_dir DIR] [--fresh]

Each run is `calikd-train --gin quickstart/<run>.gin`, in
`<runs_dir>/quickstart/<run>`; the report table and the reliability diagrams
of all six runs come last, in `<runs_dir>/quickstart/`. Fashion-MNIST's
four IDX files are read from `<data_dir>/downloads/manual/fashion-mnist/` or
from Debian's /usr/share/datasets/fashion-mnist/ (package dataset-fashion-mnist).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time

from keras_calikd.cli import common
from keras_calikd.training.files import RUN_MARKER

RUNS = ("teacher", "student", "kd", "kd_mixup", "kd_cutmix", "kd_cutout")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="calikd-quickstart", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs_dir", default="runs", help="where the runs go (default: runs)")
    parser.add_argument("--data_dir", help="TFDS data folder (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)")
    parser.add_argument("--fresh", action="store_true", help="delete the earlier quickstart runs first")
    parser.add_argument("--gin_param", action="append", default=[], help="extra gin binding for every run")
    common.add_debug_flag(parser)
    args = parser.parse_args(argv)

    # train.py names the runs after their gin files: <runs_dir>/quickstart/<run>.
    runs_dir = os.path.abspath(args.runs_dir)
    runs_root = os.path.join(runs_dir, "quickstart")
    if args.fresh:  # only the quickstart's own run folders, never anything else in runs_root
        for run in RUNS:
            if os.path.isfile(os.path.join(runs_root, run, RUN_MARKER)):
                shutil.rmtree(os.path.join(runs_root, run))
    bindings = [f"RUNS_DIR = {runs_dir!r}"] + ([f"DATA_DIR = {args.data_dir!r}"] if args.data_dir else [])
    bindings += args.gin_param
    started = time.time()
    for run in RUNS:
        command = [sys.executable, "-m", "keras_calikd.cli.train", "--gin", f"quickstart/{run}.gin"]
        for binding in bindings:
            command += ["--gin_param", binding]
        print(f"\n=== quickstart/{run} ({time.time() - started:.0f}s so far) ===", flush=True)
        if subprocess.run(command).returncode != 0:
            return 1
    table = os.path.join(runs_root, "report")
    diagrams = os.path.join(runs_root, "reliability_diagrams.png")
    print(f"\n=== report ({time.time() - started:.0f}s) ===", flush=True)
    code = subprocess.run([sys.executable, "-m", "keras_calikd.cli.report", runs_root, "--bins", "15",
                           "--output", table, "--diagrams", diagrams]).returncode
    print(f"Quickstart finished in {time.time() - started:.0f}s; runs in {runs_root}.")
    return code


def console() -> int:
    return common.run(main)


if __name__ == "__main__":
    sys.exit(console())
