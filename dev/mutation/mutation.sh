#!/usr/bin/env bash
# Mutation testing of the numerical core with mutmut: on demand, not in CI (see docs/testing.md).
#
#   dev/mutation/mutation.sh                                  # every core module listed in dev/mutation/mutmut.cfg
#   dev/mutation/mutation.sh training/optimizers.py augmentations/mixup.py    # some of them, with their own tests
#   MUTATION_BACKEND=tensorflow dev/mutation/mutation.sh      # the TensorFlow-only core ([tensorflow] in mutmut.cfg)
#
# Runs on the JAX backend (or TensorFlow, see above) in build/mutation/: a fresh copy of keras_calikd/, tests/
# and pyproject.toml, with dev/mutation/mutmut.cfg as setup.cfg and dev/mutation/mutation_conftest.py as conftest.py.
# Installs mutmut into the project's .venv when it is missing (or into the interpreter named by PYTHON). Prints the surviving mutants
# and the score per module (dev/mutation/mutation_score.py).
# See a mutant with `cd build/mutation && ../../.venv/bin/python -m mutmut show NAME`.
# MUTATION_JOBS sets how many mutants run at once (default: the number of cores). MUTATION_NAMES, a list of
# mutant names (or patterns), runs only those: e.g. the survivors of an earlier run, after new tests.
# Mutants listed in dev/mutation/known_mutants.tsv (equivalent, or killed outside the harness) are not run again while their
# mutation is the one listed (see dev/mutation/mutation_score.py); MUTATION_RERUN_KNOWN=1 runs them too.
set -euo pipefail
# One block, which bash reads whole before it runs any of it: an edit of this file while a run goes on (half an
# hour) does not change what the run does next.
{
cd "$(dirname "$0")/../.."
ROOT=$PWD
MUTMUT_VERSION="3.8.1"

if [ -z "${PYTHON:-}" ]; then
  source tools/env.sh
  [ -x .venv/bin/python ] || ensure_env test
  PYTHON=$ROOT/.venv/bin/python
fi
if ! "$PYTHON" -c "import mutmut, sys; sys.exit(mutmut.__version__ != '$MUTMUT_VERSION')" 2>/dev/null; then
  "$PYTHON" -m pip install -q "mutmut==$MUTMUT_VERSION"
fi

BACKEND=${MUTATION_BACKEND:-jax}
case "$BACKEND" in
  jax | tensorflow) ;;
  *) echo "error: MUTATION_BACKEND must be jax or tensorflow, not '$BACKEND'" >&2; exit 2 ;;
esac

WORK=$ROOT/build/mutation
rm -rf "$WORK"
mkdir -p "$WORK"
cp -r keras_calikd tests pyproject.toml "$WORK"/
find "$WORK" -name __pycache__ -prune -exec rm -rf {} +
cp dev/mutation/mutation_conftest.py "$WORK/conftest.py"
cp dev/mutation/mutation_score.py "$WORK/mutation_score.py"
if [ "${MUTATION_RERUN_KNOWN:-0}" = 1 ]; then
  echo '{}' > "$WORK/known_mutants.json"
else
  "$PYTHON" dev/mutation/mutation_score.py --known > "$WORK/known_mutants.json"
fi
# TensorFlow on the JAX backend too: Keras imports it on first use (keras.utils.set_random_seed, tf.data,
# saving), which took each mutant's child that did one of them 3 to 6 seconds; importing it starts no thread,
# so it forks safely.
printf '%s\n' pytest numpy scipy.stats jax tensorflow keras keras_calikd > "$WORK/preload_modules.txt"
"$PYTHON" - dev/mutation/mutmut.cfg "$WORK/setup.cfg" "$BACKEND" "$@" <<'PY'
"""Copies the configuration; for a narrowed run, only the named modules and their tests."""
import configparser
import fnmatch
import sys

source, target, backend, modules = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
config = configparser.ConfigParser(interpolation=None)
config.optionxform = str
config.read(source)
if backend == "tensorflow":  # the TensorFlow-only core, with its own tests and deselection
    for key, value in config["tensorflow"].items():
        config["mutmut"][key] = value
config.remove_section("tensorflow")
if modules:
    known = config["mutmut"]["only_mutate"].split()
    chosen = ["keras_calikd/" + m.removeprefix("keras_calikd/") for m in modules]
    unknown = [m for m in chosen if not any(fnmatch.fnmatch(m, k) for k in known)]
    if unknown:
        sys.exit(f"Not a core module of dev/mutation/mutmut.cfg: {', '.join(unknown)}")
    tests = [] if backend == "jax" else config["mutmut"]["pytest_add_cli_args_test_selection"].split()
    for module in chosen if backend == "jax" else ():
        for pattern, files in config["mutation-tests"].items():
            if fnmatch.fnmatch(module, "keras_calikd/" + pattern):
                tests += [t for t in files.split() if t not in tests]
    config["mutmut"]["only_mutate"] = "\n" + "\n".join(chosen)
    config["mutmut"]["pytest_add_cli_args_test_selection"] = "\n" + "\n".join(tests)
    print("Mutating", ", ".join(chosen), "with", ", ".join(tests))
config.remove_section("mutation-tests")
with open(target, "w") as f:
    config.write(f)
PY

cd "$WORK"
# JAX programs compiled by one mutant's tests are reused by the next ones (unless the mutant changed them),
# and compiled with XLA's optimisations off, as in the JAX pass of tools/run_tests.sh (compiling is most of
# a mutant's test time).
export KERAS_BACKEND=$BACKEND TF_CPP_MIN_LOG_LEVEL=3 PYTHONPATH= JAX_COMPILATION_CACHE_DIR=$WORK/jax-cache \
  JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0 JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES=0 \
  JAX_DISABLE_MOST_OPTIMIZATIONS=1
status=0
# shellcheck disable=SC2086  # MUTATION_NAMES is a list
"$PYTHON" -m mutmut run --max-children "${MUTATION_JOBS:-$(nproc)}" ${MUTATION_NAMES:-} || status=$?
echo "Surviving mutants:"
"$PYTHON" -m mutmut results || true
"$PYTHON" "$ROOT/dev/mutation/mutation_score.py" mutants || status=$?
exit $status
}
