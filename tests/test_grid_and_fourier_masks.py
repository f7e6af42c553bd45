"""GridMask and FourierMix in `keras.ops`: their masks against NumPy constructions of the published definitions.

The strategies themselves run in compiled loops with XLA (`tiny.repeated`) on
both backends, built as the Distiller builds them (raw pixels, the student's
normalisation in pixels).
"""

import numpy as np
import pytest
from keras import ops

import keras_calikd as ck
from keras_calikd.augmentations.fouriermix import fourier_mask
from keras_calikd.augmentations.gridmask import grid_mask
from tiny import repeated

MEAN, STD = np.float32([120.0, 110.0, 100.0]), np.float32([60.0, 55.0, 50.0])


def numpy_grid_mask(ratio, unit, offset_y, offset_x, angle, height, width):
    """Chen et al.'s grid, drawn as a list of squares: in the grid's frame, tile k spans
    [k d - offset, (k + 1) d - offset) and its masked square is the last `r d` of it on each axis;
    the grid is rotated by `angle` about the image centre and a pixel is masked if its centre is in a square."""
    side = ratio * unit
    squares = [(k * unit - offset_y - side, k * unit - offset_y, j * unit - offset_x - side, j * unit - offset_x)
               for k in range(-40, 41) for j in range(-40, 41)]
    mask = np.zeros((height, width), bool)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    for i in range(height):
        for j in range(width):
            # the grid rotated by `angle` about the centre: the pixel rotated back by it, in (x, y)
            x, y = rotation.T @ np.array([j + 0.5 - width / 2, i + 0.5 - height / 2])
            mask[i, j] = any(top <= y < bottom and left <= x < right for top, bottom, left, right in squares)
    return mask


def test_grid_mask_is_the_published_grid_of_squares():
    params = np.float32([[0.5, 6.3, 1.2, 4.1, 0.0], [0.3, 9.1, 0.2, 2.5, 0.7], [0.8, 5.2, 3.3, 0.1, -2.0]])
    got = ops.convert_to_numpy(grid_mask(*(ops.convert_to_tensor(c) for c in params.T), 11, 13))
    for image, row in zip(got, params.astype(np.float64)):
        np.testing.assert_array_equal(image, numpy_grid_mask(*row, 11, 13))
    assert 0 < got.mean() < 1


@pytest.mark.parametrize("fill_mode, xla", [("constant", True), ("gaussian_noise", None)])
def test_gridmask_fills_about_r_squared_with_the_students_statistics_under_xla(fill_mode, xla):
    """A fixed ratio of 0.5 masks about a quarter of each image; the rest is the image, exactly.

    The constant fill runs under XLA on both backends, the noise fill under XLA on JAX only (one TensorFlow XLA
    compilation less)."""
    rng = np.random.default_rng(0)
    images = rng.uniform(0.0, 255.0, (8, 48, 48, 3)).astype("float32")
    gridmask = ck.augmentations.GridMask(ratio_factor=(0.5, 0.5), fill_mode=fill_mode, seed=2)
    gridmask.build(images.shape, 10, (MEAN, STD))
    out = repeated(gridmask, images, 4, xla=xla)[0].reshape((-1,) + images.shape[1:])
    clean = np.tile(images, (4, 1, 1, 1))
    holes = (out != clean).all(axis=-1)
    assert np.array_equal(holes, (out != clean).any(axis=-1))  # every channel of a masked pixel
    assert abs(holes.mean() - 0.25) < 0.03 and holes.mean(axis=(1, 2)).min() > 0.1  # 32 images
    # Random offsets and units move the grid: each pixel near the centre is masked in some images, not all.
    centre = holes[:, 22:26, 22:26].sum(axis=0)
    assert centre.min() >= 1 and centre.max() <= 20, centre
    filled = out[holes]
    if fill_mode == "constant":
        np.testing.assert_array_equal(filled, np.broadcast_to(MEAN, filled.shape))
    else:
        np.testing.assert_allclose(filled.mean(axis=0), MEAN, atol=2.0)  # > 18,000 draws per channel
        np.testing.assert_allclose(filled.std(axis=0), STD, rtol=0.03)


@pytest.mark.backend_neutral
def test_gridmask_refuses_squares_under_a_pixel_and_bad_factors():
    with pytest.raises(ValueError, match=r"grid unit is at most 3 pixels.*at least 0.333"):
        ck.augmentations.GridMask(ratio_factor=0.3).build((None, 4, 4, 3), 10, None)
    with pytest.raises(ValueError, match=r"`ratio_factor` must be a number or a pair \(lo, hi\) with 0 <= lo <= hi"):
        ck.augmentations.GridMask(ratio_factor=(0.6, 0.2))
    assert ck.augmentations.GridMask(rotation_factor=0.25).rotation_factor == (-0.25, 0.25)


def test_fourier_mask_is_the_top_lam_share_of_low_pass_noise():
    """FMix: complex normal noise scaled by 1 / max(|f|, 1 / max(H, W)) ** decay, inverse DFT, top round(lam HW)."""
    height, width, decay = 6, 10, 3.0
    noise = np.random.default_rng(1).normal(size=(3, 2, height, width)).astype("float32")
    lam = np.float32([0.31, 0.5, 0.97])
    got = ops.convert_to_numpy(fourier_mask(ops.convert_to_tensor(noise), ops.convert_to_tensor(lam), decay))
    fy, fx = np.fft.fftfreq(height)[:, None], np.fft.fftfreq(width)[None, :]
    scale = np.maximum(np.sqrt(fx ** 2 + fy ** 2), 1 / max(height, width)) ** -decay
    for image, (real, imag), share in zip(got, noise.astype(np.float64), lam):
        field = np.fft.ifft2((real + 1j * imag) * scale).real
        kept = int(np.round(share * height * width))
        expected = np.zeros(height * width)
        expected[np.argsort(-field.ravel())[:kept]] = 1.0
        np.testing.assert_array_equal(image, expected.reshape(height, width))


def test_fouriermix_mixes_each_image_with_its_partner_by_the_mask_under_xla():
    """Each pixel is the image's or its partner's; lam is the exact share of its own pixels; two sources."""
    rng = np.random.default_rng(2)
    images = rng.uniform(0.0, 255.0, (8, 16, 16, 3)).astype("float32")  # no two pixels equal
    out, lams, sources = repeated(ck.augmentations.FourierMix(alpha=1.0, seed=3), images, 3, xla=True)
    assert np.all(sources == 2.0)
    shares = []
    for mixed in out:
        own = (mixed == images).all(axis=-1)  # (B, H, W)
        for i in range(8):
            partner = [j for j in range(8) if np.array_equal(mixed[i][~own[i]], images[j][~own[i]])]
            assert own[i].all() or len(partner) == 1  # the other pixels all come from one other image
        shares.append(own.mean(axis=(1, 2)))
    shares = np.array(shares)
    assert len(np.unique(shares)) > 12  # lam drawn per image
    mixed_first = shares[:, 0] < 1  # calls where image 0 got another image as its partner
    assert mixed_first.any()
    np.testing.assert_allclose(lams[mixed_first], shares[mixed_first, 0], atol=1e-6)  # `repeated` returns lam[0]


@pytest.mark.backend_neutral
def test_fouriermix_labels_are_the_permutations_and_lam_per_image():
    images = ops.convert_to_tensor(np.random.default_rng(3).uniform(0, 255, (6, 8, 8, 1)).astype("float32"))
    out = ck.augmentations.FourierMix(seed=4).augment(images, ops.arange(6, dtype="int32"))
    partner = ops.convert_to_numpy(out.partner_labels)
    assert sorted(partner.tolist()) == list(range(6))
    mixed, x = ops.convert_to_numpy(out.images)[..., 0], ops.convert_to_numpy(images)[..., 0]
    np.testing.assert_allclose(ops.convert_to_numpy(out.lam), (mixed == x).mean(axis=(1, 2)) * (partner != range(6))
                               + (partner == range(6)), atol=1e-6)
    np.testing.assert_array_equal(mixed[mixed != x], x[partner][mixed != x])
