"""Starts `calikd-train` once per kill point, each start killed with SIGKILL inside one file write.

    python tests/kill_inside_write.py POINTS -- <calikd-train arguments>

POINTS is a JSON list of kill points `[FILE, N, MOMENT]`, run one after the other with the same arguments
(each start resumes what the previous one left): FILE is the base name of a file or folder the run writes
(`state.npz`, `best.keras`, `saved_model`, ...), N which write of it in that start (1 = the first), MOMENT
where in the write: `before_rename` (the new content is complete under its temporary name, nothing is
renamed yet) or `after_aside` (a folder's old version was moved aside and the new one is not in place yet).
FILE `-` means a start that is not killed.

This process imports the training tool once and forks one child per start, so that the chain does not pay
for a TensorFlow import per start. It runs no computation itself (a child forked from a process whose
runtime has started threads could hang), and prints one JSON line per start: its point and how it ended
(`{"point": [...], "status": exit status, or minus the number of the signal that ended it}`). It stops
at the first start that did not end as its point says (killed, or exited 0 for `-`).
"""

import json
import os
import signal
import sys


def install_kill(target: str, nth: int, moment: str) -> None:
    """Makes `os.replace` kill this process at the `nth` write of `target`, at `moment`."""
    real_replace = os.replace
    seen = {"count": 0}

    def replace(src, dst, *args, **kwargs):
        if moment == "before_rename" and os.path.basename(dst) == target:
            seen["count"] += 1
            if seen["count"] == nth:
                os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst, *args, **kwargs)
        if moment == "after_aside" and os.path.basename(src) == target and os.path.basename(dst) == "item":
            seen["count"] += 1
            if seen["count"] == nth:
                os.kill(os.getpid(), signal.SIGKILL)

    os.replace = replace


def start(point, train) -> int:
    """Runs `train()` in a forked child killed at `point`; returns its exit status, or minus the ending signal."""
    sys.stdout.flush(), sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            if point[0] != "-":
                install_kill(*point)
            status = train()
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os._exit(status)
    _, wait_status = os.waitpid(pid, 0)
    return -os.WTERMSIG(wait_status) if os.WIFSIGNALED(wait_status) else os.WEXITSTATUS(wait_status)


def main(argv) -> int:
    points, args = json.loads(argv[0]), argv[argv.index("--") + 1:]
    from keras_calikd.cli import common, train  # imported once, before the first fork

    for point in points:
        status = start(point, lambda: common.run(train.main, args))
        print(json.dumps({"point": point, "status": status}), flush=True)
        if status != (0 if point[0] == "-" else -signal.SIGKILL):
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
