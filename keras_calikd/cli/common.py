"""What every command-line tool shares: one parser style, a quiet console and one error style.

Every tool is a module of this package with `parser()` made by `tool_parser`
(`--snake_case` flags, comma-separated lists, `--debug`, and `--import MODULE` for
a user's module that registers custom strategies, models or layers), `main(argv) -> int`
and `console()` running it through `run`. Every anticipated failure (a bad
argument, bad configuration, missing data or teacher, a file that cannot be
read or may not be replaced, a non-finite loss, a run in use) ends the tool
with a single line `error: <what is wrong and how to fix it>` on stderr and
exit status 2; `--debug` shows the traceback instead. Framework start-up
chatter (TensorFlow's C++ logs, deprecation warnings) is filtered unless
`--debug` is given.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
import warnings
from typing import Callable, Sequence

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


class ToolParser(argparse.ArgumentParser):
    """An argument parser whose errors raise `ValueError`: `run` prints them as one `error:` line (exit status 2)."""

    def error(self, message):
        raise ValueError(f"{message} (see {self.prog} --help)")


def tool_parser(prog: str, description: str, **kwargs) -> ToolParser:
    """The parser of a tool: its usage text is the module's docstring, printed as written.

    Example:

    ```python
    parser = tool_parser("calikd-report", __doc__)
    parser.add_argument("--bins", type=int, default=100)
    add_debug_flag(parser)
    ```
    """
    parser = ToolParser(prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter,
                        **kwargs)
    parser.add_argument(
        "--import", dest="imports", action=ImportModule, default=[], metavar="MODULE",
        help="import a module of your own first, a module name (found in the current folder or on the Python "
             "path) or a .py file: the module that registers your strategies, models or layers, for gin files "
             "and saved models that use them; repeat it for several modules")
    return parser


class ImportModule(argparse.Action):
    """`--import MODULE`: imports the module as the arguments are read, before a tool parses gin or loads a model."""

    def __call__(self, parser, namespace, value, option_string=None):
        import_user_module(value)
        getattr(namespace, self.dest).append(value)


def import_user_module(name: str):
    """Imports `name`, a module name (found in the current folder or on the Python path) or a `.py` file's path.

    Raises:
        ValueError: the module cannot be found, or importing it failed (the cause is chained: `--debug`).
    """
    import importlib
    import importlib.util
    import os

    is_file = name.endswith(".py")
    if is_file and not os.path.isfile(name):
        raise ValueError(f"--import {name}: no such file.")
    try:
        if is_file:
            spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(name))[0], name)
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
            return module
        if os.getcwd() not in sys.path and "" not in sys.path:  # a console script's path lacks the current folder
            sys.path.append(os.getcwd())
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if not is_file and (error.name == name or name.startswith(f"{error.name}.")):
            raise ValueError(f"--import {name}: no module named {name!r} in the current folder or on the Python "
                             "path; run the tool from the folder that holds it, add that folder to PYTHONPATH, or "
                             "give the path of its .py file.") from None
        raise ValueError(f"--import {name}: importing it failed: {error}") from error
    except Exception as error:
        raise ValueError(f"--import {name}: importing it failed ({type(error).__name__}: {error}); --debug shows "
                         "where.") from error


def comma_list(kind=str):
    """An argparse `type` for a comma-separated list, e.g. `--batch_sizes 64,256` (`kind` converts each item)."""
    def parse(text):
        try:
            return [kind(item) for item in text.split(",") if item]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__} values, got {text!r}") from None

    return parse


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true",
                        help="show framework logs, and a traceback instead of the one-line error")


def quiet_frameworks() -> None:
    """Keeps the frameworks' warnings and logs out of the console (their start-up lines: `keras_calikd.quiet`)."""
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", module="tensorflow_datasets")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    try:
        from absl import logging as absl_logging  # TensorFlow logs through absl (e.g. when loading a SavedModel)

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:
        pass


def _anticipated() -> tuple:
    """The exception types whose message is the whole story (anything else is a bug: traceback)."""
    types = [ValueError, OSError, RuntimeError, KeyboardInterrupt, FloatingPointError]
    if "tensorflow" in sys.modules:  # errors raised inside tf.data pipelines (the data checks' messages)
        import tensorflow as tf

        types += [tf.errors.InvalidArgumentError, tf.errors.DataLossError, tf.errors.NotFoundError]
    return tuple(types)


def _one_line(error: BaseException) -> str:
    from keras_calikd.checks import pipeline_check_message

    # A data check inside a tf.data pipeline (the tools' own pipelines): its sentence, without TF's graph dump.
    message = pipeline_check_message(error) or getattr(error, "message", None) or str(error) or type(error).__name__
    return " ".join(message.split())


def run(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Runs a tool's `main(argv)` with the shared console and error style; returns its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if not debug:
        quiet_frameworks()
    try:
        _check_working_folder()
        return main(argv)
    except KeyboardInterrupt:
        if debug:
            raise
        print("error: interrupted; run the same command again to resume.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except _anticipated() as error:
        if debug:
            traceback.print_exc()
        else:
            print(f"error: {_one_line(error)}", file=sys.stderr)
        _end_if_job_lost(error)
        return EXIT_ERROR


def _check_working_folder() -> None:
    try:
        os.getcwd()
    except FileNotFoundError:
        raise FileNotFoundError("the working folder no longer exists (it was deleted or moved): change into an "
                                "existing folder (cd) and run the command again.") from None


def _end_if_job_lost(error: BaseException) -> None:
    """A process whose multi-process job lost a member ends at once (see `distribution.end_process`)."""
    distribution = sys.modules.get("keras_calikd.training.distribution")  # loaded by any tool that could lose one
    if distribution is not None and isinstance(error, distribution.WorkerLostError):
        distribution.end_process(EXIT_ERROR)
