"""The one writer of a run folder: every file a run writes, and whether this process writes at all.

A run trains on one process or on several (a multi-worker job); only the chief
(process 0) writes into the run folder. `RunWriter.for_process` makes that
decision, once: the chief gets a `RunWriter`, which holds the folder's lock
and performs every side effect of a run (run.json, config.gin, checkpoints'
folder checks, results.json, the reliability diagrams, operative_config.gin,
the SavedModel, the finished mark), in one order that a kill at any instant
leaves resumable; every other process gets a `ReadOnlyRun`, which writes
nothing and answers with what the chief shares.

The runner (`keras_calikd.training.runner`) calls the same methods on either,
so no other code asks which process it is on.
"""

from __future__ import annotations

import json
import os
from typing import Callable, NamedTuple, Optional, Sequence

import numpy as np

from keras_calikd.files import check_writable, write_json, write_text
from keras_calikd.metrics import plot_reliability_diagram
from keras_calikd.training import checkpoint
from keras_calikd.training.run_folder import RunDamagedError, RunFolder, RunMismatchError


class ResumePlan(NamedTuple):
    """What the chief decided from the run folder, shared with every process.

    Attributes:
        status: `"train"`, `"finished"` (nothing to do) or `"refused"` (the folder holds another run).
        initial_epoch: The epoch training starts from (0, or the last completed one).
        history: The logs of the completed epochs (metrics.csv is rebuilt from them).
        best: The best epoch so far and its monitored value, or `None`.
        arrays: `[key, shape, dtype]` of the saved training state, which every process takes from the chief.
        message: Why the chief refused the folder.
        files: Size and SHA-256 of `best.keras` and `last.keras` when the saved epochs wrote them.
        train_seconds: The training time of the saved epochs, over every process that trained them.
        resumes: How many times training continued from a saved state so far.
    """

    status: str
    initial_epoch: int = 0
    history: Sequence[dict] = ()
    best: Optional[dict] = None
    arrays: Sequence[list] = ()
    message: str = ""
    files: Optional[dict] = None
    train_seconds: float = 0.0
    resumes: int = 0

    @classmethod
    def from_json(cls, value: dict) -> "ResumePlan":
        return cls(**value)

    def to_json(self) -> dict:
        return self._asdict()


class RunWriter:
    """The chief's run folder: locked while the run trains, written only here.

    Args:
        experiment: The run's `Experiment` (its folder, settings and what to export).
        cluster: The processes the run trains on (the chief's collective steps).

    Example:

    ```python
    with RunWriter.for_process(experiment, cluster) as writer:
        plan = writer.plan(experiment.signature(trainer), experiment.provenance())
        ...
    ```
    """

    writes = True

    def __init__(self, experiment, cluster):
        self.experiment, self.cluster = experiment, cluster
        self._folder = None
        self._refusal = None
        self._arrays = None
        self._start = None

    @staticmethod
    def for_process(experiment, cluster) -> "RunWriter":
        """The chief's writer, or a `ReadOnlyRun` on every other process of a multi-worker job."""
        return RunWriter(experiment, cluster) if cluster.is_chief else ReadOnlyRun(experiment, cluster)

    def path(self, *parts) -> str:
        return self.experiment.path(*parts)

    # ------------------------------------------------------------------ before training

    def in_turn(self, work: Callable[[], None]) -> None:
        """`work()` on the chief first (which may prepare data the others read), then on the others."""
        work()
        self.cluster.barrier()

    def check_writable(self) -> None:
        """Fails early, before any data is prepared, when the run folder cannot be written."""
        check_writable(self.experiment.output_dir)

    def __enter__(self):
        self._folder = RunFolder(self.experiment.output_dir)
        self._folder.open()
        return self

    def __exit__(self, *exc):
        self._folder.close()

    def check_space(self, network) -> None:
        """Fails early when the folder lacks room for the checkpoints and the export."""
        check_writable(self.experiment.output_dir, needed_bytes=8 * 4 * network.count_params() + 2**20)

    def plan(self, signature: dict, provenance: dict) -> ResumePlan:
        """Refuse a folder of another run or one that cannot be checked, report a finished one (whole), or train
        from the last completed epoch."""
        self._start = (signature, provenance)
        try:
            self._folder.check_resumable(signature, provenance)
            return self._plan()
        except (RunMismatchError, RunDamagedError) as error:
            self._refusal = error
            return ResumePlan("refused", message=str(error))

    def _plan(self) -> ResumePlan:
        epochs, finished = self.experiment.epochs, self._folder.finished_epochs()
        self._check_not_shortened(finished)
        if finished == epochs and os.path.isfile(self.path("results.json")):
            self._folder.verify()  # "nothing to do" only for a run whose files are the ones it wrote
            return ResumePlan("finished")
        state_path = self.path("checkpoints", "state.npz")
        if not checkpoint.exists(state_path):
            if os.path.isfile(self.path("logs", "metrics.csv")):  # written only after a state: the state was removed
                raise RunDamagedError(
                    f"{state_path} is missing, but the run has trained (logs/metrics.csv holds its epochs): it cannot "
                    "continue without its training state. Restore the file, or train the run again under another "
                    "Experiment.name (or after deleting its folder).")
            return ResumePlan("train")
        try:
            self._arrays, metadata = checkpoint.read_state(state_path)
        except ValueError as error:
            raise RunDamagedError(f"{error} Restore it from a copy, or train the run again under another "
                                  "Experiment.name (or after deleting its folder).") from None
        self._check_not_shortened(metadata["epoch"])
        return ResumePlan("train", metadata["epoch"], metadata["history"], metadata["best"],
                          [[key, list(value.shape), value.dtype.str] for key, value in sorted(self._arrays.items())],
                          files=metadata.get("files", {}), train_seconds=metadata.get("train_seconds", 0.0),
                          resumes=metadata.get("resumes", 0))

    def _check_not_shortened(self, trained: Optional[int]) -> None:
        epochs = self.experiment.epochs
        if trained is not None and trained > epochs:
            raise RunMismatchError(
                f"{self.experiment.output_dir} has trained {trained} epochs, and Experiment.epochs = {epochs} is "
                f"fewer: a run is never shortened. Run it with Experiment.epochs = {trained} (or more), or train "
                f"{epochs} epochs as a new run (another Experiment.name).")

    def shared_plan(self, signature: dict, provenance: dict) -> ResumePlan:
        """The chief's plan, on every process (a collective step); a refusal raises, on every process."""
        plan = ResumePlan.from_json(self.cluster.broadcast_json(self._plan_or_none(signature, provenance)))
        if plan.status == "refused":
            self._refuse(plan)
        return plan

    def _plan_or_none(self, signature, provenance):
        return self.plan(signature, provenance).to_json()

    def _refuse(self, plan: ResumePlan):
        raise self._refusal

    def finished_results(self) -> dict:
        """The results of a run that finished already."""
        with open(self.path("results.json")) as f:
            return json.load(f)

    def begin(self, config_text: Optional[str]) -> None:
        """The first writes of a start: run.json of a new run (or a finished run marked as continuing, with more
        epochs) and the configuration it trains with. Everything before writes nothing."""
        self._folder.start(*self._start)
        if self._folder.finished_epochs() is not None:  # more epochs: the run is not finished until they are done
            self._folder.mark_finished(self._folder.finished_epochs(), finished=False)
        if config_text is not None:
            write_text(self.path("config.gin"), config_text)

    def resumed_arrays(self, plan: ResumePlan) -> dict:
        """The saved training state, the same on every process (a collective step)."""
        keys = [key for key, _, _ in plan.arrays]
        arrays = self.cluster.broadcast_arrays([self._local_arrays(plan)[key] for key in keys])
        self._arrays = None
        return dict(zip(keys, arrays))

    def _local_arrays(self, plan: ResumePlan) -> dict:
        return self._arrays

    def say(self, message: str) -> None:
        """Prints a line about the run (once per job)."""
        print(message)

    def verify_checkpoints(self, files: dict) -> None:
        """Checks that `checkpoints/<name>` are the files the run wrote (`files`: name -> checksum when written)."""
        self._folder.verify(recorded={f"checkpoints/{name}": value for name, value in files.items()})

    # ------------------------------------------------------------------ after training

    def results(self, results: dict, statistics: dict, title: str) -> dict:
        """Writes the test split's reliability diagram and results.json; returns the results."""
        bins = self.experiment.diagram_bins
        results[f"reliability_{bins}"] = {k: np.asarray(v).tolist() for k, v in statistics.items()}
        formats = self.experiment.diagram_formats
        plot_reliability_diagram(statistics, self.path(f"reliability.{formats[0]}"), title=title,
                                 formats=formats[1:])
        write_json(self.path("results.json"), results)
        return results

    def finish(self, operative_config: Optional[Callable[[], str]], export: Optional[Callable[[], None]]) -> None:
        """Saves the operative configuration and the export, then marks the run finished (last: it says done)."""
        if operative_config is not None:
            write_text(self.path("operative_config.gin"), operative_config())
        if export is not None:
            export()
        self._folder.mark_finished(self.experiment.epochs)

    def outcome(self, results: dict) -> dict:
        return results


class ReadOnlyRun(RunWriter):
    """A process other than the chief: it trains with the others and writes nothing into the run folder."""

    writes = False

    def in_turn(self, work: Callable[[], None]) -> None:
        self.cluster.barrier()
        work()

    def check_writable(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def check_space(self, network) -> None:
        pass

    def _plan_or_none(self, signature, provenance):
        return None

    def _refuse(self, plan: ResumePlan):
        raise RuntimeError(f"{self.cluster.description}: the chief (process 0) refused to run "
                           f"{self.experiment.name}: {plan.message}")

    def finished_results(self) -> dict:
        return self.outcome({})

    def begin(self, config_text):
        pass

    def _local_arrays(self, plan: ResumePlan) -> dict:
        return {key: np.zeros(shape, np.dtype(dtype)) for key, shape, dtype in plan.arrays}

    def say(self, message: str) -> None:
        pass

    def verify_checkpoints(self, files: dict) -> None:
        pass

    def results(self, results, statistics, title):
        return results

    def finish(self, operative_config, export) -> None:
        pass

    def outcome(self, results: dict) -> dict:
        """What this process did, in place of the results the chief computes."""
        return {"name": self.experiment.name, "process_index": self.cluster.process_index,
                "num_processes": self.cluster.num_processes}
