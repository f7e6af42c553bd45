"""gin for keras_calikd: configurables, the shipped experiment files, and parsing with early errors.

The library imports and works without gin: nothing here runs at import time.
`register_configurables()` registers, under the module prefix `ck`:

- every registered strategy class, by class name (`ck.augmentations.MixUp`,
  `ck.distillations.KD`, ...; in gin files `MixUp.alpha = 0.4`);
- every model builder, by function name (`ck.models.MobileNetV2`; in gin
  files `MobileNetV2.stem_stride = 1`), applied when a run builds the model
  by name;
- the `Distiller`, the calibration metrics and the training `Experiment`.

Each configurable accepts exactly the parameters its constructor names (its
own and its strategy base's, such as `weight` and `seed`), so a misspelled
binding (`KD.temprature = 4.0`) fails when the files are parsed, naming it.
Registry entries are replaced by their gin-configurable versions, so a
strategy created by name (`Distiller.augmentation = "mixup"`) and one created
by reference (`Distiller.augmentation = @MixUp()`) both receive the bound
arguments. Gin binds constructor arguments only; every default lives in the
Python signature.

The experiment files ship with the package (`gin_dir()`): a path given to
`configure` is read from the working folder when it exists there, else from
the shipped files, so `cifar100/teacher_vgg13.gin` (or `cifar100/teacher_vgg13`)
works from any folder and after a plain `pip install`.
"""

from __future__ import annotations

import inspect
import logging
import os
import re
import tokenize
from typing import Iterable, Sequence

_REGISTERED = False
_SEARCH_PATHS = set()
GIN_SUFFIX = ".gin"


def gin_dir() -> str:
    """The folder of the shipped gin files: `keras_calikd/configs` when installed, else the checkout's `gin/`."""
    package = os.path.dirname(os.path.abspath(__file__))
    installed = os.path.join(package, "configs")
    return installed if os.path.isdir(installed) else os.path.join(os.path.dirname(package), "gin")


def experiments() -> list:
    """The shipped experiment files (fragments under `base/`, `data/` and `strategies/` excluded), by run name."""
    root = gin_dir()
    names = []
    for folder, _, files in os.walk(root):
        for file in files:
            relative = os.path.relpath(os.path.join(folder, file), root)
            if file.endswith(GIN_SUFFIX) and not relative.startswith(("base", "data", "strategies")) \
                    and file != "base.gin":
                names.append(relative[:-len(GIN_SUFFIX)].replace(os.sep, "/"))
    return sorted(names)


def resolve(path: str) -> str:
    """The gin file `path` names: as given (from the working folder), else under `gin_dir()`, `.gin` optional."""
    candidates = [path, path + GIN_SUFFIX] if not path.endswith(GIN_SUFFIX) else [path]
    for candidate in candidates:
        for root in ("", gin_dir()):
            full = os.path.join(root, candidate)
            if os.path.isfile(full):
                return os.path.abspath(full)
    shipped = os.path.join(os.path.relpath(gin_dir()), "")
    folders = [os.path.join(root, candidate) for candidate in candidates for root in ("", gin_dir())
               if os.path.isdir(os.path.join(root, candidate))]
    if folders:
        inside = sorted(name for name in os.listdir(folders[0]) if name.endswith(".gin"))
        example = (f"e.g. --gin {os.path.join(path, inside[0])}" if inside else "it holds none")
        raise IsADirectoryError(f"gin file {path!r} is a folder, not a gin file; give one of the .gin files in it "
                                f"({example}), or `calikd-train --help` lists the shipped ones.")
    raise FileNotFoundError(
        f"gin file {path!r} does not exist in the working folder nor among the shipped experiments ({shipped}); "
        "`calikd-train --help` lists the shipped ones."
    )


def run_name(path: str) -> str:
    """The run name of a gin file: its path under the shipped `gin/` without `.gin` (else its file name)."""
    absolute, root = os.path.realpath(path), os.path.realpath(gin_dir())
    relative = os.path.relpath(absolute, root) if absolute.startswith(root + os.sep) else os.path.basename(absolute)
    return os.path.splitext(relative)[0].replace(os.sep, "/")


def _parameters(obj) -> list:
    """The parameters a configurable may bind: those its constructor names, through `**kwargs` to its bases."""
    import keras

    if not inspect.isclass(obj):
        return [p for p in inspect.signature(obj).parameters]
    names = []
    for cls in obj.__mro__:
        if cls in (keras.layers.Layer, keras.Model, object) or "__init__" not in vars(cls):
            continue
        parameters = inspect.signature(cls.__init__).parameters.values()
        names += [p.name for p in parameters if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            break
    return sorted(set(names))


def _registries():
    from keras_calikd.augmentations import AUGMENTATIONS
    from keras_calikd.distillations import DISTILLATIONS
    from keras_calikd.models import MODELS

    return {"ck.augmentations": AUGMENTATIONS, "ck.distillations": DISTILLATIONS, "ck.models": MODELS}


def _classes():
    from keras_calikd import metrics
    from keras_calikd.distiller import Distiller
    from keras_calikd.training.experiment import Experiment

    return {"ck": [Distiller], "ck.metrics": list(metrics.CALIBRATION_METRICS), "ck.training": [Experiment]}


def register_configurables() -> None:
    """Registers keras_calikd's configurables with gin (idempotent)."""
    global _REGISTERED
    if _REGISTERED:
        return
    import gin

    classes = _classes()  # imported first: a failing import must not leave half the registries wrapped
    for module, registry in _registries().items():
        registry.decorate_entries(lambda name, obj, module=module: gin.external_configurable(
            obj, module=module, allowlist=_parameters(obj)))
    for module, members in classes.items():
        for cls in members:
            gin.external_configurable(cls, module=module, allowlist=_parameters(cls))
    _REGISTERED = True


def configure(files: Sequence[str], bindings: Iterable[str] = (), run_name_binding: bool = True):
    """Parses gin files (see `resolve`) and bindings, replacing any earlier configuration; returns the file paths.

    `include` statements are read relative to the shipped gin folder, then to the working folder (the
    working folder is switched to the shipped gin folder while the files are parsed, then restored). With
    `run_name_binding`, `Experiment.name` defaults to the first file's run
    name (a later binding may override it).

    Raises:
        FileNotFoundError: a file does not exist.
        ValueError: a binding names an unknown configurable or parameter, or a file does not parse; the
            message is gin's, naming the binding and the file.
    """
    import gin

    register_configurables()
    paths = [resolve(path) for path in files]
    for given, path in zip(files, paths):
        _check_text(given, path)
    bindings = list(bindings)
    here = os.getcwd()
    if here not in _SEARCH_PATHS:  # the user's own includes, after the shipped ones
        gin.add_config_file_search_path(here)
        _SEARCH_PATHS.add(here)
    prefix = [f"Experiment.name = {run_name(paths[0])!r}"] if run_name_binding and paths else []
    root = logging.getLogger()
    root.addFilter(_quiet_include_lookup)
    # gin looks up an `include` under the working folder first: parsing from the shipped folder finds the
    # shipped files there, before gin's fallback lookup on the Python path (which a folder named like an
    # include's first part, e.g. a local `data/`, would mislead).
    os.chdir(gin_dir())
    try:
        with gin.unlock_config():
            gin.clear_config()
            gin.parse_config_files_and_bindings(paths, prefix + list(bindings), skip_unknown=False)
    except (ValueError, KeyError, TypeError, SyntaxError, IOError, tokenize.TokenError) as error:
        binding = _unparsable(bindings)
        if binding is not None:  # name the binding: gin's parser reports its lines joined, without it
            raise ValueError(f"invalid gin configuration: the binding {binding!r} does not parse ("
                             f"{_error_text(error)}); write it as 'Configurable.parameter = value', e.g. "
                             "'Experiment.epochs = 3'.") from None
        raise ValueError(f"invalid gin configuration: {_undefined_macro(error) or _error_text(error)}") from None
    finally:
        os.chdir(here)
        root.removeFilter(_quiet_include_lookup)
    return paths


def _check_text(given: str, path: str) -> None:
    """A gin file is UTF-8 text whose brackets and quotes close (gin's own errors name neither file nor line)."""
    with open(path, "rb") as file:
        data = file.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"gin file {given!r} is not a text gin file: byte {data[error.start]:#04x} at offset "
                         f"{error.start} is not UTF-8 text; give a file of gin bindings such as "
                         "'Experiment.epochs = 3'.") from None
    lines = iter(text.splitlines(keepends=True))
    start = None  # the line where the statement being read began
    try:
        for token in tokenize.generate_tokens(lambda: next(lines, "")):
            if token.type == tokenize.NEWLINE:
                start = None
            elif start is None and token.type not in (tokenize.NL, tokenize.COMMENT, tokenize.INDENT,
                                                      tokenize.DEDENT, tokenize.ENDMARKER):
                start = token.start[0]
    except tokenize.TokenError:
        raise ValueError(f"gin file {given!r}, line {start}: a bracket or quote opened in the statement that "
                         "starts there is not closed before the end of the file; close it.") from None


_UNDEFINED_MACRO = re.compile(r"No bindings specified for '([^']+)/gin\.macro' in config string:(.*)", re.S)


def _undefined_macro(error: BaseException):
    """gin's message for an undefined `%MACRO` (it appends the whole configuration) as one sentence, or `None`."""
    match = _UNDEFINED_MACRO.match(str(error))
    if match is None:
        return None
    name = match.group(1)
    uses = [line.strip() for line in match.group(2).splitlines() if re.search(rf"%{re.escape(name)}\b", line)]
    used = f" (used by {'; '.join(uses)})" if uses else ""
    return (f"the macro %{name}{used} is not defined; define it in a gin file or with --gin_param "
            f"'{name} = <value>', or correct its name.")


def _error_text(error: BaseException) -> str:
    if isinstance(error, tokenize.TokenError):  # ('EOF in multi-line statement', (line, column))
        return f"{error.args[0]}: a bracket or quote is not closed"
    text = str(error).split(" in config string:")[0]  # gin appends the whole configuration
    return " ".join(text.split())


def _unparsable(bindings: Iterable[str]):
    """The first binding that does not parse on its own (syntax only; names are not looked up), or `None`."""
    from gin import config, config_parser

    for binding in bindings:
        try:
            for _ in config_parser.ConfigParser(binding, config.ParserDelegate(skip_unknown=True)):
                pass
        except (ValueError, SyntaxError, tokenize.TokenError):
            return binding
    return None


def _quiet_include_lookup(record) -> bool:
    """Drops gin's log line for each search-path prefix an `include` is not found under (it then tries the next)."""
    return not record.getMessage().startswith("Path not found")
