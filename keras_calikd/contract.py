"""What the Distiller, its strategies and the input pipelines agree on, in one place.

- Requirements: what a distillation strategy may ask the Distiller for besides
  the logits it always gets (`Distillation.requires`).
- Input keys: inputs that carry each sample's dataset index are given as
  `{"image": images, "index": indices}`; `split_inputs` reads either form.

This module imports nothing: every layer of the package may use it.
"""

from __future__ import annotations

#: Penultimate (pooled) features of teacher and student, from the same forward pass as the logits.
FEATURES = "features"
#: Each sample's index in the training set (the input pipeline's `with_index=True`).
INDICES = "indices"
#: The training set's labels by index, handed once to `adapt` before training.
TRAINING_SET = "training_set"
#: The clean batch's ground-truth labels and the epoch (`Batch`): this library's Distiller always gives them; a
#: strategy that reads them says so, for trainers that do not (`keras.distillation.Distiller`, see
#: `distillations.keras_interop`).
LABELS = "labels"
KNOWN_REQUIREMENTS = frozenset({FEATURES, INDICES, TRAINING_SET, LABELS})

#: The keys of dict inputs: the images, and their dataset indices.
IMAGE_KEY = "image"
INDEX_KEY = "index"


def split_inputs(x):
    """`(images, indices)` of inputs given as images or as `{"image": images, "index": indices}`.

    Args:
        x: Images (an array, tensor or spec), or a dict holding them under `"image"` and, optionally, the
            samples' dataset indices under `"index"`.

    Returns:
        `(images, indices)`, `indices` being `None` when the inputs hold none.

    Raises:
        ValueError: a dict without `"image"`.

    Example:

    ```python
    images, indices = split_inputs({"image": x, "index": np.arange(len(x))})
    images, indices = split_inputs(x)        # indices is None
    ```
    """
    if isinstance(x, dict):
        if IMAGE_KEY not in x:
            raise ValueError(f"Dict inputs must hold the images under {IMAGE_KEY!r}; got keys {sorted(x)}.")
        return x[IMAGE_KEY], x.get(INDEX_KEY)
    return x, None


def join_inputs(images, indices=None):
    """The inputs `split_inputs` reads back: `images` alone, or `{"image": images, "index": indices}`."""
    return images if indices is None else {IMAGE_KEY: images, INDEX_KEY: indices}


__all__ = ["FEATURES", "IMAGE_KEY", "INDEX_KEY", "INDICES", "KNOWN_REQUIREMENTS", "LABELS", "TRAINING_SET", "join_inputs",
           "split_inputs"]
