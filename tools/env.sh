# Sourced by tools/quickstart.sh and tools/run_tests.sh: the project's virtual environment and data.
# `ensure_env [EXTRAS]` creates .venv (once) and installs keras_calikd, with those extras, into it.

# uv does not compile the installed modules' bytecode; Python compiles and caches what it imports the first
# time. Where the environment sets PYTHONDONTWRITEBYTECODE, nothing would be cached and every process of a run
# would compile TensorFlow's and JAX's modules again (measured: the test suite's TensorFlow pass
# 756 s instead of 620 s).
# Caching only what is imported is cheaper than compiling everything at install (`--compile-bytecode`: 64 s
# instead of 23 s for the test extras).
unset PYTHONDONTWRITEBYTECODE

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
  # uv installs the same packages as pip (the same versions, checked with `pip freeze`), faster: on a fresh
  # .venv with the test extras, on this project's 2-core machine, 23 s against pip's 99 s (64 s with uv when it
  # compiles all bytecode, as pip does). pip remains the fallback where uv cannot be installed or fails.
  if .venv/bin/python -m pip install -q "uv==0.13.9" \
      && .venv/bin/python -m uv pip install -q --python .venv/bin/python -e ".${1:+[$1]}"; then
    return
  fi
  echo "uv failed; installing with pip" >&2
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".${1:+[$1]}"
}
