#!/usr/bin/env python
"""Exports a trained model as a SavedModel: `calikd-export` from a checkout (see keras_calikd/cli/export.py)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from keras_calikd.cli.export import console  # noqa: E402

if __name__ == "__main__":
    sys.exit(console())
