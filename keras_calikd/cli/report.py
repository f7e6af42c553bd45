"""calikd-report: collects finished runs into the paper's tables (Markdown and CSV).

    calikd-report runs/cifar100 --output reports/table1
    calikd-report runs --bins 15

Every `results.json` under the given folders is read; one table is made per
data set: rows are teacher/student pairs (Acc, ECE, OE lines), columns the
teacher, the student trained from scratch and each distillation method
(KD, RKD, CRD, KD + cutout, KD + mixup, KD + CutMix, ...).
"""

from __future__ import annotations

import argparse
import sys

from keras_calikd.cli import common
from keras_calikd.training import report
from keras_calikd.training.files import write_text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="calikd-report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run folders (searched recursively) or results.json files")
    parser.add_argument("--bins", type=int, default=100, help="bin count of the ECE/OE columns (100 or 15)")
    parser.add_argument("--output", help="write <output>.md and <output>.csv besides printing")
    parser.add_argument("--diagrams", help="write the runs' reliability diagrams (15 bins) side by side to this PNG")
    common.add_debug_flag(parser)
    args = parser.parse_args(argv)

    results = report.find_results(args.runs)
    if not results:
        raise ValueError(f"no results.json under {', '.join(args.runs)}; finish a run first.")
    datasets = sorted({r["dataset"] for r in results})
    tables = [report.pairs_table(results, d, bins=args.bins) for d in datasets]
    tables = [t for t in tables if t["rows"]]
    if not tables:
        raise ValueError("no distilled runs found; the tables are built from teacher/student pairs.")
    markdown = "\n".join(report.to_markdown(t) for t in tables)
    print(markdown)
    if args.output:
        write_text(args.output + ".md", markdown)
        write_text(args.output + ".csv", "".join(report.to_csv(t) for t in tables))
        print(f"Wrote {args.output}.md and {args.output}.csv")
    if args.diagrams:
        from keras_calikd.metrics import plot_reliability_grid

        plot_reliability_grid(report.reliability_panels(results), args.diagrams)
        print(f"Wrote {args.diagrams}")
    return 0


def console() -> int:
    return common.run(main)


if __name__ == "__main__":
    sys.exit(console())
