#!/usr/bin/env bash
# Installs keras_calikd with its test dependencies into .venv and runs the whole test suite,
# once on the TensorFlow backend and once on the JAX backend. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian's Fashion-MNIST files: the data tests read them (installed when missing and running as root).
if [ ! -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ] && [ "$(id -u)" = 0 ]; then
  apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null; }
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"

status=0
for backend in tensorflow jax; do
  echo "=== tests on the ${backend} backend ==="
  KERAS_BACKEND=$backend TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python -m pytest -q "$@" || status=1
done
exit $status
