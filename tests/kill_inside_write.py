"""Runs `calikd-train` and kills itself with SIGKILL inside one file write (for the crash-consistency tests).

    python tests/kill_inside_write.py FILE N MOMENT -- <calikd-train arguments>

FILE is the base name of a file or folder the run writes (`state.npz`, `best.keras`, `saved_model`, ...),
N which write of it (1 = the first), MOMENT where in the write: `before_rename` (the new content is
complete under its temporary name, nothing is renamed yet) or `after_aside` (a folder's old version was
moved aside and the new one is not in place yet). Without FILE (`-`), the run is not killed.
"""

import os
import signal
import sys

TARGET, NTH, MOMENT = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ARGS = sys.argv[sys.argv.index("--") + 1:]
_real_replace = os.replace
_seen = {"count": 0}


def replace(src, dst, *args, **kwargs):
    if MOMENT == "before_rename" and os.path.basename(dst) == TARGET:
        _seen["count"] += 1
        if _seen["count"] == NTH:
            os.kill(os.getpid(), signal.SIGKILL)
    _real_replace(src, dst, *args, **kwargs)
    if MOMENT == "after_aside" and os.path.basename(src) == TARGET and os.path.basename(dst) == "item":
        _seen["count"] += 1
        if _seen["count"] == NTH:
            os.kill(os.getpid(), signal.SIGKILL)


if TARGET != "-":
    os.replace = replace

from keras_calikd.cli import common, train  # noqa: E402

sys.exit(common.run(train.main, ARGS))
