"""calikd-quickstart: the paper's study in miniature, on real Fashion-MNIST, in minutes on a CPU.

    calikd-quickstart                        # teacher, student from scratch, KD (+ TS), KD + cutout/mixup/CutMix
    calikd-quickstart --seeds 0,1,2          # three seeds: intervals over seeds and paired verdicts
    calikd-quickstart --study beyond         # the beyond-the-paper methods beside the paper's (longer)

Every run is `calikd-train --gin quickstart/<run>.gin` (or `study/<run>.gin`) in this process, in
`<runs_dir>/quickstart/...`; a second seed's runs go to `<runs_dir>/quickstart/seed<k>/...` and distil
from the same teacher. The runs are in the paper's regime (see gin/quickstart/base.gin): networks trained
to fit their training images, so the teacher and the student from scratch come out overconfident. At the
end the tool prints, and writes to `<runs_dir>/quickstart/summary.md`, calikd-report's table of every
method and each method's difference from KD and from the student from scratch, with ECE/OE at 15 bins.
With several seeds a cell is mean ± standard deviation [95% Student's t interval of the mean over the
seeds], and a difference (seed by seed, with its t interval) is called "lower" or "higher" only when its
interval excludes zero, else "no difference detected at n seeds". With one seed nothing is decided: the
summary states how large a difference one seed cannot resolve: the test images' noise (the median
half-width of the runs' 95% bootstrap intervals over the test images), and the seed-to-seed spread measured
over 5 seeds (docs/studies.md). The report beside it
(`report.md`, `.csv`, `_differences.csv`, the ECE-accuracy figure with error bars) covers every seed; the
reliability diagrams, the first seed's runs. Running it again resumes or reuses the finished runs.
Fashion-MNIST's IDX files are read from `<data_dir>/downloads/manual/fashion-mnist/` or from Debian's
/usr/share/datasets/fashion-mnist/.
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
#: The numbers whose test-image noise the single-seed summary states: key -> (name, scale, printed decimals).
RESOLUTION = {"accuracy": ("Acc", 100.0, 2), "ece_15": ("ECE", 1.0, 3), "oe_15": ("OE", 1.0, 3)}
#: The seed-to-seed spread measured by `--seeds 0,1,2,3,4` (docs/studies.md): the standard deviation sd of each
#: method's paired difference from KD over the 5 seeds, and t(0.975, 4) * sd, the smallest difference one seed
#: resolves (`ck.metrics.resolvable_difference(difference, seeds=1)`), over KD + TS/cutout/mixup/CutMix.
MEASURED_SEED_SPREAD = ("Measured over 5 seeds on this project's machine (docs/studies.md), a method's ECE minus "
                        "KD's varies from seed to seed with a standard deviation of 0.002 to 0.011 (OE: 0.002 to "
                        "0.006, Acc: 0.33 to 0.75 points apart from KD + TS, which keeps KD's accuracy), so one seed resolves no difference from KD smaller than "
                        "0.005 to 0.029 in ECE (OE: 0.006 to 0.016, Acc: 0.9 to 2.1 points).")


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


def summary(results) -> str:
    """The study's table and paired verdicts, as `calikd-report` makes them (`seed_groups`), at 15 bins.

    Several seeds: each cell is mean ± sd [95% Student's t interval], and each method is compared with KD and
    the student from scratch seed by seed. One seed: the differences without verdicts, and how large a
    difference one seed cannot resolve, from the runs' bootstrap intervals over the test images.
    """
    from keras_calikd.training import report, seed_groups

    tables = report.tables_for(report.with_temperature_scaled(results), bins=15)
    text = "\n".join(report.to_markdown(table) for table in tables)
    if max((n for table in tables for n in seed_groups.seed_counts(table)), default=1) == 1:
        note = seed_groups.one_seed_resolution(results, RESOLUTION)
        text += "".join(f"\n{line}\n" for line in (note, MEASURED_SEED_SPREAD) if line)
    return text


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
    diagrams_output = report.claim(*report_files, overwrite=True)  # the report's files and the diagrams
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
    from keras_calikd.metrics import plot_reliability_grid
    from keras_calikd.training.report import reliability_panels

    report.main([*(os.path.join(runs_dir, name) for _, name, _ in names), "--bins", "15", "--output",
                 report_files[0], "--overwrite"])
    panels = reliability_panels([r for r, (_, _, seed) in zip(results, names) if seed == seeds[0]])
    if panels:
        with diagrams_output:
            path = plot_reliability_grid(panels, report_files[1])
        print(f"Wrote {path} (and .pdf, .svg beside it), the runs of seed {seeds[0]}")
    return 0


def console() -> int:
    return common.run(main)


if __name__ == "__main__":
    sys.exit(console())
