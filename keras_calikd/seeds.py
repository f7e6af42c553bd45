"""Random state that is saved with the model: a strategy's `SeedGenerator` travels in `.keras` files.

Keras saves a layer's own variables but not the state of the `SeedGenerator`s
it holds; a Distiller loaded from a `.keras` file would then draw other mixup
partners, boxes or negatives than the one that was saved. Strategies that
draw random numbers inherit `SavedSeedState`, which adds the state of their
`seed_generator`, and of the generators of the layers they wrap, to what they save and load.
"""

from __future__ import annotations

_KEY = "seed_generator_state"


class SavedSeedState:
    """Mixin for layers with a `seed_generator`: its state, and that of every seed generator of the layers it
    holds (e.g. a wrapped Keras preprocessing layer's), is saved and loaded with the layer's variables."""

    def _seed_states(self) -> list:
        """The strategy's own seed state first, then its sublayers' in the order of `variables` (no repeats)."""
        states, seen = [], set()
        for variable in [self.seed_generator.state] + [v for v in self.variables if v.path.endswith(_KEY)]:
            if id(variable) not in seen:
                seen.add(id(variable))
                states.append(variable)
        return states

    def save_own_variables(self, store):
        super().save_own_variables(store)
        for i, state in enumerate(self._seed_states()):
            store[_KEY if i == 0 else f"{_KEY}_{i}"] = state

    def load_own_variables(self, store):
        for i, state in enumerate(self._seed_states()):
            key = _KEY if i == 0 else f"{_KEY}_{i}"
            if key in store.keys():
                state.assign(store[key])
        super().load_own_variables({key: store[key] for key in store.keys() if not key.startswith(_KEY)})
