"""calikd-report: collects finished runs into the paper's tables (Markdown and CSV) and a figure.

    calikd-report runs/cifar100 --output reports/table1
    calikd-report runs --paper --output reports/all      # the paper's value and measured - paper per cell
    calikd-report runs --bins 15 --diagrams reports/reliability.png

Every `results.json` under the given folders is read; one table is made per
data set: rows are teacher/student pairs (Acc, ECE, OE rows), columns the
teacher, the student trained from scratch and each distillation method (KD,
RKD, CRD, KD + cutout, KD + mixup, KD + CutMix, ...). The best value(s) of
each row are bold in Markdown and named in the CSV's `best` column.

--output PREFIX writes PREFIX.md, PREFIX.csv (numbers only) and the figure of
ECE against accuracy per method, PREFIX_ece_accuracy.png/.pdf/.svg: new files,
or this tool's earlier ones, unchanged since, with --overwrite (never inside a
run folder). A run that has not finished (being continued, or stopped) is
left out, with a note.
--paper matches runs to the paper's cells by run name (the gin name, e.g.
cifar100/wrn_40_2_shufflev1_kd_mixup); the paper's ECE/OE use 100 bins.

Seeds: runs whose results.json share a configuration id (they differ only in
their seed) fill one cell, printed as mean ± standard deviation (divisor n - 1)
[95% Student's t interval of the mean, mean ± t(0.975, n - 1) sd / sqrt(n)].
Each method is compared with KD and with the student from scratch of its
pair, seed by seed over the seeds both ran: the mean difference A - B with its
t interval; the verdict is "lower" or "higher" only when the interval excludes
zero, else "no difference detected at n seeds". The CSV has each cell's n, sd,
low and high; --output also writes PREFIX_differences.csv; the figure draws the
intervals as error bars. The tables say which validation metric picked each
run's checkpoint (Experiment.select_by).
"""

from __future__ import annotations

import argparse
import os
import sys

from keras_calikd.cli import common
from keras_calikd.files import Outputs, write_text
from keras_calikd.training import report, report_figures, seed_groups


def parser() -> argparse.ArgumentParser:
    result = common.tool_parser("calikd-report", __doc__)
    result.add_argument("runs", nargs="+", help="run folders (searched recursively) or results.json files")
    result.add_argument("--bins", type=int, default=100,
                        help="bin count of the ECE/OE rows (default 100, the paper's; 15 is also stored)")
    result.add_argument("--paper", action="store_true",
                        help="put the paper's value and measured - paper beside every measured cell")
    result.add_argument("--metrics", default="",
                        help="rows beyond Acc/ECE/OE, comma-separated: mce, adaptive_ece, classwise_ece")
    result.add_argument("--output", help="write <output>.md, <output>.csv and <output>_ece_accuracy.png/.pdf/.svg")
    result.add_argument("--diagrams",
                        help="write the runs' reliability diagrams (each at its Experiment.diagram_bins, 15 by "
                             "default) side by side to this .png (with .pdf and .svg beside it)")
    result.add_argument("--overwrite", action="store_true",
                        help="replace the files this tool wrote earlier at --output/--diagrams (unchanged since)")
    common.add_debug_flag(result)
    return result


def main(argv=None) -> int:
    """Runs calikd-report with `argv`; returns 0. Errors raise ValueError with a message for the user."""
    args = parser().parse_args(argv)
    if args.bins < 1:
        raise ValueError(f"--bins must be a positive bin count, got {args.bins}.")
    outputs = claim(args.output, args.diagrams, args.overwrite)  # every output checked before any work
    skipped = []
    results = report.with_temperature_scaled(report.find_results(args.runs, skipped))
    for folder in skipped:
        print(f"Note: {folder} is left out: it has not finished (it is being continued, or was stopped).")
    if not results:
        raise ValueError(f"no results.json under {', '.join(args.runs)}; finish a run first.")
    stored = sorted({int(k.split("_")[1]) for r in results for k in r if k.startswith("ece_") and k[4:].isdigit()})
    if stored and args.bins not in stored:
        raise ValueError(f"the runs store ECE/OE at {', '.join(map(str, stored))} bins, not {args.bins}; "
                         f"choose --bins {stored[-1]}.")
    extra = [m for m in args.metrics.split(",") if m] if args.metrics else []
    unknown = sorted(set(extra) - {key for key, _, _ in report.EXTRA_METRICS})
    if unknown:
        raise ValueError(f"--metrics: unknown {unknown}; choose from "
                         f"{', '.join(key for key, _, _ in report.EXTRA_METRICS)}.")
    tables = report.tables_for(results, bins=args.bins, paper=args.paper, extra_metrics=extra)
    if not tables:
        raise ValueError("no distilled runs found; the tables are built from teacher/student pairs.")
    markdown = "\n".join(report.to_markdown(t) for t in tables)
    print(markdown)
    if args.paper and args.bins != 100:
        print(f"Note: the paper's ECE/OE use 100 bins; these use {args.bins}.")
    if args.paper and not any(row["paper"] for table in tables for row in table["rows"]):
        print("Note: no run matched a cell of the paper; runs match by name, the gin file's path under gin/ "
              "(e.g. cifar100/wrn_40_2_shufflev1_kd_mixup), data set and corruption.")
    panels = report.reliability_panels(results) if args.diagrams else None
    if args.diagrams and not panels:
        raise ValueError("no run stored its reliability statistics (reliability_<bins> in results.json).")
    with outputs:
        if args.output:
            write_text(args.output + ".md", markdown)
            write_text(args.output + ".csv", report.to_csv(tables))
            written = [args.output + ".md", args.output + ".csv"]
            differences = [c for t in tables for c in seed_groups.comparisons(t)]
            if differences:
                written.append(args.output + "_differences.csv")
                write_text(written[-1], seed_groups.comparisons_csv(differences))
            figures = report_figures.plot_accuracy_calibration(tables, args.output + "_ece_accuracy.png")
            print(f"Wrote {', '.join(written)} and {', '.join(figures)}")
        if args.diagrams:
            from keras_calikd.metrics import plot_reliability_grid

            plot_reliability_grid(panels, args.diagrams)
            print(f"Wrote {args.diagrams} (and .pdf, .svg beside it)")
    return 0


def output_paths(output, diagrams) -> list:
    """Every file `--output PREFIX` and `--diagrams PATH` write, with the option that names it."""
    from keras_calikd.metrics.reliability import figure_paths

    paths = ([output + ".md", output + ".csv", output + "_differences.csv"] + figure_paths(output + "_ece_accuracy.png")
             if output else [])
    return [(path, "--output") for path in paths] + [(path, "--diagrams") for path in
                                                      (figure_paths(diagrams) if diagrams else [])]


def claim(output, diagrams, overwrite: bool) -> Outputs:
    """This tool's claim on the files of `--output` and `--diagrams` (refused with a message before any work)."""
    if output is not None and (output.endswith((os.sep, "/")) or not os.path.basename(output) or os.path.isdir(output)):
        raise ValueError(f"--output {output!r} names a folder, but it is the prefix of the file names written "
                         f"(PREFIX.md, PREFIX.csv, ...), e.g. {os.path.join(output, 'table')!r}.")
    outputs = Outputs("calikd-report", overwrite)
    for path, option in output_paths(output, diagrams):
        outputs.claim(path, option=option)
    return outputs


def console() -> int:
    return common.run(main)


if __name__ == "__main__":
    sys.exit(console())
