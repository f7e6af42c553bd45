#!/usr/bin/env python
"""Evaluates trained models: `calikd-evaluate` from a checkout (see keras_calikd/cli/evaluate.py)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from keras_calikd.cli.evaluate import console  # noqa: E402

if __name__ == "__main__":
    sys.exit(console())
