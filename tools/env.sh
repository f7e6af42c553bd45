# Sourced by tools/quickstart.sh and tools/run_tests.sh: the project's virtual environment and data.
# `ensure_env [EXTRAS]` creates .venv (once) and installs keras_calikd, with those extras, into it.

ensure_fashion_mnist() {
  # Debian's Fashion-MNIST files, installed when missing and running as root (no other download is needed).
  if [ ! -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ] && [ "$(id -u)" = 0 ]; then
    apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null; }
  fi
}

ensure_env() {
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
  fi
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".${1:+[$1]}"
}
