"""calikd-evaluate: accuracy, ECE/OE, NLL, Brier, reliability diagrams, temperature scaling, CIFAR-100-C.

    # one model on a test split, with a temperature-scaling baseline and a reliability diagram
    calikd-evaluate --model runs/cifar100/kd_x/checkpoints/best.keras --dataset cifar100 \\
        --temperature_scaling --diagram kd.png

    # temperature, vector and matrix (Dirichlet) scaling fitted on held-out data, each beside the model
    calikd-evaluate --model runs/cifar100/kd_x/checkpoints/best.keras --dataset cifar100 \\
        --calibration temperature,vector,matrix --calibration_split "train[45000:]"

    # Table 6: several models on CIFAR-100-C, each corruption averaged over severities 1-5
    calikd-evaluate --dataset cifar100_corrupted --corruptions frost,snow,gaussian_blur,motion_blur \\
        --model Teacher=runs/cifar100/teacher_resnet32x4/checkpoints/best.keras \\
        --model KD=runs/cifar100/resnet32x4_shufflev1_kd/checkpoints/best.keras

Every row's accuracy, ECE, OE and NLL also get a 95% basic bootstrap interval over the evaluated images (2000
resamples, seed 0; a second table, and `intervals` in --output's JSON); CIFAR-100-C's severity averages do not.
A model is a `.keras` file or a SavedModel folder written by calikd-export; both take raw images. A post-hoc
fit that should not be trusted (a temperature on its search bound, a fit that did not converge, a map that does
not lower the held-out NLL) prints a `warning:` line and is saved with the results.
"""

from __future__ import annotations

import argparse
import os
import sys

from keras_calikd.cli import common


def parser() -> argparse.ArgumentParser:
    result = common.tool_parser("calikd-evaluate", __doc__)
    result.add_argument("--model", action="append", required=True, metavar="[LABEL=]PATH",
                        help="model to evaluate (repeatable); LABEL names its row")
    result.add_argument("--dataset", required=True, help="data set name (cifar100, cifar100_corrupted, ...)")
    result.add_argument("--split", default="test", help="evaluated split (default: test)")
    result.add_argument("--data_dir", help="TFDS data folder")
    result.add_argument("--bins", default="100,15", help="ECE/OE bin counts, comma-separated (default: 100,15)")
    result.add_argument("--corruptions", help="CIFAR-100-C: comma-separated corruptions, or 'all'")
    result.add_argument("--temperature_scaling", action="store_true",
                        help="also report post-hoc temperature scaling, both rows on the same images")
    result.add_argument("--calibration",
                        help="post-hoc maps to report beside each model, comma-separated: temperature (= "
                             "--temperature_scaling), vector, matrix (Dirichlet scaling with off-diagonal "
                             "regularisation); fitted like the temperature")
    result.add_argument("--calibration_split",
                        help="split to fit the temperature (and --calibration's maps) on (default: 'validation' "
                             "when the data set has one, else half of the evaluated split, both rows then "
                             "reporting the other half)")
    result.add_argument("--diagram", help="reliability diagram of the first model: this .png, .pdf or .svg and "
                                          "the other two formats beside it")
    result.add_argument("--output", help="write the results as JSON (a new file, or --overwrite)")
    result.add_argument("--overwrite", action="store_true",
                        help="replace the --output and --diagram files this tool wrote earlier (unchanged since)")
    result.add_argument("--batch_size", type=int, default=500)
    common.add_debug_flag(result)
    return result


def _bins(text: str):
    from keras_calikd.metrics.calibration import MAX_BINS

    wanted = f"--bins must be comma-separated bin counts from 1 to {MAX_BINS} (the paper reports 100 and 15)"
    try:
        bins = tuple(int(b) for b in text.split(","))
    except ValueError:
        raise ValueError(f"{wanted}, got {text!r}.") from None
    if not bins or min(bins) < 1 or max(bins) > MAX_BINS:
        raise ValueError(f"{wanted}, got {text!r}.")
    return bins


def _groups(dataset: str, corruptions: str | None):
    """CIFAR-100-C: corruption -> its five severity configs; None for other evaluations."""
    if not corruptions:
        return None
    from keras_calikd.data.cifar100_corrupted import CORRUPTIONS, SEVERITIES, config_name

    if not dataset.startswith("cifar100_corrupted"):
        raise ValueError("--corruptions applies to --dataset cifar100_corrupted only.")
    names = list(CORRUPTIONS) if corruptions == "all" else corruptions.split(",")
    unknown = sorted(set(names) - set(CORRUPTIONS))
    if unknown:
        raise ValueError(f"unknown corruptions {unknown}; known: {', '.join(CORRUPTIONS)}.")
    return {name: [config_name(name, severity) for severity in SEVERITIES] for name in names}


def _models(specs) -> dict:
    """`--model [LABEL=]PATH` values: label -> path. A path may contain `=`: the first split whose path exists."""
    models = {}
    for spec in specs:
        splits = [("", spec)] + [(spec[:i], spec[i + 1:]) for i, c in enumerate(spec) if c == "="]
        label, path = next(((label, path) for label, path in splits if os.path.exists(path)), splits[-1])
        if (label or path) in models and models[label or path] != path:
            raise ValueError(f"--model: the label {label or path!r} names two models ({models[label or path]!r} and "
                             f"{path!r}); give each its own label, e.g. --model A={models[label or path]} "
                             f"--model B={path}.")
        models[label or path] = path
    return models


def _row(label: str, report: dict, bins) -> str:
    cells = [f"{100 * report['accuracy']:6.2f}"]
    cells += [f"{report[f'{m}_{b}']:.4f}" for b in bins for m in ("ece", "oe")]
    cells += [f"{report['nll']:.4f}", f"{report['brier']:.4f}", str(report["num_examples"])]
    return f"| {label} | " + " | ".join(cells) + " |"


def _calibration_methods(text: str | None):
    """`--calibration`'s methods, checked before any model is loaded."""
    from keras_calikd.training.posthoc import METHODS

    methods = tuple(m.strip() for m in text.split(",")) if text else ()
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ValueError(f"--calibration: unknown methods {unknown}; give a comma-separated subset of "
                         f"{','.join(METHODS)}.")
    return methods


def _table(results: dict, bins) -> str:
    from keras_calikd.training.posthoc import LABELS

    columns = ["Acc"] + [f"{m}@{b}" for b in bins for m in ("ECE", "OE")] + ["NLL", "Brier", "images"]
    rows, notes, warnings = [], [], []  # (label, report)
    for label, entry in results["models"].items():
        rows.append((label, entry["report"]))
        scaled = entry.get("temperature_scaling")
        if scaled:
            rows.append((f"{label}, uncalibrated", scaled["uncalibrated"]))
            rows.append((f"{label} + TS (T={scaled['temperature']:.3f})", scaled["temperature_scaled"]))
            notes.append(f"{label}: the temperature was fitted on {scaled['fitted_on']}; its two rows "
                         f"'uncalibrated' and '+ TS' both report {scaled['reported_on']}.")
            warnings += [f"warning: {label}: {w}" for w in scaled.get("warnings", [])]
        maps = entry.get("calibration", {})
        if maps and not scaled:  # the maps' rows report the images the TS rows would
            rows.append((f"{label}, uncalibrated", next(iter(maps.values()))["uncalibrated"]))
        for method, fitted in maps.items():
            rows.append((f"{label} + {LABELS[method]}", fitted["calibrated"]))
            notes.append(f"{label}: {method} scaling was fitted on {fitted['fitted_on']}; its row '+ "
                         f"{LABELS[method]}' and 'uncalibrated' both report {fitted['reported_on']}.")
            warnings += [f"warning: {label}: {w}" for w in fitted["warnings"]]
    lines = ["| Model | " + " | ".join(columns) + " |", "|" + "---|" * (len(columns) + 1)]
    lines += [_row(label, report, bins) for label, report in rows]
    return "\n".join(lines + [""] + _intervals_table(rows, bins) + notes + warnings)


def _intervals_table(rows, bins) -> list:
    """The 95% bootstrap interval of each row's metrics (`bootstrap_report`), as Markdown lines and a caption."""
    rows = [(label, report["intervals"]) for label, report in rows if report.get("intervals")]
    if not rows:
        return []
    names = ["accuracy"] + [f"{m}_{b}" for b in bins for m in ("ece", "oe")] + ["nll"]
    columns = ["Acc"] + [f"{m}@{b}" for b in bins for m in ("ECE", "OE")] + ["NLL"]
    lines = ["| 95% interval | " + " | ".join(columns) + " |", "|" + "---|" * (len(columns) + 1)]
    for label, intervals in rows:
        cells = []
        for name in names:
            estimate, scale, digits = intervals["estimates"][name], (100 if name == "accuracy" else 1), \
                (2 if name == "accuracy" else 4)
            cells.append(f"[{scale * estimate['low']:.{digits}f}, {scale * estimate['high']:.{digits}f}]")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    first = rows[0][1]
    return lines + ["", f"{100 * first['level']:g}% intervals: {first['method']} over each row's images "
                        f"({first['resamples']} resamples drawn with seed {first['seed']}; docs/uncertainty.md). "
                        "They cover the test images' noise, not the training's: compare methods over seeds "
                        "(calikd-report).", ""]


def _corruption_table(results: dict, bins) -> str:
    groups = list(next(iter(results["models"].values()))["groups"])
    header = "| Model | " + " | ".join(f"{g} Acc | {g} ECE@{bins[0]} | {g} OE@{bins[0]}" for g in groups) + " |"
    lines = [header, "|" + "---|" * (3 * len(groups) + 1)]
    for label, entry in results["models"].items():
        lines.append(f"| {label} | " + " | ".join(
            f"{100 * r['accuracy']:.2f} | {r[f'ece_{bins[0]}']:.3f} | {r[f'oe_{bins[0]}']:.3f}"
            for r in entry["groups"].values()) + " |")
    return "Each corruption averaged over severities 1-5:\n\n" + "\n".join(lines)


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    from keras_calikd.files import Outputs, write_json
    from keras_calikd.metrics import plot_reliability_diagram
    from keras_calikd.metrics.reliability import figure_paths
    from keras_calikd.training.evaluation import bin_statistics, evaluate_models

    bins = _bins(args.bins)
    groups = _groups(args.dataset, args.corruptions)
    calibration = _calibration_methods(args.calibration)
    if args.diagram and groups:
        raise ValueError("--diagram draws one model on one split; it does not apply to --corruptions.")
    outputs = Outputs("calikd-evaluate", args.overwrite)  # every output checked before any work
    if args.output:
        outputs.claim(args.output, option="--output")
    for path in figure_paths(args.diagram) if args.diagram else []:
        outputs.claim(path, option="--diagram")
    models = _models(args.model)
    results = evaluate_models(models, args.dataset, args.split, data_dir=args.data_dir, bins=bins,
                              batch_size=args.batch_size, temperature_scaling=args.temperature_scaling,
                              calibration_split=args.calibration_split, groups=groups, calibration=calibration)
    print(_corruption_table(results, bins) if groups else _table(results, bins))
    first = next(iter(results["models"].values()))
    with outputs:
        if args.diagram:
            plot_reliability_diagram(bin_statistics(first["logits"], first["labels"], 15), args.diagram,
                                     title=next(iter(results["models"])))
        for entry in results["models"].values():
            entry.pop("logits", None), entry.pop("labels", None)
        if args.output:
            write_json(args.output, results)
    return 0


def console() -> int:
    return common.run(main)


if __name__ == "__main__":
    sys.exit(console())
