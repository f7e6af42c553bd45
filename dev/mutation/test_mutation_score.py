"""dev/mutation/mutation_score.py: the score per module of a mutmut run, net of the known mutants it lists.

Also dev/mutation/mutation_conftest.py, which skips the listed mutants whose mutation is unchanged.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest

# Backend-neutral: tools/run_tests.sh runs this module once, in its TensorFlow pass.
pytestmark = pytest.mark.backend_neutral

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("mutation_score", os.path.join(HERE, "mutation_score.py"))
mutation_score = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mutation_score)

HEADER = "# The known mutants.\nname\tfingerprint\tstatus\twhy\n"
KNOWN = HEADER + """m.x_f__mutmut_3\t\tequivalent\tan equivalent survivor.
m.x_f__mutmut_4\t\tequivalent\tlisted as equivalent, but a test kills it.
m.x_f__mutmut_5\t\tkilled_outside_the_harness\t`test_something` fails when it is applied by hand.
"""

# A module as mutmut generates it: the original function and its mutants side by side.
MODULE = """
def x_f__mutmut_orig(x, axis=-1):
    y = x + 1
    return y * 2


def x_f__mutmut_1(x, axis=-1):
    y = x - 1
    return y * 2


def x_f__mutmut_2(x, axis=-1):
    y = x + 1
    return y / 2


def x_f__mutmut_3(x, axis=None):
    y = x + 1
    return y * 2
"""


def test_the_score_leaves_out_equivalent_mutants_and_counts_those_killed_outside_the_harness(tmp_path, capsys):
    known = tmp_path / "known_mutants.tsv"
    known.write_text(KNOWN, encoding="utf-8")
    mutants = tmp_path / "mutants" / "pkg"
    mutants.mkdir(parents=True)
    # mutmut's exit codes: 1 killed, 0 survived, 24 timeout (broken), None not run
    codes = {"m.x_f__mutmut_1": 1, "m.x_f__mutmut_2": 0, "m.x_f__mutmut_3": 0, "m.x_f__mutmut_4": 1,
             "m.x_f__mutmut_5": 0, "m.x_f__mutmut_6": 24, "m.x_f__mutmut_7": None}
    (mutants / "m.py.meta").write_text(json.dumps({"exit_code_by_key": codes}))

    assert mutation_score.listed_mutants(known) == ({"m.x_f__mutmut_3": None, "m.x_f__mutmut_4": None},
                                                    {"m.x_f__mutmut_5": None})
    assert mutation_score.main(["mutation_score.py", str(tmp_path / "mutants")], listing=known) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("pkg/m.py")).split()
    # killed 1, 4 and 5; broken 6; survived 2; equivalent 3; not run 7: (3 + 1) / (7 - 1)
    assert row[1:] == ["7", "3", "1", "1", "1", "1", "66.7%"]
    assert "Listed as equivalent in known_mutants.tsv but killed: m.x_f__mutmut_4" in out
    (tmp_path / "bad.tsv").write_text(HEADER + "m.x_f__mutmut_3\tequivalent\n", encoding="utf-8")
    with pytest.raises(ValueError, match="bad.tsv: mutant line 1 must be name, fingerprint"):
        mutation_score.listed_mutants(tmp_path / "bad.tsv")


def test_a_fingerprint_names_the_mutation_not_the_mutants_number(tmp_path):
    (tmp_path / "m.py").write_text(MODULE)
    prints = [mutation_score.fingerprint(tmp_path, f"m.x_f__mutmut_{i}") for i in (1, 2, 3)]
    assert all(p is not None and len(p) == 8 for p in prints) and len(set(prints)) == 3
    # the same mutation under another number, in a function with a new line below it: the same fingerprint
    renumbered = MODULE.replace("_mutmut_1(", "_mutmut_7(").replace("return y", "z = 0\n    return y")
    (tmp_path / "m.py").write_text(renumbered)
    assert mutation_score.fingerprint(tmp_path, "m.x_f__mutmut_7") == prints[0]
    # the same change, one line lower in the function: another fingerprint (the function changed around it)
    (tmp_path / "m.py").write_text(MODULE.replace("    y = x", "    w = 0\n    y = x"))
    assert mutation_score.fingerprint(tmp_path, "m.x_f__mutmut_1") not in (None, prints[0])
    assert mutation_score.fingerprint(tmp_path, "m.x_f__mutmut_9") is None
    assert mutation_score.fingerprint(tmp_path, "other.x_f__mutmut_1") is None


def test_a_listing_whose_mutation_changed_does_not_count_and_skipped_mutants_take_their_listing(tmp_path, capsys):
    (tmp_path / "mutants").mkdir()
    (tmp_path / "mutants" / "m.py").write_text(MODULE)
    one, three = (mutation_score.fingerprint(tmp_path / "mutants", f"m.x_f__mutmut_{i}") for i in (1, 3))
    known = tmp_path / "known_mutants.tsv"
    known.write_text(HEADER + f"""m.x_f__mutmut_3\t{three}\tequivalent\tequivalent, and skipped by the harness.
m.x_f__mutmut_2\t{one}\tequivalent\tlisted for the mutation that is now mutant 1.
m.x_f__mutmut_1\t{one}\tkilled_outside_the_harness\t`test_something` fails when it is applied by hand.
""", encoding="utf-8")
    assert mutation_score.listed_mutants(known) == ({"m.x_f__mutmut_3": three, "m.x_f__mutmut_2": one},
                                                  {"m.x_f__mutmut_1": one})
    # 34: mutmut's "skipped", which the harness gives a listed mutant; mutant 2 survived
    codes = {"m.x_f__mutmut_1": 34, "m.x_f__mutmut_2": 0, "m.x_f__mutmut_3": 34}
    (tmp_path / "mutants" / "m.py.meta").write_text(json.dumps({"exit_code_by_key": codes}))
    assert mutation_score.main(["mutation_score.py", str(tmp_path / "mutants")], listing=known) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("m.py")).split()
    # killed 1 (outside the harness); survived 2 (its listing is stale); equivalent 3: 1 / (3 - 1)
    assert row[1:] == ["3", "1", "0", "1", "1", "0", "50.0%"]
    assert f"its fingerprint is now {mutation_score.fingerprint(tmp_path / 'mutants', 'm.x_f__mutmut_2')}): " \
           "m.x_f__mutmut_2" in out
    assert mutation_score.main(["mutation_score.py", "--known", str(tmp_path / "mutants")], listing=known) == 0
    assert json.loads(capsys.readouterr().out) == {"m.x_f__mutmut_3": three, "m.x_f__mutmut_2": one,
                                                   "m.x_f__mutmut_1": one}


def test_the_harness_skips_a_listed_mutant_while_its_mutation_is_the_listed_one(tmp_path):
    mutants = tmp_path / "mutants"
    mutants.mkdir()
    shutil.copy(os.path.join(HERE, "mutation_conftest.py"), mutants / "conftest.py")
    shutil.copy(os.path.join(HERE, "mutation_score.py"), mutants / "mutation_score.py")
    (mutants / "m.py").write_text(MODULE)
    (mutants / "test_m.py").write_text("def test_fails():\n    assert False\n")
    listed = mutation_score.fingerprint(mutants, "m.x_f__mutmut_3")
    (mutants / "known_mutants.json").write_text(json.dumps({"m.x_f__mutmut_3": listed,
                                                            "m.x_f__mutmut_2": listed}))

    def status(mutant):
        env = dict(os.environ, MUTANT_UNDER_TEST=mutant)
        return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                               "test_m.py"], cwd=mutants, env=env, capture_output=True, text=True).returncode

    assert status("m.x_f__mutmut_3") == mutation_score.KNOWN  # listed, the same mutation: not run
    assert status("m.x_f__mutmut_2") == 1  # listed with mutant 3's fingerprint: run, and the test fails
    assert status("m.x_f__mutmut_1") == 1  # not listed
    times = (tmp_path / "mutant_times.tsv").read_text().splitlines()
    # name, seconds, exit status, tests run, the test that failed first
    rows = [line.split("\t") for line in times]
    assert [row[:1] + row[2:] for row in rows] == [["m.x_f__mutmut_3", "34", "0", ""],
                                                  ["m.x_f__mutmut_2", "1", "1", "test_m.py::test_fails"],
                                                  ["m.x_f__mutmut_1", "1", "1", "test_m.py::test_fails"]]


def test_the_harness_runs_first_the_tests_that_killed_the_functions_other_mutants(tmp_path):
    mutants = tmp_path / "mutants"
    mutants.mkdir()
    shutil.copy(os.path.join(HERE, "mutation_conftest.py"), mutants / "conftest.py")
    shutil.copy(os.path.join(HERE, "mutation_score.py"), mutants / "mutation_score.py")
    (mutants / "known_mutants.json").write_text("{}")
    (mutants / "test_m.py").write_text("def test_fast():\n    pass\n\n\ndef test_slow():\n    assert False\n")
    # mutmut's first run measured the tests; the slower one killed mutant 1 of f earlier in this run, which
    # halves its weight for f's mutants: 0.8 / 2 against 0.5
    durations = {"test_m.py::test_fast": 0.5, "test_m.py::test_slow": 0.8}
    (mutants / "mutmut-stats.json").write_text(json.dumps({"duration_by_test": durations}))
    (tmp_path / "mutant_times.tsv").write_text("m.x_f__mutmut_1\t1.00\t1\t2\ttest_m.py::test_slow\n")

    def tests_run(mutant):
        env = dict(os.environ, MUTANT_UNDER_TEST=mutant)
        subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                        "test_m.py"], cwd=mutants, env=env, capture_output=True, text=True)
        return (tmp_path / "mutant_times.tsv").read_text().splitlines()[-1].split("\t")[3:]

    assert tests_run("m.x_f__mutmut_2") == ["1", "test_m.py::test_slow"]  # f's killer first
    assert tests_run("m.x_g__mutmut_1") == ["2", "test_m.py::test_slow"]  # another function: fastest first
    assert tests_run("m.x_f__mutmut_3") == ["1", "test_m.py::test_slow"]  # two kills of f now


def test_the_project_s_list_of_known_mutants_reads():
    equivalent, killed_outside = mutation_score.listed_mutants()
    assert len(equivalent) > 100 and len(killed_outside) >= 2
    assert all(name.startswith("keras_calikd.") and len(listed) == 8 for name, listed in {**equivalent,
                                                                                          **killed_outside}.items())
