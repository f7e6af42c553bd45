"""Mutation score per module from a mutmut run (tools/mutation.sh), net of the documented equivalent mutants.

Usage: python tools/mutation_score.py [MUTANTS_DIR]   (default: build/mutation/mutants)

Reads mutmut's per-module result files (`<module>.py.meta`) and the list of
equivalent mutants in docs/testing.md (lines "- `<mutant name>`: why"), and
prints per module: mutants; killed (a test failed); broken (the tests could
not run: a timeout, or an error such as a test module that no longer imports;
mutmut files both as "timeout"); survived; equivalent (survivors listed in
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
EQUIVALENT = re.compile(r"^- `([\w.ǁ]+__mutmut_\d+)`")
# mutmut's exit codes of a mutant's test run.
STATUS = {1: "killed", 3: "killed", 0: "survived", 36: "broken", 24: "broken", -24: "broken", 152: "broken",
          255: "broken", -9: "broken", -11: "broken"}


def equivalent_mutants(doc=ROOT / "docs" / "testing.md"):
    if not doc.exists():
        return set()
    return {m.group(1) for line in doc.read_text(encoding="utf-8").splitlines() if (m := EQUIVALENT.match(line))}


def main(argv):
    mutants = pathlib.Path(argv[1] if len(argv) > 1 else ROOT / "build" / "mutation" / "mutants")
    equivalent = equivalent_mutants()
    rows, wrongly_equivalent = [], []
    for meta in sorted(mutants.rglob("*.py.meta")):
        module = meta.relative_to(mutants).as_posix()[:-len(".meta")]
        results = json.loads(meta.read_text())["exit_code_by_key"]
        if not results:
            continue
        counts = Counter()
        for name, code in results.items():
            status = STATUS.get(code, "not run")
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
