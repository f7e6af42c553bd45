"""The logic of `tools/evaluate.py`: which data each model is evaluated on, and the printed tables."""

from __future__ import annotations

from keras_calikd.metrics import plot_reliability_diagram
from keras_calikd.training.evaluation import (average_reports, bin_statistics, calibration_report,
                                              collect_logits, halves, temperature_scaling)
from keras_calikd.training.files import write_json


def _labelled(specs):
    models = []
    for spec in specs:
        label, _, path = spec.rpartition("=")
        models.append((label or path, path))
    return models


def _row(label, report, bins):
    cells = [f"{100 * report['accuracy']:6.2f}"]
    cells += [f"{report[f'{m}_{b}']:.4f}" for b in bins for m in ("ece", "oe")]
    cells += [f"{report['nll']:.4f}", f"{report['brier']:.4f}"]
    return f"| {label} | " + " | ".join(cells) + " |"


def _header(first, bins):
    columns = ["Acc"] + [f"{m}@{b}" for b in bins for m in ("ECE", "OE")] + ["NLL", "Brier"]
    return [f"| {first} | " + " | ".join(columns) + " |", "|" + "---|" * (len(columns) + 1)]


def run(args, load_model) -> int:
    """Evaluates `args.model` models as `tools/evaluate.py` describes; prints Markdown tables."""
    import keras_calikd.data as data

    bins = tuple(int(b) for b in args.bins.split(","))
    models = _labelled(args.model)
    output = {"dataset": args.dataset, "split": args.split, "bins": list(bins), "models": {}}

    def logits_of(model, split, **config):
        dataset = data.load(args.dataset, split, args.batch_size, training=False, data_dir=args.data_dir, **config)
        return collect_logits(model, dataset)

    if args.corruptions:
        from keras_calikd.data import CORRUPTIONS, SEVERITIES

        corruptions = list(CORRUPTIONS) if args.corruptions == "all" else args.corruptions.split(",")
        unknown = sorted(set(corruptions) - set(CORRUPTIONS))
        if unknown:
            raise SystemExit(f"error: unknown corruptions {unknown}; known: {', '.join(CORRUPTIONS)}.")
        lines = ["| Model | " + " | ".join(f"{c} Acc | {c} ECE@{bins[0]} | {c} OE@{bins[0]}" for c in corruptions)
                 + " |", "|" + "---|" * (3 * len(corruptions) + 1)]
        for label, path in models:
            model = load_model(path)
            per_corruption = {}
            for corruption in corruptions:
                reports = [calibration_report(*logits_of(model, args.split, corruption=corruption, severity=s), bins)
                           for s in SEVERITIES]
                per_corruption[corruption] = average_reports(reports)
            output["models"][label] = per_corruption
            lines.append(f"| {label} | " + " | ".join(
                f"{100 * r['accuracy']:.2f} | {r[f'ece_{bins[0]}']:.3f} | {r[f'oe_{bins[0]}']:.3f}"
                for r in per_corruption.values()) + " |")
        print(f"CIFAR-100-C, each corruption averaged over severities {list(SEVERITIES)}:\n")
        print("\n".join(lines))
    else:
        lines = _header("Model", bins)
        for index, (label, path) in enumerate(models):
            model = load_model(path)
            logits, labels = logits_of(model, args.split)
            report = calibration_report(logits, labels, bins)
            entry = {"report": report}
            lines.append(_row(label, report, bins))
            if args.temperature_scaling:
                entry["temperature_scaling"] = scaled = _temperature_scaling(args, data, logits_of, model, logits,
                                                                              labels, bins)
                lines.append(_row(f"{label} + TS (T={scaled['temperature']:.3f}, {scaled['reported_on']})",
                                  scaled["temperature_scaled"], bins))
            if args.diagram and index == 0:
                plot_reliability_diagram(bin_statistics(logits, labels, 15), args.diagram, title=label)
            output["models"][label] = entry
        print("\n".join(lines))
        if args.temperature_scaling:
            print("\nTS: post-hoc temperature scaling; when it is fitted on half of the evaluated split, both rows "
                  "of that model in the JSON report the other half.")
    if args.output:
        write_json(args.output, output)
    return 0


def _temperature_scaling(args, data, logits_of, model, logits, labels, bins):
    split = args.calibration_split
    if split is None and "validation" in data.info(args.dataset, args.data_dir).splits \
            and args.split != "validation":
        split = "validation"
    if split is not None:
        fit_logits, fit_labels = logits_of(model, split)
        result = temperature_scaling(fit_logits, fit_labels, logits, labels, bins)
        result["fitted_on"], result["reported_on"] = split, args.split
        return result
    fit, held_out = halves(len(labels))
    result = temperature_scaling(logits[fit], labels[fit], logits[held_out], labels[held_out], bins)
    result["fitted_on"] = f"half of {args.split}"
    result["reported_on"] = f"other half of {args.split}"
    return result


__all__ = ["run"]
