#!/usr/bin/env python
"""Trains a teacher, a from-scratch student or a distilled student, as the gin files decide.

    python tools/train.py --gin gin/cinic10_cutmix.gin
    python tools/train.py --gin gin/cifar100/teacher_vgg13.gin --gin_param 'Experiment.epochs = 10'

The run's folder is `<RUNS_DIR>/<name>`, where `name` is the first gin file's
path under `gin/` without `.gin` (override with `Experiment.name`). Running
the same command again resumes from the last completed epoch.
"""

from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIN_DIR = os.path.join(ROOT, "gin")
sys.path.insert(0, ROOT)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gin", action="append", required=True, metavar="FILE",
                        help="gin file (repeatable; later files override earlier ones)")
    parser.add_argument("--gin_param", action="append", default=[], metavar="BINDING",
                        help="gin binding such as 'Experiment.epochs = 10' (repeatable)")
    return parser.parse_args(argv)


def run_name(path: str) -> str:
    """The run name of a gin file: its path under gin/ without `.gin` (else its file name)."""
    absolute = os.path.abspath(path)
    if absolute.startswith(GIN_DIR + os.sep):
        relative = os.path.relpath(absolute, GIN_DIR)
    else:
        relative = os.path.basename(absolute)
    return os.path.splitext(relative)[0].replace(os.sep, "/")


def configure(files, bindings):
    """Parses gin files and bindings; unknown configurables or parameters fail here, naming them."""
    import gin

    from keras_calikd.gin_support import register_configurables

    register_configurables()
    for path in files:
        if not os.path.isfile(path):
            raise SystemExit(f"error: gin file {path!r} does not exist.")
    files = [os.path.abspath(path) for path in files]
    name_binding = f"Experiment.name = {run_name(files[0])!r}"
    # `include` paths are relative to gin/: parse from there, so the first place gin looks is the right one.
    cwd = os.getcwd()
    os.chdir(GIN_DIR)
    try:
        gin.parse_config_files_and_bindings(files, [name_binding] + list(bindings), skip_unknown=False)
    except (ValueError, KeyError, TypeError, SyntaxError, OSError) as error:  # gin names the bad binding
        raise SystemExit(f"error: invalid gin configuration: {error}") from None
    finally:
        os.chdir(cwd)
    return gin


def main(argv=None) -> int:
    args = parse_args(argv)
    gin = configure(args.gin, args.gin_param)
    from keras_calikd.training import MissingTeacherError, NonFiniteLossError
    from keras_calikd.training.experiment import summarize
    from keras_calikd.training.files import write_text

    try:
        experiment = gin.get_configurable("ck.training.Experiment")()
        experiment.check()
    except (TypeError, ValueError, OSError) as error:  # bad or missing values, teacher, output folder
        raise SystemExit(f"error: {error}") from None
    config_path = os.path.join(experiment.output_dir, "config.gin")
    config = gin.config_str()
    if os.path.isfile(os.path.join(experiment.output_dir, "checkpoints", "state.npz")) and os.path.isfile(config_path):
        with open(config_path) as f:
            if f.read() != config:
                raise SystemExit(
                    f"error: {experiment.output_dir} holds a run with a different configuration (see its "
                    "config.gin). Resume it with the same gin files and bindings, or choose another "
                    "Experiment.name / RUNS_DIR."
                )
    write_text(config_path, config)
    import keras_calikd.data as data

    try:
        results = experiment.run()
    except (MissingTeacherError, data.DatasetNotFoundError, data.CorruptFileError, NonFiniteLossError) as error:
        raise SystemExit(f"error: {error}") from None
    write_text(os.path.join(experiment.output_dir, "operative_config.gin"), gin.operative_config_str())
    print(summarize(results))
    print(f"Run folder: {experiment.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
