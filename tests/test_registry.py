import pytest

from keras_calikd import augmentations, distillations
from keras_calikd.registry import Registry


def test_register_and_get():
    registry = Registry("widget")

    @registry.register("a")
    class A:
        pass

    assert registry.get("a") is A
    assert "a" in registry and registry.names() == ["a"] and len(registry) == 1


def test_duplicate_name_is_an_error():
    registry = Registry("widget")
    registry.register("a")(object)
    with pytest.raises(ValueError, match="already taken"):
        registry.register("a")(int)


def test_unknown_name_lists_known_names():
    registry = Registry("widget")
    registry.register("alpha")(object)
    registry.register("beta")(int)
    with pytest.raises(ValueError, match=r"Unknown widget 'gamma'. Known names: alpha, beta"):
        registry.get("gamma")


def test_resolve_accepts_names_and_instances_only():
    mixup = augmentations.get("mixup")
    assert isinstance(mixup, augmentations.MixUp)
    assert augmentations.get(mixup) is mixup
    with pytest.raises(TypeError, match="augmentation strategy name"):
        augmentations.get(3)
    with pytest.raises(ValueError, match="Known names: .*kd"):
        distillations.get("kdd")


def test_builtin_names():
    assert {"none", "mixup", "cutmix", "cutout"} <= set(augmentations.AUGMENTATIONS.names())
    assert "kd" in distillations.DISTILLATIONS.names()
