"""Writers of small fake data sets in the on-disk layouts their authors distribute.

Pixel values encode what a test needs to check (label, split, file, row,
severity), so the tests can verify label mapping, slicing and stored order
from the images alone. `write_catalog_copy` writes a tiny prepared copy of a
TFDS catalog data set (CIFAR-10/100) instead of raw files.
"""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np
from PIL import Image

CINIC_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CINIC_SPLIT_FOLDERS = {"train": "train", "validation": "valid", "test": "test"}
#: Code of each CINIC-10 split folder in the green channel of its fake images.
CINIC_SPLIT_CODES = {"train": 0, "valid": 100, "test": 200}


def cinic_pixel(label: int, folder: str, number: int = 0):
    """The constant (R, G, B) of a fake CINIC-10 image: R = 20 * label, G = split code, B = 77 + file number."""
    return (20 * label, CINIC_SPLIT_CODES[folder], 77 + number)


def cinic_file_name(folder: str, label: int, number: int) -> str:
    """The name of fake CINIC-10 image `number` of a class folder (sorted names follow `number`)."""
    return f"cifar10-{folder}-{label}{number}.png"


def write_cinic10(root, per_class=None, grayscale_file=True) -> dict:
    """Writes `<root>/{train,valid,test}/<class>/*.png` (32x32 RGB PNGs of constant colour).

    Args:
        root: The raw folder (what `<data_dir>/downloads/manual/cinic10/` holds).
        per_class: Folder -> images per class; default train 2, valid 1, test 1.
        grayscale_file: Also write one grayscale PNG (as the real release has) in test/bird.

    Returns:
        Split name -> number of images written.
    """
    per_class = per_class or {"train": 2, "valid": 1, "test": 1}
    counts = {}
    for split, folder in CINIC_SPLIT_FOLDERS.items():
        n = 0
        for label, name in enumerate(CINIC_CLASSES):
            d = os.path.join(root, folder, name)
            os.makedirs(d, exist_ok=True)
            for i in range(per_class[folder]):
                img = np.empty((32, 32, 3), np.uint8)
                img[...] = cinic_pixel(label, folder, i)
                Image.fromarray(img).save(os.path.join(d, cinic_file_name(folder, label, i)))
                n += 1
            if grayscale_file and folder == "test" and name == "bird":
                gray = np.full((32, 32), 20 * label, np.uint8)
                Image.fromarray(gray, mode="L").save(os.path.join(d, "n01234567_gray.png"))
                n += 1
        # A stray non-PNG file is ignored.
        with open(os.path.join(root, folder, "airplane", "README.txt"), "w") as f:
            f.write("not an image")
        counts[split] = n
    return counts


def tiny_pixel(label: int):
    """(R, G, B) of a fake Tiny ImageNet image: spaced by >= 5 so that JPEG rounding cannot mix labels."""
    return ((label % 50) * 5, (label // 50) * 60, 128)


def tiny_label_of(image: np.ndarray) -> int:
    """Inverse of `tiny_pixel` on a decoded (64, 64, 3) uint8 image."""
    r, g = float(image[..., 0].mean()), float(image[..., 1].mean())
    return int(round(r / 5)) + 50 * int(round(g / 60))


def write_tiny_imagenet(root, train_per_class=1, val_count=12, seed=0) -> dict:
    """Writes a fake `tiny-imagenet-200/` with 200 wnids (in a non-sorted order).

    Returns:
        {"wnids": [...], "train": n, "validation": n, "val_labels": {file: label}}.
    """
    rng = np.random.default_rng(seed)
    wnids = [f"n{10_000_000 + 7919 * i:08d}" for i in range(200)]
    wnids = [wnids[i] for i in rng.permutation(200)]  # the file's order, not alphabetical
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "wnids.txt"), "w") as f:
        f.write("\n".join(wnids) + "\n")
    with open(os.path.join(root, "words.txt"), "w") as f:
        f.write("".join(f"{w}\tthing {i}\n" for i, w in enumerate(wnids)))
    for label, wnid in enumerate(wnids):
        d = os.path.join(root, "train", wnid, "images")
        os.makedirs(d, exist_ok=True)
        for i in range(train_per_class):
            img = np.empty((64, 64, 3), np.uint8)
            img[...] = tiny_pixel(label)
            Image.fromarray(img).save(os.path.join(d, f"{wnid}_{i}.JPEG"), format="JPEG", quality=95)
        with open(os.path.join(root, "train", wnid, f"{wnid}_boxes.txt"), "w") as f:
            f.write("")
    os.makedirs(os.path.join(root, "val", "images"), exist_ok=True)
    val_labels = {}
    lines = []
    for i in range(val_count):
        label = int(rng.integers(200))
        name = f"val_{i}.JPEG"
        img = np.empty((64, 64, 3), np.uint8)
        img[...] = tiny_pixel(label)
        if i == 0:  # the real release has a few grayscale JPEGs
            Image.fromarray(img[..., 0]).save(os.path.join(root, "val", "images", name), format="JPEG", quality=95)
        else:
            Image.fromarray(img).save(os.path.join(root, "val", "images", name), format="JPEG", quality=95)
        val_labels[name] = label
        lines.append(f"{name}\t{wnids[label]}\t0\t0\t63\t63\n")
    with open(os.path.join(root, "val", "val_annotations.txt"), "w") as f:
        f.write("".join(lines))
    os.makedirs(os.path.join(root, "test", "images"), exist_ok=True)
    return {"wnids": wnids, "train": 200 * train_per_class, "validation": val_count, "val_labels": val_labels}


def write_cifar100_c(root, corruptions=("frost",), per_severity=4, base_value=None) -> dict:
    """Writes `<corruption>.npy` files of shape (5 * per_severity, 32, 32, 3) and `labels.npy`.

    Row r of `<corruption>.npy`: channel 0 = 40 * severity (severity = r // per_severity + 1),
    channel 1 = r, channel 2 = index of the corruption. `labels.npy[r] = (7 * r) % 100`.
    With `base_value` (a per-channel (3,) uint8), images are that colour plus +-1 noise instead.

    Returns:
        {"labels": labels array, "per_severity": n}.
    """
    os.makedirs(root, exist_ok=True)
    rows = 5 * per_severity
    labels = ((7 * np.arange(rows)) % 100).astype(np.int64)
    np.save(os.path.join(root, "labels.npy"), labels)
    rng = np.random.default_rng(0)
    for c_index, corruption in enumerate(corruptions):
        images = np.zeros((rows, 32, 32, 3), np.uint8)
        if base_value is not None:
            noise = rng.integers(-1, 2, size=images.shape)
            images[...] = np.clip(np.asarray(base_value)[None, None, None, :] + noise, 0, 255)
        else:
            for r in range(rows):
                images[r, ..., 0] = 40 * (r // per_severity + 1)
                images[r, ..., 1] = r
                images[r, ..., 2] = c_index
        np.save(os.path.join(root, f"{corruption}.npy"), images)
    return {"labels": labels, "per_severity": per_severity}


def write_idx(path, array: np.ndarray) -> None:
    """Writes a gzip IDX file of unsigned bytes."""
    array = np.asarray(array, np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def write_fashion_mnist(root, n_train=30, n_test=10, random_images=False) -> dict:
    """Writes the four Fashion-MNIST IDX files with `n_train`/`n_test` images.

    Labels are row % 10. Images are constant (pixel = 10 * label), or with
    `random_images` uniformly random (seeded), so that every row differs.

    Returns:
        Split ("train", "test") -> (images (N, 28, 28), labels (N,)) as written, row by row.
    """
    os.makedirs(root, exist_ok=True)
    written = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        images = np.repeat(labels[:, None, None] * 10, 28 * 28, axis=1).reshape(n, 28, 28).astype(np.uint8)
        if random_images:
            images = np.random.default_rng(n).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        write_idx(os.path.join(root, f"{prefix}-images-idx3-ubyte.gz"), images)
        write_idx(os.path.join(root, f"{prefix}-labels-idx1-ubyte.gz"), labels)
        written[split] = (images, labels)
    return written


def write_catalog_copy(name, data_dir, per_split, random_images=False, seed=0, num_shards=None):
    """Prepares a tiny copy of TFDS's `name` (cifar10/cifar100) in `data_dir`, as `tfds build` would.

    Same builder name, version and features as TFDS's; fake examples: example
    i of a split has the id `"<split>_<i:05d>"`, label i % classes and a
    constant image of value 2 * label, or with `random_images` random pixels
    drawn from `default_rng([seed, position of the split in per_split])`.

    Args:
        name: "cifar10" or "cifar100".
        data_dir: The TFDS data directory.
        per_split: Split -> number of examples, e.g. {"train": 12, "test": 7}.
        random_images: Random images instead of constant ones.
        seed: Seed of the random images.
        num_shards: Number of TFRecord files per split (default: TFDS's choice, one for tiny splits).

    Returns:
        The prepared builder.
    """
    import tensorflow_datasets as tfds

    base = tfds.builder_cls(name)
    classes = 10 if name == "cifar10" else 100

    class FakeCopy(base, skip_registration=True):
        def _split_generators(self, dl_manager):
            return {split: self._generate_examples(split) for split in per_split}

        def _generate_examples(self, split):
            rng = np.random.default_rng([seed, list(per_split).index(split)])
            for i in range(per_split[split]):
                label = i % classes
                image = np.full((32, 32, 3), 2 * label, np.uint8)
                if random_images:
                    image = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
                example = {"id": f"{split}_{i:05d}", "image": image, "label": label}
                if name == "cifar100":
                    example["coarse_label"] = label % 20
                yield example["id"], example

    FakeCopy.name = name
    builder = FakeCopy(data_dir=data_dir)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False, num_shards=num_shards))
    return builder
