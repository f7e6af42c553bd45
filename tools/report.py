#!/usr/bin/env python
"""Collects finished runs into the paper's tables: `calikd-report` from a checkout (see keras_calikd/cli/report.py)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from keras_calikd.cli.report import console  # noqa: E402

if __name__ == "__main__":
    sys.exit(console())
