"""Name -> entry registries for the pluggable parts of keras_calikd.

Each kind of component has one `Registry`: augmentation and distillation
strategies, model architectures, data sets. Entries are registered under a
short name with `register` and looked up by that name, so that code, gin files
and the command line can all say `"mixup"` or `"kd"`.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, Optional


class Registry:
    """A small, strict mapping from short names to classes, builders or descriptions.

    The registry guarantees three things: a name is registered once (a second
    registration fails, naming both entries); an entry is of the registry's
    `base` class when one is given (the base documents the contract every
    entry follows); a miss fails listing the known names. With
    `serializable=True` the `register` decorator also registers the class with
    Keras' serialization (package `keras_calikd`), so one decorator makes a
    strategy usable by name, in gin files and in saved models.

    Args:
        kind: What the registry holds, used in error messages
            (e.g. `"augmentation strategy"`).
        base: Class every entry must subclass, or `None` (builders, descriptions).
        serializable: Register each class entry with `keras.saving` as well.

    Example:

    ```python
    AUGMENTATIONS = Registry("augmentation strategy", base=Augmentation, serializable=True)

    @AUGMENTATIONS.register("mixup")
    class MixUp(Augmentation):
        ...

    AUGMENTATIONS.get("mixup")      # -> MixUp
    AUGMENTATIONS.get("mixpu")      # ValueError listing "mixup", ...
    ```
    """

    def __init__(self, kind: str, base: Optional[type] = None, serializable: bool = False):
        self.kind = kind
        self.base = base
        self.serializable = serializable
        self._entries: Dict[str, Any] = {}
        self._undecorated: Dict[str, Any] = {}  # each entry as it was registered, where a decorator replaced it
        self._decorators: list = []  # applied to every entry, those registered later included

    def register(self, name: str) -> Callable[[Any], Any]:
        """Returns a decorator that registers its argument under `name` and returns it."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"A {self.kind} must be registered under a non-empty string name, got {name!r}.")

        def decorator(obj):
            if name in self._entries:
                raise ValueError(
                    f"Cannot register {obj!r} as {self.kind} {name!r}: that name is already taken by "
                    f"{self._entries[name]!r}. Pick another name."
                )
            if self.base is not None and not (isinstance(obj, type) and issubclass(obj, self.base)):
                raise TypeError(f"A {self.kind} must be a subclass of {self.base.__name__}, got {obj!r}.")
            if self.serializable:
                import keras

                obj = keras.saving.register_keras_serializable(package="keras_calikd")(obj)
            self._entries[name] = obj
            for decorate in self._decorators:
                self._decorate(name, decorate)
            return obj

        return decorator

    def get(self, name: str) -> Any:
        """Returns the entry registered under `name`; raises `ValueError` listing the known names on a miss."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise ValueError(
                f"Unknown {self.kind} {name!r}. Known names: {', '.join(sorted(self._entries))}."
            ) from None

    def resolve(self, spec: Any) -> Any:
        """Turns `spec` (a registered name or an instance of `base`) into an instance of `base`.

        A name is instantiated with the entry's default arguments (or those bound by gin).
        """
        if self.base is not None and isinstance(spec, self.base):
            return spec
        if isinstance(spec, str):
            return self.get(spec)()
        expected = f" or a {self.base.__name__} instance" if self.base is not None else ""
        raise TypeError(
            f"Expected a {self.kind} name ({', '.join(self.names())}){expected}, "
            f"got {spec!r} of type {type(spec).__name__}."
        )

    def decorate_entries(self, decorator: Callable[[str, Any], Any]) -> None:
        """Replaces every entry `obj` registered as `name` with `decorator(name, obj)`, now and when registered.

        Used to make all entries configurable through gin in one place
        (`keras_calikd.gin_support`); the set of names does not change. An
        entry registered afterwards (a user's strategy, imported by a gin
        file) is decorated as it is registered.
        """
        decorated = {name: decorator(name, obj) for name, obj in self._entries.items()}  # all or nothing
        for name, obj in decorated.items():
            self._undecorated.setdefault(name, self._entries[name])
        self._entries.update(decorated)  # in place: the registry keeps one dict all its life
        self._decorators.append(decorator)

    def _decorate(self, name: str, decorator) -> None:
        self._undecorated.setdefault(name, self._entries[name])
        self._entries[name] = decorator(name, self._entries[name])

    def name_of(self, obj: Any) -> Optional[str]:
        """The name under which `obj` (an entry, or an instance of one) is registered, or `None`.

        An instance of a subclass that is not itself registered has no name.

        Example:

        ```python
        DISTILLATIONS.name_of(KD(temperature=4.0))     # "kd"
        ```
        """
        cls = obj if isinstance(obj, type) else type(obj)
        for name, entry in self._entries.items():
            if entry is cls or self._undecorated.get(name) is cls:
                return name
        return None

    def names(self) -> list:
        """The registered names, sorted."""
        return sorted(self._entries)

    def items(self):
        return sorted(self._entries.items())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, names={self.names()})"
