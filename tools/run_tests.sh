#!/usr/bin/env bash
# Installs keras_calikd with its test dependencies into .venv and runs the whole test suite,
# once on the TensorFlow backend and once on the JAX backend, two test processes at a time (one per core).
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/env.sh
ensure_fashion_mnist
ensure_env test

# Tests marked backend_neutral (data pipelines, files, tools, reports, packaging: code no Keras backend reaches)
# run once, in the TensorFlow pass. Tests marked jax_pass (whole runs whose TensorFlow case another test covers)
# run in the JAX pass only.
# One JAX compilation cache for the run (the test processes and the processes they start compile the same
# small programs many times); emptied at the start and removed at the end.
JAX_CACHE=$PWD/build/test-jax-cache
rm -rf "$JAX_CACHE"
trap 'rm -rf "$JAX_CACHE"' EXIT
export JAX_COMPILATION_CACHE_DIR=$JAX_CACHE JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0 \
  JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES=0

# The JAX pass compiles with XLA's optimisation passes off (`jax_disable_most_optimizations`): the tests'
# programs are small and run a few steps, so compiling them is most of their time, and unoptimised they
# compile in about half of it. The results do not depend on it: every test compares against references at
# tolerances above float32 rounding, and the programs compared with each other are compiled alike.
# `--dist loadgroup`: tests of one `xdist_group` share a worker (and the run their shared fixture trains).
status=0
echo "=== tests on the tensorflow backend ==="
KERAS_BACKEND=tensorflow TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python -m pytest -q -n 2 --dist loadgroup -m "not jax_pass" "$@" \
  || status=1
echo "=== tests on the jax backend ==="
KERAS_BACKEND=jax TF_CPP_MIN_LOG_LEVEL=3 JAX_DISABLE_MOST_OPTIMIZATIONS=1 \
  .venv/bin/python -m pytest -q -n 2 --dist loadgroup -m "not backend_neutral" "$@" || status=1
exit $status
