#!/usr/bin/env python
"""The quickstart study (see keras_calikd/cli/quickstart.py); `bash tools/quickstart.sh` installs first."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from keras_calikd.cli.quickstart import console  # noqa: E402

if __name__ == "__main__":
    sys.exit(console())
