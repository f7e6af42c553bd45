"""Finding finished runs' `results.json` files, each checked to have a run's shape (for `calikd-report`)."""

from __future__ import annotations

import json
import os
import re
from typing import List, Optional, Sequence

from keras_calikd.files import RUN_MARKER
from keras_calikd.training.run_folder import is_finished


def find_results(paths: Sequence[str], skipped: Optional[list] = None) -> List[dict]:
    """Loads every finished run's `results.json` under `paths` (folders are searched recursively).

    A run folder whose `run.json` says it has not finished (it is being
    continued with more epochs, or was stopped) is left out: its
    `results.json`, if any, is from its earlier end.

    Args:
        paths: Run folders, folders of runs, or `results.json` files.
        skipped: A list that receives the folders of the unfinished runs left out.

    Returns:
        The parsed results, in path order.

    Raises:
        ValueError: for a path that does not exist, or a file that is not a run's results (not valid JSON, not
            an object, or without the keys and numbers of one).

    Example:

    ```python
    results = find_results(["runs/cifar100"])
    ```
    """
    found = []
    for path in paths:
        if not os.path.exists(path):
            raise ValueError(f"{path!r} does not exist; pass run folders or results.json files.")
        if os.path.isfile(path):
            candidates = [path]
        else:
            candidates = [os.path.join(folder, "results.json") for folder, _, files in os.walk(path)
                          if "results.json" in files]
        for candidate in sorted(candidates):
            folder = os.path.dirname(os.path.abspath(candidate))  # a results.json outside a run counts as finished
            if os.path.isfile(os.path.join(folder, RUN_MARKER)) and not is_finished(folder):
                if skipped is not None:
                    skipped.append(os.path.dirname(candidate))
                continue
            try:
                with open(candidate) as f:
                    found.append(_checked_result(candidate, json.load(f)))
            except json.JSONDecodeError as error:
                raise ValueError(f"{candidate} is not valid JSON ({error.msg}, line {error.lineno}); "
                                 "rerun that run or remove the file.") from None
    return found


RESULT_KEYS, ROLES = ("name", "dataset", "role", "model", "accuracy"), ("teacher", "student", "distilled")
_NUMBER_KEY = re.compile(r"^(accuracy|(ece|oe|mce|adaptive_ece|classwise_ece)_\d+)$")  # what each run's holds


def _checked_result(path: str, result) -> dict:
    """`result` if it has the shape of a run's results.json, else a ValueError naming what is wrong."""
    problem = None
    if not isinstance(result, dict):
        problem = f"a JSON {type(result).__name__}, not an object"
    elif [key for key in RESULT_KEYS if key not in result]:
        problem = "no " + ", ".join(key for key in RESULT_KEYS if key not in result)
    elif result["role"] not in ROLES:
        problem = f"role {result['role']!r}, not one of {', '.join(ROLES)}"
    else:
        bad = [key for key, value in result.items() if _NUMBER_KEY.match(key)
               and (isinstance(value, bool) or not isinstance(value, (int, float)))]
        problem = f"{bad[0]} is {result[bad[0]]!r}, not a number" if bad else None
    if problem:
        raise ValueError(f"{path} is not a run's results.json ({problem}); rerun that run, or leave the file out.")
    return result
