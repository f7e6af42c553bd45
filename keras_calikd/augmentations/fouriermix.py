"""FourierMix (FMix): mix image pairs through a mask sampled in Fourier space (Harris et al., 2020), in `keras.ops`."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_calikd import checks
from keras_calikd.augmentations import sampling
from keras_calikd.augmentations.base import AUGMENTATIONS, Augmentation, AugmentedBatch, partners
from keras_calikd.steps import per_sample


def spectrum_scale(height: int, width: int, decay_power: float) -> np.ndarray:
    """`1 / max(|f|, 1 / max(H, W)) ** decay_power` over the `(H, W)` grid of DFT frequencies (float32)."""
    frequency = np.hypot(np.fft.fftfreq(height)[:, None], np.fft.fftfreq(width)[None, :])
    return (1.0 / np.maximum(frequency, 1.0 / max(height, width)) ** decay_power).astype(np.float32)


def fourier_mask(noise, lam, decay_power: float):
    """Binary masks keeping the `round(lam * H * W)` highest pixels of low-pass filtered noise.

    Args:
        noise: `(batch, 2, H, W)` float32 standard normal draws, the real and
            imaginary parts of each image's random spectrum.
        lam: `(batch,)` float32, the share of pixels each mask keeps.
        decay_power: Decay of the spectrum with the frequency.

    Returns:
        `(batch, H, W)` float32 masks of 0 and 1.
    """
    height, width = int(noise.shape[2]), int(noise.shape[3])
    scale = ops.convert_to_tensor(spectrum_scale(height, width, decay_power))
    field, _ = ops.ifft2((noise[:, 0] * scale, noise[:, 1] * scale))  # the real part: a grey, smooth image
    flat = ops.reshape(field, (-1, height * width))
    rank = ops.argsort(ops.argsort(-flat, axis=-1), axis=-1)  # 0 for the highest pixel
    kept = ops.round(lam * float(height * width))
    return ops.reshape(ops.cast(ops.cast(rank, "float32") < kept[:, None], "float32"), (-1, height, width))


@AUGMENTATIONS.register("fouriermix")
class FourierMix(Augmentation):
    """Mixes each image with a partner through a random low-frequency mask (FMix); two sources.

    Per image, `lam ~ Beta(alpha, alpha)` and a random spectrum are drawn;
    the spectrum, complex standard normal noise scaled by
    `1 / max(|f|, 1 / max(H, W)) ** decay_power`, is turned into a grey image
    by the inverse Fourier transform, and its `round(lam * H * W)` highest
    pixels keep the image's own pixels while the others take those of its
    partner (a random permutation of the batch, over the global batch under
    several replicas, as for mixup). The loss is cross-entropy with
    `share * y + (1 - share) * y_partner`, where `share` is the exact
    fraction of the image's own pixels (`lam` up to rounding), and since
    each mixed image comes from two clean images the distillation term
    counts twice (Eq. 12). Pixels are copied unchanged, so the range of the
    images does not matter. Written in `keras.ops`: every backend, inside
    compiled (XLA) steps.

    Args:
        alpha: Beta distribution parameter, > 0. The default 0.5 is keras-cv's
            `FourierMix`, which this strategy replaces (the FMix paper trains
            with 1).
        decay_power: Decay of the spectrum's high frequencies, > 0; larger
            values give smoother, blobbier masks (3, the FMix paper's).
        label_source: `"ground_truth"` or `"teacher"` (see `Augmentation`).
        seed: Seed of the strategy's random generator.

    Example:

    ```python
    ck.Distiller(teacher, student, augmentation=ck.augmentations.FourierMix(alpha=1.0, decay_power=3.0))
    ```

    Reference:
        Mishra et al., "Distilling Calibrated Student from an Uncalibrated
        Teacher", Sec. 3.2-3.3 (any augmentation, Eq. 12 for two-source
        images); Harris et al., "FMix: Enhancing Mixed Sample Data
        Augmentation", arXiv:2002.12047, 2020.
    """

    label = "FourierMix"

    def __init__(self, alpha: float = 0.5, decay_power: float = 3.0, **kwargs):
        super().__init__(**kwargs)
        self.alpha = checks.number("FourierMix", "alpha", alpha, low=0.0, low_open=True)
        self.decay_power = checks.number("FourierMix", "decay_power", decay_power, low=0.0, low_open=True)

    def draw(self, batch_size: int, height: int, width: int):
        """Each image's `(noise, lam)` (see `fourier_mask`)."""
        noise = per_sample(lambda n: keras.random.normal((n, 2, height, width), dtype="float32",
                                                         seed=self.seed_generator), batch_size)
        lam = per_sample(lambda n: sampling.beta((n,), self.alpha, self.alpha, self.seed_generator), batch_size)
        return noise, lam

    def augment(self, images, labels):
        height, width = int(images.shape[1]), int(images.shape[2])
        noise, lam = self.draw(ops.shape(images)[0], height, width)
        mask = fourier_mask(noise, lam, self.decay_power)
        partner_images, partner_labels = partners(images, labels, self.seed_generator)
        mixed = ops.where(mask[..., None] > 0.5, images, partner_images)
        return AugmentedBatch(images=mixed, labels=labels, partner_labels=partner_labels,
                              lam=ops.mean(mask, axis=(1, 2)), sources=ops.full((), 2.0, "float32"))

    def get_config(self):
        config = super().get_config()
        config.update(alpha=self.alpha, decay_power=self.decay_power)
        return config
