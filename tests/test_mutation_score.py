"""tools/mutation_score.py: the score per module of a mutmut run, net of the mutants docs/testing.md lists."""

import importlib.util
import json
import os

import pytest

# Backend-neutral: tools/run_tests.sh runs this module once, in its TensorFlow pass.
pytestmark = pytest.mark.backend_neutral

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
spec = importlib.util.spec_from_file_location("mutation_score", os.path.join(ROOT, "tools", "mutation_score.py"))
mutation_score = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mutation_score)

DOC = """# Testing
### Equivalent mutants
- `m.x_f__mutmut_3`: an equivalent survivor.
- `m.x_f__mutmut_4`: listed as equivalent, but a test kills it.
### Killed outside the harness
- `m.x_f__mutmut_5`: `test_something` fails when it is applied by hand.
"""


def test_the_score_leaves_out_equivalent_mutants_and_counts_those_killed_outside_the_harness(tmp_path, capsys):
    doc = tmp_path / "testing.md"
    doc.write_text(DOC, encoding="utf-8")
    mutants = tmp_path / "mutants" / "pkg"
    mutants.mkdir(parents=True)
    # mutmut's exit codes: 1 killed, 0 survived, 24 timeout (broken), None not run
    codes = {"m.x_f__mutmut_1": 1, "m.x_f__mutmut_2": 0, "m.x_f__mutmut_3": 0, "m.x_f__mutmut_4": 1,
             "m.x_f__mutmut_5": 0, "m.x_f__mutmut_6": 24, "m.x_f__mutmut_7": None}
    (mutants / "m.py.meta").write_text(json.dumps({"exit_code_by_key": codes}))

    assert mutation_score.listed_mutants(doc) == ({"m.x_f__mutmut_3", "m.x_f__mutmut_4"}, {"m.x_f__mutmut_5"})
    assert mutation_score.main(["mutation_score.py", str(tmp_path / "mutants")], doc=doc) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("pkg/m.py")).split()
    # killed 1, 4 and 5; broken 6; survived 2; equivalent 3; not run 7: (3 + 1) / (7 - 1)
    assert row[1:] == ["7", "3", "1", "1", "1", "1", "66.7%"]
    assert "Listed as equivalent in docs/testing.md but killed: m.x_f__mutmut_4" in out
