"""Root conftest of tools/mutation.sh's work directory (not used by the ordinary test runs).

1. Each mutant's tests run in a fresh child process that holds pytest, JAX, Keras and the
   project already imported. Those objects are moved out of the garbage collector's sight
   (`gc.freeze`), so that the `keras.backend.clear_session()` before every test (a full
   collection) takes milliseconds instead of about a second. Frozen objects are never freed,
   which costs nothing in a child that exits after one mutant.
2. mutmut replaces each mutated function with a trampoline that takes `*args, **kwargs` and
   records the original in `__wrapped__`. `inspect.signature` follows `__wrapped__`, but
   `inspect.getfullargspec` does not, and Keras reads the arguments of a layer's, metric's or
   model's `__init__` with the latter when the object is created. Here it follows the
   trampoline to the original function, so that mutated Keras classes behave as the originals.
3. A mutant's tests run fastest first. mutmut passes them in no particular order and stops at the
   first failure; a mutant of a strategy is typically caught by a reference test in a fraction of
   a second, but was often first given a Distiller `fit` of several seconds. The durations are
   those mutmut measured in its first run (`mutmut-stats.json`, next to this file in `mutants/`).
"""

import functools
import gc
import inspect
import json
import os

gc.freeze()

_getfullargspec = inspect.getfullargspec


@functools.wraps(_getfullargspec)
def _getfullargspec_through_trampolines(func):
    code = getattr(func, "__code__", None)
    if code is not None and code.co_name == "_trampoline_wrapper" and hasattr(func, "__wrapped__"):
        func = func.__wrapped__
    return _getfullargspec(func)


inspect.getfullargspec = _getfullargspec_through_trampolines


def pytest_collection_modifyitems(items):
    try:
        with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "mutmut-stats.json")) as f:
            durations = json.load(f)["duration_by_test"]
    except (OSError, ValueError, KeyError):
        return  # mutmut's first run, which measures them
    items.sort(key=lambda item: durations.get(item.nodeid, 0.0))
