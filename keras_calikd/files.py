"""Files that are never lost: atomic writes, their leftovers cleaned at the next start, outputs owned by their tool.

Every file and folder keras_calikd writes goes through `atomic_path`: the
content is written under a temporary name beside the target (`.calikd-tmp-*`)
and renamed into place in one step, so a process killed at any instant leaves
either the old file or the new one, never a partial one. A kill can leave the
temporary itself behind; `remove_temporaries` (`keras_calikd.temporaries`)
deletes those when the next run or tool starts: only folders with a name this module makes that carry its
marker file (`.calikd-temporary`, written first; or are still empty), and only
once the process that wrote them has ended (each temporary is locked while it
is written). Names beginning with `.calikd-` are reserved: no output may take one.

A tool writes only into a target it owns (`Outputs`): a new path, or one it
wrote itself earlier and that is unchanged since. What a tool wrote is
recorded in a manifest (`.calikd-outputs.json`: each file's tool, size and
SHA-256) in the folder of its files, or inside a folder it writes as a whole;
nothing is ever written into a run's folder but by its run. A file of that
name that is not such a manifest is the user's: the tools refuse to write beside it.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import os
import re
import shutil

from keras_calikd.temporaries import (  # noqa: F401 (RUN_MARKER, remove_temporaries, TEMPORARY_*: re-exported)
    RUN_MARKER, TEMPORARY_MARK, TEMPORARY_NAME as _TEMPORARY_NAME, TEMPORARY_PREFIXES, hold as _hold, make_temporary,
    remove_temporaries)

RESERVED_PREFIX = ".calikd-"  # the manifest's and the temporaries' names; never an output's
MANIFEST = ".calikd-outputs.json"  # what the tools wrote into a folder (or, for a folder output, into it)
_RECORDER = contextvars.ContextVar("keras_calikd_outputs", default=None)


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = ""):
    """Yields a temporary path beside `path`; on success it replaces `path` in one rename, else it is removed.

    Inside an `Outputs` scope, a claimed path is recorded in its manifest as it
    is renamed into place. An error raised while writing names `path`, not the
    temporary.

    Args:
        path: Final file or folder path.
        suffix: Ending the temporary name must have (e.g. `".keras"`, which Keras checks).
    """
    folder = os.path.dirname(_real(path))
    os.makedirs(folder, exist_ok=True)
    temporary, held = make_temporary(folder)  # a cleanup by another process leaves it alone while it is written
    target = os.path.join(temporary, "item" + suffix)
    recorder = _RECORDER.get()
    try:
        yield target
        if os.path.isfile(target):
            with open(target, "rb") as f:
                os.fsync(f.fileno())
        if recorder is not None:
            recorder._replacing(path, target)
        if os.path.isdir(path) and not os.path.islink(path):
            # Folders cannot be replaced in one rename: move the old one aside first.
            old, held_old = make_temporary(folder, aside=True)
            try:
                with open(os.path.join(old, "target"), "w") as f:  # lets remove_temporaries put it back
                    f.write(os.path.basename(path))
                os.replace(path, os.path.join(old, "item"))
                os.replace(target, path)
                shutil.rmtree(old, ignore_errors=True)
            finally:
                os.close(held_old)
        else:
            os.replace(target, path)
        if recorder is not None:
            recorder._replaced(path)
    except Exception as error:
        _speak_of_the_target(error, temporary, target, path)
        raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
        os.close(held)


def _speak_of_the_target(error: Exception, temporary: str, target: str, path: str) -> None:
    """Makes an error raised inside `atomic_path` name the path the user asked for, not the temporary."""
    folder = os.path.dirname(_real(path))

    def fix(value):
        return value.replace(target, path).replace(temporary, folder) if isinstance(value, str) else value

    with contextlib.suppress(AttributeError, TypeError):
        error.args = tuple(fix(value) for value in error.args)
        for name in ("filename", "filename2"):  # set only where set: an OSError with a filename prints it
            if isinstance(getattr(error, name, None), str):
                setattr(error, name, fix(getattr(error, name)))


def write_json(path: str, payload) -> None:
    """Writes `payload` as indented JSON, atomically."""
    with atomic_path(path) as temporary:
        with open(temporary, "w") as f:
            json.dump(payload, f, indent=2, sort_keys=True)
            f.write("\n")


def write_text(path: str, text: str) -> None:
    """Writes `text`, atomically."""
    with atomic_path(path) as temporary:
        with open(temporary, "w") as f:
            f.write(text)


def nearest_folder(path: str) -> str:
    """The nearest folder that exists at or above `path` (which need not exist)."""
    path = _real(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


def _dangling_link(path: str):
    """The symbolic link to nothing at or above `path` (which need not exist), or `None`."""
    path = _real(path)
    while not os.path.exists(path):
        if os.path.islink(path):
            return path
        path = os.path.dirname(path)
    return None


def check_writable(folder: str, needed_bytes: int = 0) -> None:
    """Fails early, with a clear message, if `folder` cannot be written or has too little free space.

    Nothing is created: a missing `folder` is checked through the nearest folder above it.
    """
    existing = nearest_folder(folder)
    if not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK):
        why = f"{existing!r} is a file" if not os.path.isdir(existing) else f"{existing!r} is read-only"
        raise PermissionError(
            f"The output folder {folder!r} is not writable ({why}). Choose another folder "
            "(e.g. --gin_param 'RUNS_DIR=\"/path/with/space\"') or fix its permissions."
        )
    free = shutil.disk_usage(existing).free
    if needed_bytes and free < needed_bytes:
        raise OSError(
            f"The output folder {folder!r} has {free / 2**20:.0f} MiB free, but checkpoints and exports need "
            f"about {needed_bytes / 2**20:.0f} MiB. Free some space or choose another folder."
        )


# ---------------------------------------------------------------------- what a tool owns

def checksum(path: str) -> dict:
    """`{"size", "sha256"}` of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"size": os.path.getsize(path), "sha256": digest.hexdigest()}


def folder_checksums(folder: str, skip=()) -> dict:
    """`{relative path: checksum}` of every file under `folder` but `skip` (relative paths) and temporaries."""
    found = {}
    for root, folders, files in os.walk(folder):
        folders[:] = sorted(name for name in folders if not _TEMPORARY_NAME.match(name))
        for name in sorted(files):
            relative = os.path.relpath(os.path.join(root, name), folder).replace(os.sep, "/")
            if relative not in skip:
                found[relative] = checksum(os.path.join(root, name))
    return found


def describe_change(recorded: dict, path: str) -> str:
    """Why the file at `path` is not the one `recorded` (`checksum`'s dict); "" when it is."""
    if not os.path.isfile(path):
        return "it is missing"
    now = checksum(path)
    if now["size"] != recorded.get("size"):
        return f"{now['size']} bytes now, {recorded.get('size')} when written"
    return "" if now["sha256"] == recorded.get("sha256") else "its content changed since it was written"


class OutputExistsError(FileExistsError):
    """An output path holds something the tool did not create, or that it may not replace."""


def enclosing_run(path: str):
    """The run folder at or above `path` (symbolic links resolved), or `None`."""
    folder = os.path.realpath(path)
    while True:
        if os.path.isfile(os.path.join(folder, RUN_MARKER)):
            return folder
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def _read_manifest(folder: str) -> dict:
    try:
        with open(os.path.join(folder, MANIFEST)) as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return {}
    return manifest if _is_manifest(manifest) else {}


def _is_manifest(manifest) -> bool:
    """Whether `manifest` (parsed JSON) has the structure `Outputs` writes."""
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        return False
    return all(isinstance(entry, dict) and isinstance(entry.get("size"), int) and isinstance(entry.get("sha256"), str)
               for entry in manifest["files"].values())


def foreign_manifest(folder: str):
    """The path of a file in `folder` named like the manifest that is not one `Outputs` wrote (a user's), or `None`."""
    path = os.path.join(folder, MANIFEST)
    if not os.path.lexists(path):
        return None
    if os.path.islink(path) or not os.path.isfile(path):
        return path
    try:
        with open(path) as f:
            return None if _is_manifest(json.load(f)) else path
    except (OSError, ValueError):
        return path


def _write_manifest(folder: str, manifest: dict) -> None:
    """The manifest, written atomically (itself not recorded)."""
    token = _RECORDER.set(None)
    try:
        write_json(os.path.join(folder, MANIFEST), manifest)
    finally:
        _RECORDER.reset(token)


@contextlib.contextmanager
def _manifest_lock(folder: str):
    """Holds `folder`'s lock while its manifest is read and rewritten (tools writing into one folder at once)."""
    descriptor = _hold(folder)
    try:
        yield
    finally:
        os.close(descriptor)


def _folder_output(folder: str):
    """The manifest of the output folder at or above `folder` (a folder a tool wrote as a whole), or `None`."""
    folder = os.path.realpath(folder)
    while True:
        manifest = _read_manifest(folder)
        if manifest.get("folder"):
            return folder, manifest
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def _real(path: str) -> str:
    """Where the kernel puts `path`: its folder with symbolic links resolved, then its name (which may not exist
    and is not followed). `..` is taken after the link before it, as the kernel does (`link/../x` is beside the
    link's target), never by cutting the text as `os.path.abspath` does."""
    folder, name = os.path.split(os.fspath(path))
    return os.path.join(os.path.realpath(folder or os.curdir), name)


def _version_on_disk(entry: dict, path: str):
    """The version `entry` recorded that the file at `path` is (the new one, or the one it replaced if a kill came
    between the record and the rename), or `None`."""
    return next((version for version in (entry, entry.get("previous"))
                 if version and not describe_change(version, path)), None)


class Outputs:
    """What one tool call writes: each file and folder claimed before any work, and recorded as it is written.

    A path can be claimed when it is new, or when it holds an output this same
    tool wrote and nobody changed since (replaced only with `overwrite`); a
    file the user edited afterwards is not the tool's any more. Symbolic
    links, other programs' files, outputs of another tool, anything inside a
    run folder (written by its run alone) and anything inside a folder a tool
    wrote as a whole are refused, with what to do. Claims are checked again,
    under the folder's lock, just before each replacement.

    Files are recorded in the manifest of their folder (`.calikd-outputs.json`:
    name -> tool, size, SHA-256; the previous version is kept beside the new
    one until the rename is done, so a kill at any instant leaves a file the
    tool still recognises); a folder output holds its own manifest, listing
    every file in it.

    Args:
        tool: The tool's name, recorded with each output.
        overwrite: Replace this tool's earlier outputs.

    Example:

    ```python
    outputs = Outputs("calikd-report", overwrite=args.overwrite)
    outputs.claim("reports/table1.md")            # before any work: refused with a message
    ...
    with outputs:                                  # writes inside are recorded
        write_text("reports/table1.md", markdown)
    ```
    """

    def __init__(self, tool: str, overwrite: bool = False):
        self.tool, self.overwrite = tool, bool(overwrite)
        self._files, self._folders = set(), set()
        self._claimed = {}  # real path -> (path as given, option)
        self._tokens = []

    def claim(self, path: str, folder: bool = False, option: str = "") -> str:
        """Checks that this tool may write `path` (a file, or a whole folder); returns `path`.

        Args:
            path: The file or folder.
            folder: `path` is a folder written as a whole.
            option: The command-line option that names `path` (e.g. `"--output"`), for the messages.

        Raises:
            OutputExistsError: with what is there and what to do; nothing was changed but the leftovers of a
                killed write beside `path` (an earlier output moved aside is put back).
        """
        self._check_name(path, folder, option)
        self._check(path, folder)  # first: nothing is touched in a place the tool may not write
        remove_temporaries(os.path.dirname(_real(path)) or ".", recursive=False)
        self._check(path, folder)  # again: the cleanup may have put an interrupted replacement's output back
        (self._folders if folder else self._files).add(_real(path))
        self._claimed[_real(path)] = (path, option)
        return path

    def __enter__(self):
        self._tokens.append(_RECORDER.set(self))
        return self

    def __exit__(self, *exc):
        _RECORDER.reset(self._tokens.pop())

    # ------------------------------------------------------------------ the rule

    def _check_name(self, path: str, folder: bool, option: str) -> None:
        """Refuses a name that is reserved, that names a folder where a file is written, or that this call
        already claimed (two of its outputs would write one path)."""
        shown = f"{option} {path!r}" if option else repr(path)
        name = os.path.basename(path)
        if not folder and (path.endswith((os.sep, "/")) or not name or name in (".", "..")):
            raise OutputExistsError(f"{shown} names a folder, where a file is written; give a file name, "
                                    f"e.g. {os.path.join(path, 'results')!r}.")
        if any(part.startswith(RESERVED_PREFIX) for part in re.split(r"[\\/]", path)):
            raise OutputExistsError(f"{shown}: names beginning with {RESERVED_PREFIX!r} are reserved for "
                                    f"keras_calikd's own records ({MANIFEST}) and temporaries; choose another name.")
        real = _real(path)
        for claimed, (earlier, earlier_option) in self._claimed.items():
            if real == claimed or real.startswith(claimed + os.sep) or claimed.startswith(real + os.sep):
                if real == claimed:
                    raise OutputExistsError(
                        f"{path!r} would be written twice by this call (by {earlier_option or 'one output'} and by "
                        f"{option or 'another'}); give the outputs different names.")
                first = f"{earlier_option} {earlier!r}" if earlier_option else repr(earlier)
                raise OutputExistsError(f"{shown} and {first} overlap (one is inside the other); give the outputs "
                                        "different names.")

    def _check(self, path: str, folder: bool) -> None:
        shown = repr(path)
        parent = os.path.dirname(_real(path))
        # a link to nothing among the folders as given (resolved, it would be only a folder that does not exist)
        dangling = _dangling_link(os.path.dirname(os.path.abspath(path)))
        if dangling is not None:
            raise OutputExistsError(f"Cannot write {shown}: {dangling!r} is a symbolic link to "
                                    f"{os.readlink(dangling)!r}, which does not exist. Give a folder that exists.")
        above = nearest_folder(parent)
        if not os.path.isdir(above):
            raise OutputExistsError(f"Cannot write {shown}: {above!r} is a file, not a folder.")
        run = enclosing_run(path if os.path.isdir(path) else above)
        if run is not None:
            where = "is a run folder" if os.path.realpath(path) == run else f"is inside the run folder {run!r}"
            elsewhere = os.path.join(os.path.dirname(run), "outputs", os.path.basename(path))
            raise OutputExistsError(
                f"{shown} {where}; a run's folder is written by its run alone and outputs never replace a run. "
                f"Write to a path outside it, e.g. {elsewhere!r}.")
        inside = _folder_output(above)
        if inside is not None:
            raise OutputExistsError(
                f"{shown} is inside {inside[0]!r}, a folder {inside[1].get('tool', 'a tool')} wrote as a whole; "
                "write to a path outside it.")
        if os.path.islink(path):
            raise OutputExistsError(f"{shown} is a symbolic link; the tools never write over or through one. "
                                    "Give the real path, or a new one.")
        foreign = None if folder else foreign_manifest(parent)
        if foreign is not None:
            raise OutputExistsError(
                f"Cannot write {shown}: {foreign!r} is not a keras_calikd manifest (the tools record their outputs "
                f"in a file of that name beside them), so it is someone else's; move it away, or write elsewhere.")
        if not os.path.exists(path):
            return
        if folder and os.path.isdir(path) and not os.listdir(path):
            return  # an empty folder: nothing to lose, it is written like a new path
        problem = self._not_ours(path, folder)
        if problem:
            raise OutputExistsError(f"{shown} {problem}; nothing was changed. Choose a new path (or move it away).")
        if not self.overwrite:
            raise OutputExistsError(f"{shown} holds an earlier output of {self.tool}; pass --overwrite to replace it, "
                                    "or choose a new path.")

    def _not_ours(self, path: str, folder: bool) -> str:
        """Why the existing `path` is not this tool's to replace; "" when it is."""
        if folder:
            if not os.path.isdir(path):
                return "is a file, where a folder is written"
            manifest = _read_manifest(path)
            if not manifest.get("folder") or manifest.get("tool") != self.tool:
                return "already exists and was not written by this tool"
            present = folder_checksums(path, skip={MANIFEST})
            extra = sorted(set(present) - set(manifest["files"]))
            if extra:
                return f"holds {extra[0]!r}, which {self.tool} did not write"
            changed = [name for name, entry in sorted(manifest["files"].items())
                       if name in present and present[name] != {k: entry.get(k) for k in ("size", "sha256")}]
            return f"holds {changed[0]!r}, changed since {self.tool} wrote it" if changed else ""
        if not os.path.isfile(path):
            return ("is a folder, where a file is written" if os.path.isdir(path) else
                    "is not a regular file (a device, pipe or socket), where a file is written")
        entry = _read_manifest(os.path.dirname(_real(path))).get("files", {}).get(os.path.basename(path))
        if not entry or entry.get("tool") != self.tool:
            return "already exists and was not written by this tool"
        if _version_on_disk(entry, path) is None:
            return f"was written by {self.tool} but changed since, so it is not the tool's any more"
        return ""

    # ------------------------------------------------------------------ called by atomic_path

    def _replacing(self, path: str, temporary: str) -> None:
        key = _real(path)
        if key in self._folders:
            _write_manifest(temporary, {"folder": True, "tool": self.tool,
                                        "files": folder_checksums(temporary, skip={MANIFEST})})
            self._check(path, folder=True)  # nothing changed there while the tool worked
            return
        if key not in self._files:
            raise RuntimeError(f"internal error: {path!r} is written without having been claimed by {self.tool}.")
        folder = os.path.dirname(key)
        with _manifest_lock(folder):
            self._check(path, folder=False)
            manifest = _read_manifest(folder) or {"files": {}}
            old = manifest["files"].get(os.path.basename(key))
            entry = dict(checksum(temporary), tool=self.tool)
            current = _version_on_disk(old, key) if old else None
            if current is not None:
                entry["previous"] = {"size": current["size"], "sha256": current["sha256"]}
            manifest["files"][os.path.basename(key)] = entry
            _write_manifest(folder, manifest)

    def _replaced(self, path: str) -> None:
        key = _real(path)
        if key in self._folders:
            return
        folder = os.path.dirname(key)
        with _manifest_lock(folder):
            manifest = _read_manifest(folder)
            entry = manifest.get("files", {}).get(os.path.basename(key))
            if entry and entry.pop("previous", None) is not None:
                _write_manifest(folder, manifest)
