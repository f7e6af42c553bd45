#!/usr/bin/env python
"""Times whole epochs of `Distiller.fit`: a shim of `keras_calikd.cli.benchmark_fit` (see its docstring)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from keras_calikd.cli.benchmark_fit import console  # noqa: E402

if __name__ == "__main__":
    sys.exit(console())
