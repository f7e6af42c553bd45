#!/usr/bin/env python
"""Trains a run as gin files decide: `calikd-train` from a checkout (see keras_calikd/cli/train.py)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from keras_calikd.cli.train import console  # noqa: E402

if __name__ == "__main__":
    sys.exit(console())
