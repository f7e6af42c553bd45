#!/usr/bin/env bash
# The quickstart: installs keras_calikd into .venv, gets Fashion-MNIST (Debian's dataset-fashion-mnist,
# when missing and running as root), then trains a teacher, a student from scratch and four distilled
# students, and prints the report table. Extra arguments go to tools/quickstart.py.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/env.sh
ensure_fashion_mnist
ensure_env
KERAS_BACKEND=${KERAS_BACKEND:-tensorflow} TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python tools/quickstart.py "$@"
