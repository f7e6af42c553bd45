"""calikd-train: trains a teacher, a from-scratch student or a distilled student, as gin files decide.

    calikd-train --gin cinic10_cutmix.gin
    calikd-train --gin cifar100/teacher_vgg13 --gin_param 'Experiment.epochs = 10'

A gin file is read from the working folder when it exists there, else from
the experiments shipped with keras_calikd (listed below). The run's folder is
`<RUNS_DIR>/<name>`, where `name` is the first gin file's path under `gin/`
without `.gin` (override with `Experiment.name`). Running the same command
again resumes after the last completed epoch; a finished run is left as it is.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import textwrap

from keras_calikd.cli import common


def _parameters_help() -> str:
    """The `Experiment` parameters with their defaults, from its signature and docstring."""
    from keras_calikd.training.experiment import Experiment

    lines = []
    for name, parameter in inspect.signature(Experiment.__init__).parameters.items():
        if name == "self":
            continue
        default = "required" if parameter.default is inspect.Parameter.empty else f"default {parameter.default!r}"
        lines.append(f"  Experiment.{name} ({default})")
    return "\n".join(lines)


def _experiments_help() -> str:
    from keras_calikd.gin_support import experiments, gin_dir

    names = experiments()
    listing = textwrap.fill(", ".join(names), width=110, initial_indent="  ", subsequent_indent="  ")
    return f"shipped experiments ({len(names)}, in {gin_dir()}):\n{listing}"


def parser() -> argparse.ArgumentParser:
    result = common.tool_parser(
        "calikd-train", __doc__, epilog=f"{_experiments_help()}\n\nparameters (bind with --gin_param 'Experiment.<name> = <value>'):\n"
               f"{_parameters_help()}\n\nStrategy options are bound the same way, e.g. 'KD.temperature = 4.0', "
               "'MixUp.alpha = 0.4'; see the README's strategy table.")
    result.add_argument("--gin", action="append", required=True, metavar="FILE",
                        help="gin file (repeatable; later files override earlier ones)")
    result.add_argument("--gin_param", action="append", default=[], metavar="BINDING",
                        help="gin binding such as 'Experiment.epochs = 10' (repeatable)")
    common.add_debug_flag(result)
    return result


def main(argv=None) -> int:
    """Parses the gin files, runs the experiment, prints its one-line summary."""
    args = parser().parse_args(argv)
    import gin

    from keras_calikd.gin_support import configure
    from keras_calikd.training.experiment import summarize

    configure(args.gin, args.gin_param)
    experiment = gin.get_configurable("ck.training.Experiment")()
    results = experiment.run(config_text=gin.config_str(), operative_config=gin.operative_config_str)
    print(summarize(results))
    print(f"Run folder: {experiment.output_dir}")
    return 0


def console() -> int:
    return common.run(main)


if __name__ == "__main__":
    sys.exit(console())
