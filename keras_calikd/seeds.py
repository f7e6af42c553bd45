"""Random state that is saved with the model: a strategy's `SeedGenerator` travels in `.keras` files.

Keras saves a layer's own variables but not the state of the `SeedGenerator`s
it holds; a Distiller loaded from a `.keras` file would then draw other mixup
partners, boxes or negatives than the one that was saved. Strategies that
draw random numbers inherit `SavedSeedState`, which adds the state of their
`seed_generator` to what they save and load.
"""

from __future__ import annotations

_KEY = "seed_generator_state"


class SavedSeedState:
    """Mixin for layers with a `seed_generator`: its state is saved and loaded with the layer's variables."""

    def save_own_variables(self, store):
        super().save_own_variables(store)
        store[_KEY] = self.seed_generator.state

    def load_own_variables(self, store):
        if _KEY in store.keys():
            self.seed_generator.state.assign(store[_KEY])
        super().load_own_variables({key: store[key] for key in store.keys() if key != _KEY})
