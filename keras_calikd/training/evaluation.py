"""Evaluation of a classifier's accuracy and calibration, and post-hoc temperature, vector and matrix scaling."""

from __future__ import annotations

import functools
import os
import re
import warnings
import zipfile
from typing import Mapping, Optional, Sequence

import numpy as np
from keras import ops

from keras_calikd.checks import shortened
from keras_calikd.contract import split_inputs
from keras_calikd.metrics import ExpectedCalibrationError, OverconfidenceError
from keras_calikd.quiet import import_tensorflow
from keras_calikd.training.posthoc import (LABELS, CalibrationWarning, fit_calibration, nll, search_temperature,
                                           temperature_bound_warning)


class ModelFileError(ValueError):
    """A model file or folder cannot be read as a model."""


def load_model(path: str):
    """A model from a `.keras` file or an exported SavedModel folder, as a callable on raw images.

    Raises:
        ModelFileError: the path is missing, truncated or not a model, with what to do.
    """
    import keras

    import keras_calikd  # noqa: F401  (registers the library's serializable classes)
    from keras_calikd.quiet import find_devices

    find_devices()

    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "saved_model.pb")):
            raise ModelFileError(f"{path!r} is a folder but not a SavedModel (no saved_model.pb); give a .keras file "
                                 "or a folder written by calikd-export.")
        tf = import_tensorflow()
        serve = tf.saved_model.load(path).signatures["serving_default"]
        return lambda images, training=False: serve(images=tf.cast(images, tf.uint8))["logits"]
    if not os.path.isfile(path):
        raise ModelFileError(f"The model {path!r} does not exist (a .keras file or a SavedModel folder).")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path!r} is not a .keras model file (a .keras file is a zip archive; this one is "
                             "truncated or of another kind). Use the run's checkpoints/best.keras or retrain.")
    if _is_training_state(path):
        raise ModelFileError(f"{path!r} is a run's training state (what a run resumes from), not a model; give the "
                             f"run's best model, {os.path.join(os.path.dirname(path), 'best.keras')!r}.")
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as error:  # Keras reports a damaged archive in many ways
        missing = _missing_class(error)
        if missing:
            raise ModelFileError(f"{path!r} uses the class {missing}, which this process does not know: import "
                                 "the module that defines it before loading (the tools: --import MODULE), where "
                                 "it is registered with @keras.saving.register_keras_serializable() (a strategy: "
                                 "with its registry's register decorator).") from None
        raise ModelFileError(f"{path!r} cannot be loaded as a Keras model ({type(error).__name__}: "
                             f"{shortened(str(error))}). It may be damaged: use another checkpoint, or "
                             "retrain.") from None


def _missing_class(error: BaseException) -> Optional[str]:
    """The class a failed `keras.models.load_model` could not find (`'Name'`, with its registered name), or `None`.

    Keras names it inside its own message, also where the class sits deep in the saved configuration (a
    Distiller's strategy, a student's layer): "Could not locate class 'Name' ... 'registered_name': 'pkg>Name'".
    """
    text = str(error)
    found = re.search(r"Could not locate (?:class|function) '([^']+)'", text)
    if not found:
        return None
    name = found.group(1)
    registered = re.search(r"'registered_name': '([^']*>" + re.escape(name) + ")'", text[found.end():])
    return f"{name!r} (registered as {registered.group(1)!r})" if registered else repr(name)


def _is_training_state(path: str) -> bool:
    """Whether the zip archive `path` is a training state (`checkpoint.save_state`'s NumPy arrays, no model)."""
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
    return "metadata.npy" in names and "config.json" not in names


def collect_logits(model, dataset, num_classes: Optional[int] = None):
    """Runs `model` over a `(inputs, labels)` dataset; returns float64 logits and int labels as NumPy arrays.

    Raises:
        ValueError: the model predicts another number of classes than `num_classes` (the data set's).
    """
    logits, labels = [], []
    for x, y in dataset.as_numpy_iterator():
        x, _ = split_inputs(x)
        batch = np.asarray(ops.convert_to_numpy(model(x, training=False)), np.float64)
        if num_classes is not None and batch.shape[-1] != num_classes:
            raise ValueError(f"The model predicts {batch.shape[-1]} classes but the data set has {num_classes}; "
                             "evaluate it on the data set it was trained for.")
        logits.append(batch)
        labels.append(np.asarray(y).reshape(-1))
    if not logits:
        raise ValueError("The evaluated split holds no example.")
    return np.concatenate(logits), np.concatenate(labels).astype(np.int64)


def _softmax(logits):
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


_nll = nll


def calibration_report(logits, labels, bins=(100, 15)) -> dict:
    """Accuracy, NLL, Brier score and the calibration errors at each number of `bins` of `logits` against `labels`.

    The Brier score sums the squared error over classes and averages over
    samples. The calibration errors come from the library's streaming
    metrics, so they are the same numbers training logs: ECE and OE
    (equal-width bins of the top-class confidence), MCE (the largest bin gap
    of those bins), adaptive ECE (equal-mass bins, `AdaptiveCalibrationError`)
    and classwise ECE (equal-width bins of every class's probability, averaged
    over classes, `ClasswiseCalibrationError`).

    Returns:
        A dict: `accuracy`, `ece_<B>`, `oe_<B>`, `mce_<B>`, `adaptive_ece_<B>`,
        `classwise_ece_<B>` for each B in `bins`, `nll`, `brier`, `num_examples`.
    """
    from keras_calikd.metrics import AdaptiveCalibrationError, ClasswiseCalibrationError, MaximumCalibrationError

    logits = np.asarray(logits, np.float64)
    labels = np.asarray(labels).reshape(-1)
    probs = _softmax(logits)
    report = {
        "num_examples": int(len(labels)),
        "accuracy": float((probs.argmax(axis=1) == labels).mean()),
        "nll": _nll(logits, labels),
        "brier": float(((probs - np.eye(logits.shape[1])[labels]) ** 2).sum(axis=1).mean()),
    }
    metrics = {
        "ece": lambda b: ExpectedCalibrationError(num_bins=b, from_logits=True),
        "oe": lambda b: OverconfidenceError(num_bins=b, from_logits=True),
        "mce": lambda b: MaximumCalibrationError(num_bins=b, from_logits=True),
        "adaptive_ece": lambda b: AdaptiveCalibrationError(num_bins=b, capacity=max(len(labels), 1),
                                                           from_logits=True),
        "classwise_ece": lambda b: ClasswiseCalibrationError(num_classes=logits.shape[1], num_bins=b,
                                                             from_logits=True),
    }
    for num_bins in bins:
        for name, make in metrics.items():
            m = make(num_bins)
            m.update_state(labels.astype("int32"), logits.astype("float32"))
            report[f"{name}_{num_bins}"] = float(m.result())
    return report


def bootstrap_report(logits, labels, bins=(100, 15)) -> dict:
    """95% intervals of accuracy, NLL and ECE and OE at each of `bins`, from a bootstrap over the images.

    `keras_calikd.metrics.bootstrap_intervals` on the logits: basic bootstrap intervals, `DEFAULT_RESAMPLES`
    (2000) resamples drawn with seed 0, so the same logits always give the same intervals (docs/uncertainty.md).

    Returns:
        `BootstrapResult.to_dict()`: `{"method": "basic bootstrap", "level": 0.95, "resamples": 2000, "seed": 0,
        "num_examples", "estimates": {"accuracy": {"value", "low", "high", "bias"}, "nll", "ece_<B>", "oe_<B>"}}`.
    """
    from keras_calikd.metrics.uncertainty import bootstrap_intervals

    return bootstrap_intervals(logits, labels, bins=tuple(bins), from_logits=True).to_dict()


def bin_statistics(logits, labels, num_bins: int = 15) -> dict:
    """Per-bin statistics for a reliability diagram (see `CalibrationMetric.bin_statistics`)."""
    metric = ExpectedCalibrationError(num_bins=num_bins, from_logits=True)
    metric.update_state(np.asarray(labels).astype("int32"), np.asarray(logits, np.float32))
    return metric.bin_statistics()


def fit_temperature(logits, labels, low: float = 0.05, high: float = 20.0, iterations: int = 100) -> float:
    """The temperature `T` that minimises the NLL of `logits / T` (post-hoc temperature scaling).

    The NLL of scaled logits is unimodal in `log T`, so a golden-section
    search on `[log low, log high]` finds the minimum to float precision. A
    temperature on a bound of the search is no minimum: a `CalibrationWarning`
    says so (`keras_calikd.training.posthoc.fit_calibration` returns it).

    Reference:
        Guo et al., "On Calibration of Modern Neural Networks", ICML 2017
        (the baseline the paper's Sec. 1 cites).
    """
    temperature = search_temperature(logits, labels, low, high, iterations)
    bound = temperature_bound_warning(temperature, low, high)
    if bound:
        warnings.warn(bound, CalibrationWarning, stacklevel=2)
    return temperature


def halves(num_examples: int, seed: int = 0):
    """A deterministic random split of `range(num_examples)` into two halves (fit / report)."""
    order = np.random.default_rng(seed).permutation(num_examples)
    middle = num_examples // 2
    return np.sort(order[:middle]), np.sort(order[middle:])


def temperature_scaling(fit_logits, fit_labels, logits, labels, bins=(100, 15), intervals: bool = False) -> dict:
    """Fits a temperature on `(fit_logits, fit_labels)` and reports `logits / T` against `labels`.

    `intervals=True` adds each report's bootstrap intervals (`bootstrap_report`) under `"intervals"`.

    Returns:
        `{"temperature": T, "uncalibrated": report, "temperature_scaled": report, "warnings": [...]}`,
        both reports on the same `(logits, labels)`; the warnings as `posthoc_calibration`'s.
    """
    result = posthoc_calibration(fit_logits, fit_labels, logits, labels, "temperature", bins, intervals=intervals)
    return {"temperature": result["parameters"]["temperature"], "uncalibrated": result["uncalibrated"],
            "temperature_scaled": result["calibrated"], "warnings": result["warnings"]}


def posthoc_calibration(fit_logits, fit_labels, logits, labels, method: str, bins=(100, 15),
                        intervals: bool = False, **options) -> dict:
    """Fits a post-hoc map (`posthoc.METHODS`) on `(fit_logits, fit_labels)` and reports it on `(logits, labels)`.

    Args:
        intervals: Also give each report's bootstrap intervals over the reported images (`bootstrap_report`),
            under `"intervals"`.
        options: For `fit_calibration` (e.g. `off_diagonal_penalty`).

    Returns:
        `{"method", "parameters", "nll_before", "nll_after", "uncalibrated", "calibrated", "warnings"}`: the
        fit's summary (its NLLs on the fitting data) and both reports on the same `(logits, labels)`. The
        warnings are the fit's (a temperature on its search bound, a fit that did not converge or does not
        lower the fitting data's NLL) and one when the map does not lower the NLL of the reported images.
    """
    fit = fit_calibration(fit_logits, fit_labels, method, **options)
    result = fit.summary()
    result.update(uncalibrated=calibration_report(logits, labels, bins),
                  calibrated=calibration_report(fit.apply(logits), labels, bins))
    if intervals:
        result["uncalibrated"]["intervals"] = bootstrap_report(logits, labels, bins)
        result["calibrated"]["intervals"] = bootstrap_report(fit.apply(logits), labels, bins)
    if not result["calibrated"]["nll"] < result["uncalibrated"]["nll"]:
        result["warnings"].append(
            f"{method} scaling did not lower the NLL of the reported images ({result['uncalibrated']['nll']:.4f} "
            f"before, {result['calibrated']['nll']:.4f} after): the map does not carry over from the data it was "
            "fitted on (fit it on more held-out data, or use a map with fewer parameters).")
    return result


def average_reports(reports) -> dict:
    """The mean of each numeric entry over several reports (e.g. the five CIFAR-100-C severities)."""
    keys = [k for k in reports[0] if isinstance(reports[0][k], float)]
    averaged = {k: float(np.mean([r[k] for r in reports])) for k in keys}
    averaged["num_examples"] = int(sum(r["num_examples"] for r in reports))
    return averaged


def _held_out(logits_of, split: str, dataset_splits, calibration_split, logits, labels, compare) -> dict:
    """`compare(fit_logits, fit_labels, logits, labels)` with both rows on the same images, saying where each is.

    The map is fitted on `calibration_split` (default: the data set's
    `validation` split when it has one and it is not the evaluated split), and
    both rows report the whole evaluated split; without such a split it is
    fitted on one random half of the evaluated split and both rows report the
    other half.
    """
    if calibration_split is None and "validation" in dataset_splits and split != "validation":
        calibration_split = "validation"
    if calibration_split is not None:
        fit_logits, fit_labels = logits_of(calibration_split)
        result = compare(fit_logits, fit_labels, logits, labels)
        result.update(fitted_on=calibration_split, reported_on=f"all of {split}")
        return result
    fit, held_out = halves(len(labels))
    result = compare(logits[fit], labels[fit], logits[held_out], labels[held_out])
    result.update(fitted_on=f"half of {split}", reported_on=f"the other half of {split} ({len(held_out)} images)")
    return result


def _temperature_scaling(logits_of, split: str, dataset_splits, calibration_split, logits, labels, bins) -> dict:
    """Post-hoc temperature scaling with both rows on the same images (see `_held_out`)."""
    return _held_out(logits_of, split, dataset_splits, calibration_split, logits, labels,
                     lambda *data: temperature_scaling(*data, bins, intervals=True))


def _check_splits(data, dataset: str, split: str, calibration_split, data_dir, dataset_splits, posthoc) -> None:
    """The evaluated and calibration splits hold what the evaluation needs, checked before any model is loaded."""
    sizes = {}
    for option, value in (("split", split), ("calibration_split", calibration_split)):
        if value is None:
            continue
        try:
            sizes[option] = data.read(dataset, value, data_dir=data_dir).num_examples
        except data.SliceOutOfRangeError as error:
            raise ValueError(f"`{option}` {value!r} (calikd-evaluate --{option}) asks for more images than the "
                             f"{error.base} split of {dataset} holds ({error.num_examples}); {error.within}.") from None
    halves = calibration_split is None and ("validation" not in dataset_splits or split == "validation")
    if posthoc and halves and sizes["split"] < 2:
        raise ValueError(
            f"post-hoc calibration without a calibration split fits on one half of the evaluated split and reports "
            f"the other half, but {split!r} holds {sizes['split']} image: that needs at least 2 images (better: "
            "thousands). Give held-out images to fit on with --calibration_split (e.g. 'train[50000:]'), or "
            "evaluate a larger --split.")


def evaluate_models(models: Mapping[str, object], dataset: str, split: str = "test", *, data_dir=None,
                    bins: Sequence[int] = (100, 15), batch_size: int = 500, temperature_scaling: bool = False,
                    calibration_split: Optional[str] = None,
                    groups: Optional[Mapping[str, Sequence[str]]] = None, calibration: Sequence[str] = ()) -> dict:
    """Accuracy, ECE/OE, NLL and Brier of several models on one data set; returns the results (nothing printed).

    Args:
        models: Label -> model (a path for `load_model`, or a callable on raw images returning logits).
        dataset: A data set name of `keras_calikd.data`.
        split: The evaluated split.
        data_dir: TFDS data folder.
        bins: Bin counts of ECE and OE.
        batch_size: Evaluation batch size.
        temperature_scaling: Also report post-hoc temperature scaling (see `_held_out`).
        calibration_split: Where the temperature (and the maps of `calibration`) are fitted.
        groups: For data sets with configs: group name -> configs whose reports are averaged (e.g. a
            CIFAR-100-C corruption -> its five severities). Without it the data set is evaluated as a whole.
        calibration: Post-hoc maps to report beside the model (`posthoc.METHODS`): `"temperature"` is
            `temperature_scaling=True`; `"vector"` and `"matrix"` are reported under `calibration`
            (see `posthoc_calibration`), fitted like the temperature.

    Returns:
        `{"dataset", "split", "bins", "models": {label: entry}}`; an entry holds `report` (and
        `temperature_scaling`, `calibration`: method -> result), or `groups` (group -> averaged report). Every
        report but the averaged ones holds its 95% bootstrap intervals over the reported images (`intervals`:
        `bootstrap_report`).

    Example:

    ```python
    results = evaluate_models({"KD": "runs/cifar100/kd/checkpoints/best.keras"}, "cifar100",
                              temperature_scaling=True)
    results["models"]["KD"]["temperature_scaling"]["temperature_scaled"]["ece_100"]
    ```
    """
    import keras_calikd.data as data

    info = data.info(dataset, data_dir)
    unknown = sorted(set(calibration) - set(LABELS))
    if unknown:
        raise ValueError(f"Unknown post-hoc calibration {unknown}; known: {', '.join(LABELS)}.")
    temperature_scaling = temperature_scaling or "temperature" in calibration
    maps = [method for method in calibration if method != "temperature"]
    if not groups:
        _check_splits(data, dataset, split, calibration_split, data_dir, info.splits, temperature_scaling or maps)
    output = {"dataset": dataset, "split": split, "bins": list(bins), "models": {}}
    for label, model in models.items():
        model = load_model(model) if isinstance(model, str) else model

        @functools.lru_cache(maxsize=None)  # the calibration split once, whatever the number of maps fitted on it
        def logits_of(which_split, config=None, model=model):
            pipeline = data.load(dataset, which_split, batch_size, training=False, data_dir=data_dir, config=config)
            return collect_logits(model, pipeline, info.num_classes)

        if groups:
            output["models"][label] = {"groups": {
                group: average_reports([calibration_report(*logits_of(split, config), bins) for config in configs])
                for group, configs in groups.items()}}
            continue
        logits, labels = logits_of(split)
        entry = {"report": calibration_report(logits, labels, bins), "logits": logits, "labels": labels}
        entry["report"]["intervals"] = bootstrap_report(logits, labels, bins)
        if temperature_scaling:
            entry["temperature_scaling"] = _temperature_scaling(logits_of, split, info.splits, calibration_split,
                                                                logits, labels, bins)
        if maps:
            entry["calibration"] = {method: _held_out(
                logits_of, split, info.splits, calibration_split, logits, labels,
                lambda *held_out, method=method: posthoc_calibration(*held_out, method, bins, intervals=True))
                for method in maps}
        output["models"][label] = entry
    return output
