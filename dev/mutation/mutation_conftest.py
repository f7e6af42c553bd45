"""Root conftest of dev/mutation/mutation.sh's work directory (not used by the ordinary test runs).

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
3. A mutant's tests run in the order most likely to kill it soonest. mutmut passes them in no
   particular order and stops at the first failure. Each test's duration, as mutmut measured it
   in its first run (`mutmut-stats.json`, next to this file in `mutants/`), is divided by one
   more than the number of mutants of the same function that the test has already killed in this
   run (read back from `mutant_times.tsv`, see 4; mutmut runs the mutants of a function one after
   another), and the tests run in increasing order of that: the fastest first, and a test that
   keeps killing the function's mutants ahead of faster ones that do not. A mutant of a strategy
   then meets its reference test before any Distiller `fit`, and a Distiller mutant meets the
   `fit` that killed its siblings before the others.
4. Each mutant's child appends a line to `mutant_times.tsv` in the work directory: the mutant's
   name, the seconds its tests took (from pytest's start to its end), pytest's exit status, how
   many tests ran and the test that failed first (empty when none did). mutmut records no
   durations of its own; these show where a run's time goes and which tests kill what.
5. A mutant listed in dev/mutation/known_mutants.tsv (equivalent, or killed outside the harness) is not run
   again while its mutation is the one listed (the same fingerprint, see
   `dev/mutation/mutation_score.py`): its child exits at once with mutmut's "skipped" status, which
   the score reads back from the listing. `dev/mutation/mutation.sh` writes the listed names and
   fingerprints to `known_mutants.json` (empty with `MUTATION_RERUN_KNOWN=1`).
"""

import collections
import functools
import gc
import inspect
import json
import os
import time

import pytest

import mutation_score  # dev/mutation/mutation_score.py, copied next to this file

gc.freeze()
_HERE = os.path.dirname(os.path.abspath(__file__))  # build/mutation/mutants, where each mutant's tests run
_TIMES = os.path.join(_HERE, os.pardir, "mutant_times.tsv")

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
        with open(os.path.join(_HERE, "mutmut-stats.json")) as f:
            durations = json.load(f)["duration_by_test"]
    except (OSError, ValueError, KeyError):
        return  # mutmut's first run, which measures them
    kills = _kills_of_siblings(os.environ.get("MUTANT_UNDER_TEST", ""))
    items.sort(key=lambda item: durations.get(item.nodeid, 0.0) / (1 + kills[item.nodeid]))


def _kills_of_siblings(mutant):
    """How many mutants of `mutant`'s function each test has killed so far in this run."""
    function = mutant.rpartition("__mutmut_")[0]
    kills = collections.Counter()
    if not function:  # mutmut's own runs
        return kills
    try:
        with open(_TIMES, encoding="utf-8") as f:
            for line in f:
                if line.startswith(function + "__mutmut_"):
                    killer = line.rstrip("\n").split("\t")[4]  # name, seconds, status, tests run, killer
                    if killer:
                        kills[killer] += 1
    except OSError:
        pass  # the run's first mutant
    return kills


def pytest_sessionstart(session):
    mutant = os.environ.get("MUTANT_UNDER_TEST", "")
    with open(os.path.join(_HERE, "known_mutants.json")) as f:
        listed = json.load(f).get(mutant)
    if listed is not None and mutation_score.fingerprint(_HERE, mutant) == listed:
        session.config._mutation_exitstatus = mutation_score.KNOWN
        pytest.exit(f"{mutant} is listed in dev/mutation/known_mutants.tsv: not run again", returncode=mutation_score.KNOWN)


_started = time.monotonic()


def pytest_unconfigure(config):
    mutant = os.environ.get("MUTANT_UNDER_TEST", "")
    if "__mutmut_" not in mutant:  # mutmut's own runs: statistics, clean tests, forced failure
        return
    status = getattr(config, "_mutation_exitstatus", "")
    ran, killer = _tests_run, _first_failure or ""
    line = f"{mutant}\t{time.monotonic() - _started:.2f}\t{status}\t{ran}\t{killer}\n"
    fd = os.open(_TIMES, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


_tests_run = 0
_first_failure = None


def pytest_runtest_logreport(report):
    global _tests_run, _first_failure
    if report.when == "call" or (report.when == "setup" and report.failed):  # ran, or its fixture failed
        _tests_run += 1
    if report.failed and _first_failure is None:
        _first_failure = report.nodeid


def pytest_sessionfinish(session, exitstatus):
    session.config._mutation_exitstatus = int(exitstatus)
