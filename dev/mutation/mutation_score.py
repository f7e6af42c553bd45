"""Mutation score per module from a mutmut run (dev/mutation/mutation.sh), net of the known equivalent mutants.

Usage: python dev/mutation/mutation_score.py [MUTANTS_DIR]   (default: build/mutation/mutants)

Reads mutmut's per-module result files (`<module>.py.meta`) and the known
mutants of `dev/mutation/known_mutants.tsv` (name, fingerprint, status, why): the
`equivalent` ones, and those `killed_outside_the_harness` (survivors only
because of how the harness runs, each killed by a named test when applied to
the code by hand), and prints per module: mutants; killed (a test failed);
broken (the tests could not run: a timeout, or an error such as a test module
that no longer imports; mutmut files both as "timeout"); survived; equivalent
(survivors listed as such); not run (no test reaches the mutant, or mutmut did
not get to it); and the score = (killed + broken) / (mutants - equivalent).
Equivalent mutants that were killed after all are reported, so that the list
stays true.

Each listed mutant carries a fingerprint of its mutation: a hash of the lines
it changes in its function and of where they are (`fingerprint`). mutmut
numbers the mutants of a function in order, so after a change to the function
a name can stand for another mutation; a listing whose fingerprint no longer
matches is reported as stale and does not count. Listed mutants whose
fingerprint matches are not run again (`dev/mutation/mutation_conftest.py`
skips them: their result is known), which saves a run the time they would
take: an equivalent mutant runs every test that reaches its function.

    python dev/mutation/mutation_score.py [MUTANTS_DIR]          # the scores
    python dev/mutation/mutation_score.py --known [MUTANTS_DIR]  # {name: fingerprint} of the listed mutants (JSON)
"""

from __future__ import annotations

import ast
import difflib
import functools
import hashlib
import json
import pathlib
import sys
from collections import Counter

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
KNOWN_MUTANTS = pathlib.Path(__file__).resolve().parent / "known_mutants.tsv"
STATUSES = ("equivalent", "killed_outside_the_harness")  # the second: survivors only the harness cannot see
# mutmut's exit codes of a mutant's test run.
KNOWN = 34  # mutmut's "skipped": the exit status of a listed mutant that the harness did not run again
STATUS = {1: "killed", 3: "killed", 0: "survived", 36: "broken", 24: "broken", -24: "broken", 152: "broken",
          255: "broken", -9: "broken", -11: "broken", KNOWN: "known"}


def fingerprint(mutants, name):
    """8 hex digits that identify mutant `name`'s mutation, or None where `mutants` does not hold it.

    A hash of the lines that differ between the mutant and the original function in
    mutmut's generated module under `mutants`, and of where they are in the function: the
    same mutation of the same lines gives the same fingerprint whatever the mutant's number
    and whatever changes in the function below them.
    """
    module, function = name.rsplit(".", 1)
    original = function.rsplit("__mutmut_", 1)[0] + "__mutmut_orig"
    path = pathlib.Path(mutants, *module.split("."))
    functions = _functions(path.with_suffix(".py") if path.with_suffix(".py").exists() else path / "__init__.py")
    if original not in functions or function not in functions:
        return None
    bodies = [functions[f].replace(f, "f", 1) for f in (original, function)]  # the same name in both
    changed = list(difflib.unified_diff(*(b.splitlines() for b in bodies), lineterm="", n=0))[2:]
    return hashlib.sha256("\n".join(changed).encode()).hexdigest()[:8]  # the changed lines and where they are


def _functions(path):
    """`{name: source}` of every function in the module at `path`, as `ast.get_source_segment` gives it."""
    try:
        return _functions_of(path.read_text(encoding="utf-8"))
    except OSError:
        return {}


@functools.lru_cache(maxsize=None)
def _functions_of(source):
    """`_functions` of a module's text, parsed once per text (the score looks up many mutants of one module)."""
    lines = [line.encode() for line in source.splitlines(keepends=True)]  # AST offsets count UTF-8 bytes
    functions = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            text = lines[node.lineno - 1:node.end_lineno]
            text[-1] = text[-1][:node.end_col_offset]
            text[0] = text[0][node.col_offset:]
            functions[node.name] = b"".join(text).decode()
    return functions


def listed_mutants(known=KNOWN_MUTANTS):
    """The mutants listed in `known` (a TSV file): `(equivalent, killed outside the harness)`, by their status.

    Returns:
        Two dicts `{name: fingerprint}` (the fingerprint None where the listing gives none).

    Raises:
        ValueError: a line with another number of fields or an unknown status, naming the line.
    """
    equivalent, killed = {}, {}
    lines = pathlib.Path(known).read_text(encoding="utf-8").splitlines() if pathlib.Path(known).exists() else []
    rows = [line for line in lines if line.strip() and not line.startswith("#")][1:]  # after the header
    for number, line in enumerate(rows, 1):
        fields = line.split("\t")
        if len(fields) != 4 or fields[2] not in STATUSES:
            raise ValueError(f"{known}: mutant line {number} must be name, fingerprint, one of {STATUSES} and why, "
                             f"separated by tabs; got {line!r}")
        name, listed, status, _ = fields
        (killed if status == STATUSES[1] else equivalent)[name] = listed or None
    return equivalent, killed


def main(argv, listing=KNOWN_MUTANTS):
    known = argv[1:2] == ["--known"]
    argv = [argv[0]] + argv[1 + known:]
    mutants = pathlib.Path(argv[1] if len(argv) > 1 else ROOT / "build" / "mutation" / "mutants")
    equivalent, killed_outside = listed_mutants(listing)
    if known:
        print(json.dumps({name: listed for name, listed in {**equivalent, **killed_outside}.items() if listed}))
        return 0
    stale = {name for name, listed in {**equivalent, **killed_outside}.items()
             if fingerprint(mutants, name) not in (listed, None)}
    equivalent = {name for name in equivalent if name not in stale}
    killed_outside = {name for name in killed_outside if name not in stale}
    rows, wrongly_equivalent = [], []
    for meta in sorted(mutants.rglob("*.py.meta")):
        module = meta.relative_to(mutants).as_posix()[:-len(".meta")]
        results = json.loads(meta.read_text())["exit_code_by_key"]
        if not results:
            continue
        counts = Counter()
        for name, code in results.items():
            status = STATUS.get(code, "not run")
            if name in equivalent and status in ("killed", "broken"):
                wrongly_equivalent.append(name)
            elif status in ("survived", "known") and name in killed_outside:
                status = "killed"
            elif status in ("survived", "known") and name in equivalent:
                status = "equivalent"
            elif status == "known":  # skipped under a listing that has changed since
                status = "not run"
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
        print(f"Listed as equivalent in {pathlib.Path(listing).name} but killed: {name}")
    for name in sorted(stale):
        print(f"Listed in {pathlib.Path(listing).name} with another mutation than it now stands for (check it again; its "
              f"fingerprint is now {fingerprint(mutants, name)}): {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
