"""calikd-quickstart: the paper's study in miniature, on real Fashion-MNIST, in minutes on a CPU.

    calikd-quickstart                        # teacher, student from scratch, KD (+ TS), KD + cutout/mixup/CutMix
    calikd-quickstart --seeds 0,1            # two seeds: mean and spread of every student
    calikd-quickstart --study beyond         # the beyond-the-paper methods beside the paper's (longer)

Every run is `calikd-train --gin quickstart/<run>.gin` (or `study/<run>.gin`) in this process, in
`<runs_dir>/quickstart/...`; a second seed's runs go to `<runs_dir>/quickstart/seed<k>/...` and distil
from the same teacher. The runs are in the paper's regime (see gin/quickstart/base.gin): networks trained
to fit their training images, so the teacher and the student from scratch come out overconfident. At the
end the tool prints, and writes to `<runs_dir>/quickstart/summary.md`, the table of every method (mean and
spread over the seeds) and, per method, whether it lowered ECE and OE relative to KD and to the student
from scratch. Running it again resumes or reuses the finished runs. Fashion-MNIST's IDX files are read
from `<data_dir>/downloads/manual/fashion-mnist/` or from Debian's /usr/share/datasets/fashion-mnist/.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from keras_calikd.cli import common
from keras_calikd.cli import report
from keras_calikd.files import RUN_MARKER, Outputs, write_text

TEACHER = "quickstart/teacher"
STUDIES = {
    "paper": ("quickstart/student", "quickstart/kd", "quickstart/kd_cutout", "quickstart/kd_mixup",
              "quickstart/kd_cutmix"),
    "beyond": ("quickstart/student", "quickstart/kd", "quickstart/kd_cutout", "quickstart/kd_mixup",
               "quickstart/kd_cutmix", "study/kd_calibrated_teacher", "study/dkd", "study/dkd_mixup", "study/lskd",
               "study/kd_label_smoothing", "study/kd_focal"),
}
METRICS = (("accuracy", "Acc", 100.0, "{:.2f}"), ("ece_15", "ECE", 1.0, "{:.3f}"), ("oe_15", "OE", 1.0, "{:.3f}"))


def parser() -> argparse.ArgumentParser:
    result = common.tool_parser("calikd-quickstart", __doc__)
    result.add_argument("--runs_dir", default="runs", help="where the runs go (default: runs)")
    result.add_argument("--data_dir", help="TFDS data folder (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)")
    result.add_argument("--seeds", type=common.comma_list(int), default=[0],
                        help="comma-separated seeds of the students (default: 0)")
    result.add_argument("--study", default="paper", choices=sorted(STUDIES), help="which methods (default: paper)")
    result.add_argument("--fresh", action="store_true",
                        help="delete this study's earlier runs first (refused while one is in use, or holds files "
                             "its run did not write)")
    result.add_argument("--gin_param", action="append", default=[], help="extra gin binding for every run")
    common.add_debug_flag(result)
    return result


def _run_name(run: str, seed: int, first: int) -> str:
    return run if seed == first else f"quickstart/seed{seed}/{run.split('/', 1)[1]}"


def _train(run: str, name: str, seed: int, runs_dir: str, bindings) -> dict:
    """Trains one run in this process (its gin file, its name and seed); returns its results."""
    import keras

    from keras_calikd.cli import train

    keras.backend.clear_session()
    argv = ["--gin", f"{run}.gin", "--gin_param", f"Experiment.name = {name!r}",
            "--gin_param", f"Experiment.seed = {seed}"]
    for binding in bindings:
        argv += ["--gin_param", binding]
    train.main(argv)
    with open(os.path.join(runs_dir, name, "results.json")) as f:
        return json.load(f)


def _label(result: dict) -> str:
    return {"teacher": "Teacher", "student": "Student"}.get(result["role"], result.get("method", ""))


def summary(results) -> str:
    """The study's table (mean and spread over seeds) and, per method, whether it beat KD and the student."""
    import numpy as np

    from keras_calikd.training.report import with_temperature_scaled

    by_label = {}
    for result in with_temperature_scaled(results):
        by_label.setdefault(_label(result), []).append(result)
    labels = list(by_label)
    seeds = max(len(v) for v in by_label.values())
    lines = [f"| Metric | {' | '.join(labels)} |", "|---" * (len(labels) + 1) + "|"]
    means = {}
    for key, name, scale, form in METRICS:
        cells = []
        for label in labels:
            values = np.array([r[key] * scale for r in by_label[label]])
            means[(label, key)] = values.mean()
            spread = f" ± {(values.max() - values.min()) / 2:{form[2:-1]}}" if len(values) > 1 else ""
            cells.append(form.format(values.mean()) + spread)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    note = (f"Mean over {seeds} seeds ± half their range (the teacher: one run); ECE/OE with 15 bins, "
            "on the 10,000 test images." if seeds > 1 else "One seed; ECE/OE with 15 bins, on the 10,000 test images.")
    verdicts = ["", "| Method | lower ECE than KD | lower OE than KD | lower ECE than the student | "
                    "lower OE than the student |", "|---|---|---|---|---|"]
    for label in labels:
        if label in ("Teacher", "Student", "KD") or "KD" not in by_label or "Student" not in by_label:
            continue
        cells = []
        for reference in ("KD", "Student"):
            for key in ("ece_15", "oe_15"):
                delta = means[(label, key)] - means[(reference, key)]
                cells.append(f"{'yes' if delta < 0 else 'no'} ({delta:+.3f})")
        verdicts.append(f"| {label} | {cells[0]} | {cells[1]} | {cells[2]} | {cells[3]} |")
    return "\n".join(lines + ["", note] + verdicts) + "\n"


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    from keras_calikd.training.run_folder import remove_run

    seeds = list(dict.fromkeys(args.seeds))
    if not seeds:
        raise ValueError("--seeds must name at least one seed, e.g. --seeds 0,1.")
    runs_dir = os.path.abspath(args.runs_dir)
    root = os.path.join(runs_dir, "quickstart")
    names = [(TEACHER, TEACHER, seeds[0])] + [(run, _run_name(run, seed, seeds[0]), seed)
                                              for seed in seeds for run in STUDIES[args.study]]
    # Every output is checked before any work: the summary and the report are this tool's to replace.
    summary_output = Outputs("calikd-quickstart", overwrite=True)
    summary_output.claim(os.path.join(root, "summary.md"))
    report_files = (os.path.join(root, "report"), os.path.join(root, "reliability_diagrams.png"))
    report.claim(*report_files, overwrite=True)
    if args.fresh:  # only this study's own run folders, each checked before any is deleted
        fresh = [os.path.join(runs_dir, name) for _, name, _ in names
                 if os.path.isfile(os.path.join(runs_dir, name, RUN_MARKER))]
        for folder in fresh:
            remove_run(folder, check_only=True)
        for folder in fresh:
            remove_run(folder)
    bindings = [f"RUNS_DIR = {runs_dir!r}"] + ([f"DATA_DIR = {args.data_dir!r}"] if args.data_dir else [])
    bindings += args.gin_param
    started, results = time.time(), []
    for run, name, seed in names:
        print(f"\n=== {name} ({time.time() - started:.0f}s so far) ===", flush=True)
        results.append(_train(run, name, seed, runs_dir, bindings))
    table = summary(results)
    with summary_output:
        write_text(os.path.join(root, "summary.md"), table)
    print(f"\n{table}\nQuickstart finished in {time.time() - started:.0f}s; runs and summary.md in {root}.")
    first_seed = [os.path.join(runs_dir, name) for _, name, seed in names if seed == seeds[0]]
    report.main([*first_seed, "--bins", "15", "--output", report_files[0], "--diagrams", report_files[1],
                 "--overwrite"])
    return 0


def console() -> int:
    return common.run(main)


if __name__ == "__main__":
    sys.exit(console())
