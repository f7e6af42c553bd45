#!/usr/bin/env bash
# The lowest versions pyproject.toml allows: installs them into a separate virtual environment and trains a small
# Distiller on the TensorFlow and the JAX backend (dev/lowest_versions_fit.py). A documented job, run by hand when
# the dependency range changes (it downloads about 1 GB); its last result is recorded in docs/testing.md.
#
#   bash dev/lowest_versions.sh                 # build/lowest-venv, then the fit on both backends
#   LOWEST_VENV=/tmp/venv bash dev/lowest_versions.sh
#
# The pins below are pyproject.toml's lower bounds; keep them equal to them. One more pin is not a bound of
# pyproject.toml: pip resolves tensorflow-datasets' tensorflow-metadata to its newest release, whose generated
# code needs protobuf 6, which TensorFlow 2.19 does not allow (it pins protobuf < 6); 1.16.1 is the last before.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${LOWEST_VENV:-build/lowest-venv}
PINS=("keras==3.10.0" "tensorflow==2.19.0" "tensorflow-datasets==4.9.3" "gin-config==0.5.0" "matplotlib==3.8.4"
      "jax==0.4.30" "jaxlib==0.4.30" "importlib_resources" "tensorboard" "tensorflow-metadata==1.16.1")
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "${PINS[@]}"
"$VENV/bin/python" -m pip install -q --no-deps -e .
"$VENV/bin/python" -m pip freeze | grep -iE "^(keras|tensorflow|tensorflow-datasets|tensorflow-metadata|protobuf|jax|jaxlib|numpy|gin-config|matplotlib)=="
status=0
for backend in tensorflow jax; do
  echo "=== $backend"
  KERAS_BACKEND=$backend TF_CPP_MIN_LOG_LEVEL=3 "$VENV/bin/python" dev/lowest_versions_fit.py || status=1
done
exit $status
