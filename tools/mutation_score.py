"""Mutation score per module from a mutmut run (tools/mutation.sh), net of the documented equivalent mutants.

Usage: python tools/mutation_score.py [MUTANTS_DIR]   (default: build/mutation/mutants)

Reads mutmut's per-module result files (`<module>.py.meta`) and the lists of
mutants in docs/testing.md (lines "- `<mutant name>`: why"): the equivalent ones, and those
under "Killed outside the harness" (survivors only because of how the harness
runs, each killed by a named test when applied to the code by hand), and
prints per module: mutants; killed (a test failed); broken (the tests could
not run: a timeout, or an error such as a test module that no longer imports;
mutmut files both as "timeout"); survived; equivalent (survivors listed as such in
docs/testing.md); not run (no test reaches the mutant, or mutmut did not get to
it); and the score = (killed + broken) / (mutants - equivalent). Equivalent
mutants that were killed after all are reported, so that the list stays true.
"""

from __future__ import annotations

import json
import pathlib
import re
import sys
from collections import Counter

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "testing.md"
LISTED = re.compile(r"^- `([\w.ǁ]+__mutmut_\d+)`")  # a listed mutant: "- `name`: why"
OUTSIDE_HARNESS = "killed outside the harness"  # the heading of the mutants that only the harness cannot see
# mutmut's exit codes of a mutant's test run.
STATUS = {1: "killed", 3: "killed", 0: "survived", 36: "broken", 24: "broken", -24: "broken", 152: "broken",
          255: "broken", -9: "broken", -11: "broken"}


def listed_mutants(doc=DOC):
    """The mutants listed in `doc`: `(equivalent, killed outside the harness)`, by the heading they are under."""
    equivalent, killed, section = set(), set(), ""
    lines = doc.read_text(encoding="utf-8").splitlines() if doc.exists() else []
    for line in lines:
        if line.startswith("#"):
            section = line.lstrip("#").strip().lower()
        elif m := LISTED.match(line):
            (killed if section == OUTSIDE_HARNESS else equivalent).add(m.group(1))
    return equivalent, killed


def main(argv, doc=DOC):
    mutants = pathlib.Path(argv[1] if len(argv) > 1 else ROOT / "build" / "mutation" / "mutants")
    equivalent, killed_outside = listed_mutants(doc)
    rows, wrongly_equivalent = [], []
    for meta in sorted(mutants.rglob("*.py.meta")):
        module = meta.relative_to(mutants).as_posix()[:-len(".meta")]
        results = json.loads(meta.read_text())["exit_code_by_key"]
        if not results:
            continue
        counts = Counter()
        for name, code in results.items():
            status = STATUS.get(code, "not run")
            if name in killed_outside and status == "survived":
                status = "killed"
            if name in equivalent:
                if status in ("killed", "broken"):
                    wrongly_equivalent.append(name)
                else:
                    status = "equivalent"
            counts[status] += 1
        total = sum(counts.values())
        scored = total - counts["equivalent"]
        score = (counts["killed"] + counts["broken"]) / scored if scored else 1.0
        rows.append((module, total, counts["killed"], counts["broken"], counts["survived"], counts["equivalent"],
                     counts["not run"], score))
    if not rows:
        print(f"No mutmut results under {mutants}.")
        return 1
    header = ("mutants", "killed", "broken", "survived", "equivalent", "not run", "score")
    print("\n" + f"{'module':42s}" + "".join(f"{h:>11s}" for h in header))
    for module, *numbers, score in rows:
        print(f"{module:42s}" + "".join(f"{n:11d}" for n in numbers) + f"{score:11.1%}")
    for name in wrongly_equivalent:
        print(f"Listed as equivalent in docs/testing.md but killed: {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
