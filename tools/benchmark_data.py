"""Measures the input pipelines' throughput: a shim of `keras_calikd.cli.benchmark_data` (see its docstring)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # runs from a checkout

from keras_calikd.cli.benchmark_data import console  # noqa: E402

if __name__ == "__main__":
    sys.exit(console())
