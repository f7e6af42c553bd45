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
"""

import functools
import gc
import inspect

gc.freeze()

_getfullargspec = inspect.getfullargspec


@functools.wraps(_getfullargspec)
def _getfullargspec_through_trampolines(func):
    code = getattr(func, "__code__", None)
    if code is not None and code.co_name == "_trampoline_wrapper" and hasattr(func, "__wrapped__"):
        func = func.__wrapped__
    return _getfullargspec(func)


inspect.getfullargspec = _getfullargspec_through_trampolines
