"""CIFAR-10 and CIFAR-100, read from a copy prepared by TFDS's own catalog builders.

There is no builder here: on a machine with internet, `tfds build cifar10`
(or `cifar100`) prepares `<DIR>/cifar10/<version>/`; copy that folder to the
data directory of the training machine. keras_calikd never downloads.

Stored order: the order of the examples in that prepared copy (TFDS writes
them in its own hash order, not in the order of the CIFAR binary files; the
`id` feature, e.g. `"train_00042"`, names the original row). `read` reads
the TFRecord files one after another, shard by shard, so the order is that
of the files and the same on every read.
"""

from keras_calikd.data.dataset import Dataset, register

#: CIFAR-10's classes in label order (CINIC-10 uses the same classes and order).
CIFAR10_CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

#: CIFAR-10: mean and standard deviation of every pixel of the 50,000 training images
#: (the exact values, 0.49139968 ... / 0.24703223 ..., are widely reproduced; rounded here).
CIFAR10 = register(Dataset(
    name="cifar10", title="CIFAR-10", num_classes=10, image_shape=(32, 32, 3),
    splits={"train": 50_000, "test": 10_000},
    mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616),
    stats_source="per-pixel statistics of the CIFAR-10 training set", crop_padding=4,
    class_names=CIFAR10_CLASS_NAMES,
))

#: CIFAR-100: the constants of the CRD code base (Tian et al., 2020) the paper's authors built on;
#: they are the per-pixel statistics of the 50,000 training images.
CIFAR100 = register(Dataset(
    name="cifar100", title="CIFAR-100", num_classes=100, image_shape=(32, 32, 3),
    splits={"train": 50_000, "test": 10_000},
    mean=(0.5071, 0.4867, 0.4408), std=(0.2675, 0.2565, 0.2761),
    stats_source="CRD code base (Tian et al., 2020), CIFAR-100 training set", crop_padding=4,
))

__all__ = ["CIFAR10", "CIFAR100", "CIFAR10_CLASS_NAMES"]
