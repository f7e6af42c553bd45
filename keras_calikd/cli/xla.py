"""XLA flags for the benchmark tools' processes, and what the compiled step is made of (its optimised HLO).

Flags. XLA reads `XLA_FLAGS` once per process, early (importing Keras on JAX is enough), so a process's
flags come from its environment: `calikd-benchmark --xla_flags "..."` sets them for the processes it starts,
one configuration per value; every other tool and program takes `XLA_FLAGS` as it finds it. The library
itself sets no flag: on a GPU, `CANDIDATES` are the settings the repository's GPU script measures against
XLA's own defaults, for the compilation time and the step time of each (docs/benchmarks.md). A user's own
`XLA_FLAGS` come first and the benchmark's after them (XLA takes the last value of a flag given twice).

HLO. `--xla_dump_to` makes XLA write each program it compiles, after its optimisation passes, as text;
`count_operations` reads the training step's and counts what the host launches per step: the convolutions and
the dot products (as XLA ops or as library calls such as cuDNN's and cuBLAS', inside fusions too), the fusions
(kernels XLA generates), and every top-level operation that does work (before command buffers group them).
"""

from __future__ import annotations

import glob
import os
import re

#: Candidate GPU settings, by name: what each changes, against XLA's defaults (""). Measured by
#: the repository's GPU script (docs/benchmarks.md); none is applied unless asked for.
CANDIDATES = {
    "xla_default": "",
    # Autotuning of convolutions and GEMMs: 0 = off (XLA's heuristics pick the kernels), 1 = on without XLA's
    # buffer initialisation and result checks, 4 = XLA's default.
    "autotune_0": "--xla_gpu_autotune_level=0",
    "autotune_1": "--xla_gpu_autotune_level=1",
    # GEMMs through cuBLAS only: no Triton GEMM fusions, whose tilings are autotuned one by one.
    "no_triton_gemm": "--xla_gpu_enable_triton_gemm=false",
    # Convolutions (and the rest) inside CUDA graphs: fewer launches from the host per step.
    "command_buffers_with_convolutions": (
        "--xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CUDNN,CONVOLUTION,DYNAMIC_SLICE_FUSION"),
}


def resolve(setting: str) -> str:
    """The XLA flags of a candidate's name, or `setting` itself when it is not a candidate's name."""
    return CANDIDATES.get(setting, setting)


def with_flags(environ: dict, *flags: str) -> dict:
    """A copy of `environ` with `flags` appended to its `XLA_FLAGS`."""
    merged = " ".join(f for f in (environ.get("XLA_FLAGS", ""), *flags) if f.strip())
    return dict(environ, XLA_FLAGS=merged)


def dump_flags(folder: str, module: str = "train_step") -> str:
    """XLA flags that write the optimised HLO of the programs whose name contains `module` under `folder`."""
    return f"--xla_dump_to={folder} --xla_dump_hlo_as_text --xla_dump_hlo_module_re=.*{module}.*"


def first_dumped_module(folder: str, module: str = "train_step") -> str | None:
    """The path of the first optimised program named `module` that XLA dumped into `folder`, or `None`."""
    paths = glob.glob(os.path.join(folder, f"module_*.jit_{module}.*after_optimizations.txt"))
    numbered = [(int(re.match(r"module_(\d+)", os.path.basename(p)).group(1)), p) for p in paths]
    return min(numbered)[1] if numbered else None


_FREE = {"parameter", "constant", "get-tuple-element", "tuple", "bitcast", "after-all", "add-dependency",
         "opt-barrier", "call", "while", "conditional", "domain", "partition-id", "replica-id"}
_CONVOLUTION_CALL = re.compile(r"conv", re.IGNORECASE)
_GEMM_CALL = re.compile(r"gemm|matmul", re.IGNORECASE)
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*(.*)$")
_CALLED = re.compile(r"\b(to_apply|body|condition|calls|branch_computations)=\{?%?([\w.\-, %]+)\}?")


def _opcode(rest: str) -> str:
    """The opcode of an instruction, from the text after `name = ` (a shape, possibly a tuple, then the op)."""
    if rest.startswith("("):
        depth = 0
        for i, c in enumerate(rest):
            depth += (c == "(") - (c == ")")
            if depth == 0:
                rest = rest[i + 1:]
                break
    else:
        rest = rest.split(" ", 1)[1] if " " in rest else ""
    match = re.match(r"\s*([a-z][\w\-]*)\(", rest)
    return match.group(1) if match else ""


def _computations(text: str) -> tuple:
    """`({name: [(opcode, line)]}, entry name)` of an HLO module's text."""
    computations, entry, current = {}, None, None
    for line in text.splitlines():
        if current is None:
            header = re.match(r"^(ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$", line)
            if header and not line.startswith("HloModule"):
                current = header.group(2)
                computations[current] = []
                entry = current if header.group(1) else entry
        elif line.strip() == "}":
            current = None
        else:
            match = _INSTRUCTION.match(line)
            if match:
                computations[current].append((_opcode(match.group(1)), line))
    return computations, entry


def count_operations(text: str) -> dict:
    """What an optimised HLO module launches per execution.

    Returns:
        `convolutions` and `dots` (XLA ops anywhere, inside fusions too, plus the convolution and GEMM library
        calls), `fusions` (top-level fusion kernels), `launches` (every top-level operation that does work:
        fusions, library calls, copies, ...) and `command_buffers` (calls of command-buffer computations).
    """
    computations, entry = _computations(text)
    top, pending = set(), [entry]
    while pending:  # the computations run as launches: the entry's, and those of calls, loops and branches
        name = pending.pop()
        if name in top or name not in computations:
            continue
        top.add(name)
        for opcode, line in computations[name]:
            if opcode in ("call", "while", "conditional"):
                for _, names in _CALLED.findall(line):
                    pending.extend(n.strip().lstrip("%") for n in names.split(","))
    counts = dict(convolutions=0, dots=0, fusions=0, launches=0, command_buffers=0)
    for name, instructions in computations.items():
        for opcode, line in instructions:
            target = re.search(r'custom_call_target="([^"]+)"', line) if opcode == "custom-call" else None
            counts["convolutions"] += opcode == "convolution" or bool(target and _CONVOLUTION_CALL.search(
                target.group(1)))
            counts["dots"] += opcode == "dot" or bool(target and _GEMM_CALL.search(target.group(1)))
            if name in top:
                counts["fusions"] += opcode == "fusion"
                counts["launches"] += opcode not in _FREE
                counts["command_buffers"] += opcode == "call" and "command_buffer" in line
    return counts
