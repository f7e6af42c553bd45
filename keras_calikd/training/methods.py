"""A distilled run's method as its strategies describe it: stored in results.json, read back by the reports.

The strategies say how reports show them (`label`, `table_position` and
`color` of a distillation; `label`, `table_position` and `marker` of an
augmentation), so a new strategy takes its place in every table and figure
without an edit here. A run's `results.json` stores its method as data:

- `method`: the label, e.g. `"KD + mixup"` (`method_label`);
- `distillation`: the registered names of its distillation strategies, e.g. `["kd"]`;
- `augmentation`: the registered name of its augmentation strategy, e.g. `"mixup"`;

and, where they apply, `teacher_temperature` (distilled from a calibrated
teacher) and `post_hoc` (`"temperature_scaling"`: the run's scores after
post-hoc temperature scaling, a column of its own in the reports).

`method_of(result)` reads a result back as a `Method`. Results written before
the names were stored hold only the label; their method is found by matching
the label's parts to the registered strategies' labels, and a label that
matches none is kept as it is (an unknown method: the reports put it last).
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

from keras_calikd.augmentations import AUGMENTATIONS
from keras_calikd.distillations import DISTILLATIONS

CALIBRATED_TEACHER = " (calibrated teacher)"
#: The label suffix and `post_hoc` value of a run's scores after post-hoc temperature scaling.
TEMPERATURE_SCALED = (" + TS", "temperature_scaling")
SEPARATOR = " + "


class Method(NamedTuple):
    """What a distilled run trained with, as the reports order and draw it.

    Attributes:
        label: How tables and figures name it, e.g. `"KD + mixup"`.
        distillations: Registered names of its distillation strategies (empty when unknown).
        augmentation: Registered name of its augmentation strategy (`None` when unknown).
        calibrated_teacher: Distilled from a teacher calibrated by temperature scaling.
        post_hoc: `"temperature_scaling"` for the run's scores after post-hoc scaling, else `None`.
    """

    label: str
    distillations: Tuple[str, ...] = ()
    augmentation: Optional[str] = None
    calibrated_teacher: bool = False
    post_hoc: Optional[str] = None

    @property
    def known(self) -> bool:
        """Whether every strategy of the method is registered in this process."""
        return bool(self.distillations) and all(n in DISTILLATIONS for n in self.distillations) and \
            self.augmentation in AUGMENTATIONS


def label_of(strategy) -> str:
    """How reports name a strategy (an instance or a class): its `label`, else its class name."""
    cls = strategy if isinstance(strategy, type) else type(strategy)
    return cls.label or cls.__name__


def named_in_method(augmentation) -> bool:
    """Whether a method's label names the augmentation: every one but those that leave images alone unnamed."""
    cls = augmentation if isinstance(augmentation, type) else type(augmentation)
    return cls.transforms_images or bool(cls.label)


def method_label(distiller) -> str:
    """A short label of a distilled run's method, e.g. `"KD + mixup"`, `"CRD"` (the report's column)."""
    parts = [label_of(d) for d in distiller.distillations if d.weight > 0]
    if named_in_method(distiller.augmentation):
        parts.append(label_of(distiller.augmentation))
    return SEPARATOR.join(parts)


def describe(distiller, calibrated_teacher: bool = False) -> dict:
    """The method's fields of a distilled run's `results.json`: `method`, `distillation`, `augmentation`, `alpha`.

    Example:

    ```python
    describe(ck.Distiller(teacher, student, "kd", "mixup"))
    # {"method": "KD + mixup", "distillation": ["kd"], "augmentation": "mixup", "alpha": 0.5}
    ```
    """
    label = method_label(distiller)
    return {"method": label + CALIBRATED_TEACHER if calibrated_teacher else label,
            "distillation": [DISTILLATIONS.name_of(d) for d in distiller.distillations if d.weight > 0],
            "augmentation": AUGMENTATIONS.name_of(distiller.augmentation), "alpha": distiller.alpha}


def method_of(result: dict) -> Method:
    """The `Method` of a distilled run's `results.json` dict (see the module's docstring)."""
    label = result.get("method") or "distilled"
    calibrated = "teacher_temperature" in result
    post_hoc = result.get("post_hoc")
    if "distillation" in result:
        return Method(label, tuple(n for n in result["distillation"] if n), result.get("augmentation"), calibrated,
                      post_hoc)
    return _method_from_label(label, calibrated, post_hoc)


def _method_from_label(label: str, calibrated: bool, post_hoc: Optional[str]) -> Method:
    """The method of a result that stores only its label, by the registered strategies' labels."""
    text = label[:-len(CALIBRATED_TEACHER)] if calibrated and label.endswith(CALIBRATED_TEACHER) else label
    parts = text.split(SEPARATOR)
    distillations = {label_of(cls): name for name, cls in DISTILLATIONS.items()}
    augmentations = {label_of(cls): name for name, cls in AUGMENTATIONS.items() if named_in_method(cls)}
    unnamed = [name for name, cls in AUGMENTATIONS.items() if not named_in_method(cls)]
    if parts[-1] in augmentations and len(parts) > 1:
        augmentation, parts = augmentations[parts[-1]], parts[:-1]
    else:
        augmentation = unnamed[0] if len(unnamed) == 1 else None
    names = tuple(distillations.get(part) for part in parts)
    if None in names or augmentation is None:
        return Method(label, calibrated_teacher=calibrated, post_hoc=post_hoc)
    return Method(label, names, augmentation, calibrated, post_hoc)


def _place(registry, name) -> tuple:
    """Where a strategy sorts among its kind: by its `table_position`, those without one after, by name."""
    position = getattr(registry.get(name), "table_position", None) if name in registry else None
    return (0, position) if position is not None else (1, str(name))


def table_key(method: Method) -> tuple:
    """The sort key of a method's column: the paper's layout, from what the strategies declare.

    First the distillations on their own (an augmentation the label does not
    name), then each distillation with each augmentation; within each, by the
    strategies' `table_position`: KD, RKD, CRD, ..., then KD + cutout, KD +
    mixup, KD + CutMix, ... A run's temperature-scaled scores and a run
    distilled from a calibrated teacher follow the run; unknown methods come
    last, by label.
    """
    if not method.known:
        return (2, (), (), False, method.calibrated_teacher, method.label)
    alone = not named_in_method(AUGMENTATIONS.get(method.augmentation))
    return (0 if alone else 1, tuple(_place(DISTILLATIONS, n) for n in method.distillations),
            _place(AUGMENTATIONS, method.augmentation), method.post_hoc is not None, method.calibrated_teacher,
            method.label)


def style(method: Method) -> Tuple[Optional[str], Optional[str]]:
    """`(colour, marker)` of a method in figures: its first distillation's `color`, its augmentation's `marker`."""
    color = marker = None
    if method.distillations and method.distillations[0] in DISTILLATIONS:
        color = DISTILLATIONS.get(method.distillations[0]).color
    if method.augmentation in AUGMENTATIONS:
        marker = AUGMENTATIONS.get(method.augmentation).marker
    return color, marker


def temperature_scaled(result: dict) -> dict:
    """A distilled run's result with its post-hoc temperature-scaled scores in place of its own.

    Its label gains `" + TS"` and its `post_hoc` says `"temperature_scaling"`;
    its strategies stay the run's.
    """
    method = method_of(result)
    derived = {k: v for k, v in result.items() if k != "temperature_scaled" and not k.startswith("reliability_")}
    suffix, post_hoc = TEMPERATURE_SCALED
    derived.update(result["temperature_scaled"], method=method.label + suffix, name=f"{result.get('name')}{suffix}",
                   distillation=list(method.distillations), augmentation=method.augmentation, post_hoc=post_hoc)
    return derived


__all__ = ["Method", "describe", "label_of", "method_label", "method_of", "named_in_method", "style", "table_key",
           "temperature_scaled"]
