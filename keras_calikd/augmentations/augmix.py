"""AugMix through `keras.layers.AugMix`: chains of image operations mixed with the image (Hendrycks et al., 2020)."""

from __future__ import annotations

import keras

from keras_calikd import checks
from keras_calikd.augmentations.base import AUGMENTATIONS
from keras_calikd.augmentations.keras_layer import LayerAugmentation


def _static(leaf) -> bool:
    """Whether a leaf of an operation's random transformation is a Python value (shapes, sizes), not a tensor."""
    return leaf is None or isinstance(leaf, (int, float))


class ChainsDrawnPerCall(keras.layers.AugMix):
    """`keras.layers.AugMix` that draws its chains' operations at every call, from its seed generator.

    Keras 3.15's layer picks each chain's operations with Python's `random`
    while it is traced, so inside a compiled training step (a `tf.function`
    on TensorFlow, `jax.jit` on JAX: every `Distiller.fit`) the chains would
    be drawn once and repeated at every step, only the magnitudes and mixing
    weights changing. Here the operations are a tensor of indices drawn
    uniformly among the operations and "none" (Keras' distribution), applied
    with `keras.ops.switch` in a loop over the chain positions, so the step
    compiles each operation once. Each operation's random parameters are
    drawn once per call for the batch and rolled along the batch by the
    position: an image gets independent parameters at each position as long
    as the batch holds at least `num_chains * chain_depth` images. For the
    same operations and parameters the result is Keras' `transform_images`
    (tests/test_keras_layers.py compares them).
    """

    def get_random_transformation(self, data, training=True, seed=None):
        if not training:
            return None
        seed = seed or self._get_seed_generator(self.backend._backend)
        positions = self.num_chains * self.chain_depth
        return {
            "chain_mixing_weights": self._sample_from_dirichlet([self.num_chains], self.alpha, seed),
            "weight_sample": self.backend.random.beta(shape=(), alpha=self.alpha, beta=self.alpha, seed=seed),
            # index len(self._augment_layers) is "none": the position leaves the image as it is
            "operations": self.backend.random.randint((positions,), 0, len(self._augment_layers) + 1, seed=seed),
            "parameters": {name: getattr(self, name).get_random_transformation(data, seed=seed)
                           for name in self._augment_layers},
        }

    def parameters_at(self, parameters, position):
        """An operation's random parameters for `position`: the batch's draws rolled by it."""
        return keras.tree.map_structure(
            lambda leaf: leaf if _static(leaf) else self.backend.numpy.roll(leaf, position, axis=0), parameters)

    def transform_images(self, images, transformation, training=True):
        images = self.backend.cast(images, self.compute_dtype)
        if not training:
            return images
        weights = self.backend.cast(transformation["chain_mixing_weights"], self.compute_dtype)
        weight = self.backend.cast(transformation["weight_sample"], self.compute_dtype)

        def operation(name):
            def apply(position, x):
                parameters = self.parameters_at(transformation["parameters"][name], position)
                return self.backend.cast(getattr(self, name).transform_images(x, parameters), self.compute_dtype)
            return apply

        branches = [operation(name) for name in self._augment_layers] + [lambda position, x: x]

        def step(position, carry):
            chained, mixed = carry
            chained = self.backend.core.switch(transformation["operations"][position], branches, position, chained)
            chain_ends = position % self.chain_depth == self.chain_depth - 1
            chain_weight = weights[position // self.chain_depth]
            mixed = mixed + self.backend.numpy.where(chain_ends, chain_weight, 0.0) * chained
            return self.backend.numpy.where(chain_ends, images, chained), mixed  # the next chain starts afresh

        _, mixed = self.backend.core.fori_loop(0, self.num_chains * self.chain_depth, step,
                                               (images, self.backend.numpy.zeros_like(images)))
        mixed = weight * images + (1 - weight) * mixed
        return self.backend.numpy.clip(mixed, self.value_range[0], self.value_range[1])


@AUGMENTATIONS.register("augmix")
class AugMix(LayerAugmentation):
    """Mixes chains of random image operations with the image (`keras.layers.AugMix`); one source, cross-entropy.

    Per batch, `num_chains` chains of up to `chain_depth` operations (shear,
    translation, rotation, posterize, solarize, auto-contrast, equalize and,
    with `all_ops`, brightness, colour, contrast, sharpness; each position
    may be left empty) are drawn at every step, the chains' outputs are mixed
    with Dirichlet weights and the result with the image with a Beta weight;
    the operations' strengths (`factor`) are drawn per image. The loss is
    cross-entropy with the image's own label (the paper's Jensen-Shannon
    consistency term is not used). Two differences from Keras' layer, both
    measured: the chains are drawn at every call instead of once per traced
    step, and equalization counts its histogram with a segment sum, which
    compiles in under a second on JAX instead of 28 s (see
    `ChainsDrawnPerCall` and `HistogramEqualization`). Keras equalizes each
    channel with the histogram of the whole batch.

    The colour operations need the images' value range. When the student
    normalises its input (the zoo's models built with `normalization=`), the
    Distiller feeds raw pixels and the range defaults to (0, 255); a student
    without an input normalisation may take normalised images, so `build`
    then fails unless `value_range` is given, and a `value_range` that
    cannot hold images with the student's normalisation fails at build too.
    Grey images are augmented as grey RGB images would be. XLA: on JAX; not on
    TensorFlow, whose gamma sampler and image transform have no XLA kernel.

    Args:
        num_chains: Chains mixed, >= 1 (Keras' default 3).
        chain_depth: Positions per chain, >= 1 (3); each holds an operation
            or none, uniformly.
        factor: Strength of the operations in [0, 1]: a number `f` draws
            from [0, f] per image, a pair `(lo, hi)` from [lo, hi] (0.3).
        alpha: Parameter of the Dirichlet and Beta mixing weights, > 0 (1).
        all_ops: Also the brightness, colour, contrast and sharpness
            operations (True).
        interpolation: `"bilinear"` or `"nearest"`, of the geometric operations.
        value_range: `(low, high)`, the range of the images the Distiller
            feeds, or `None` (the default): raw pixels (0, 255) when the
            student normalises its input, refused at build otherwise.
        label_source: `"ground_truth"` or `"teacher"` (see `Augmentation`).
        seed: Seed of the strategy's random generator (the layer draws from it).

    Example:

    ```python
    student = ck.models.get("resnet8", 100, normalization=ck.data.info("cifar100").normalization)
    ck.Distiller(teacher, student, augmentation=ck.augmentations.AugMix(factor=0.3, seed=1))
    ```

    Reference:
        Mishra et al., "Distilling Calibrated Student from an Uncalibrated
        Teacher", Sec. 3.2 (any augmentation with cross-entropy); Hendrycks et
        al., "AugMix: A Simple Data Processing Method to Improve Robustness and
        Uncertainty", ICLR 2020.
    """

    label = "AugMix"
    rgb_only = True

    def __init__(self, num_chains: int = 3, chain_depth: int = 3, factor=0.3, alpha: float = 1.0,
                 all_ops: bool = True, interpolation: str = "bilinear", value_range=None, **kwargs):
        super().__init__(**kwargs)
        self.num_chains = checks.integer("AugMix", "num_chains", num_chains)
        self.chain_depth = checks.integer("AugMix", "chain_depth", chain_depth)
        self.alpha = checks.number("AugMix", "alpha", alpha, low=0.0, low_open=True)
        self.all_ops = checks.one_of("AugMix", "all_ops", all_ops, (True, False))
        self.interpolation = checks.one_of("AugMix", "interpolation", interpolation, ("bilinear", "nearest"))
        self.use_image_layer(ChainsDrawnPerCall, value_range, num_chains=self.num_chains,
                             chain_depth=self.chain_depth, factor=factor, alpha=self.alpha, all_ops=self.all_ops,
                             interpolation=self.interpolation)

    def get_config(self):
        config = super().get_config()
        config.update(num_chains=self.num_chains, chain_depth=self.chain_depth, factor=self.factor_given,
                      alpha=self.alpha, all_ops=self.all_ops, interpolation=self.interpolation,
                      value_range=list(self.value_range) if self.value_range_given else None)
        return config
