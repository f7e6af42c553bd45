#!/usr/bin/env bash
# Installs keras_calikd with its test dependencies into .venv and runs the whole test suite,
# once on the TensorFlow backend and once on the JAX backend, two test processes at a time (one per core).
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/env.sh
ensure_fashion_mnist
ensure_env test

status=0
for backend in tensorflow jax; do
  echo "=== tests on the ${backend} backend ==="
  KERAS_BACKEND=$backend TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python -m pytest -q -n 2 "$@" || status=1
done
exit $status
