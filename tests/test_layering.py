"""The package's layers: no import cycle (function-level imports included), and each layer imports only below it."""

import ast
import os

import pytest

# Backend-neutral: source files only; tools/run_tests.sh runs this module once, in its TensorFlow pass.
pytestmark = pytest.mark.backend_neutral

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "keras_calikd"


def modules(root=ROOT):
    """`{module name: file}` of every module of the package (a package by its `__init__.py`)."""
    found = {}
    for folder, _, files in os.walk(os.path.join(root, PACKAGE)):
        for file in files:
            if file.endswith(".py"):
                name = os.path.relpath(os.path.join(folder, file), root)[:-3].replace(os.sep, ".")
                found[name[:-len(".__init__")] if name.endswith(".__init__") else name] = os.path.join(folder, file)
    return found


def imported(name, path, known):
    """The package's modules that importing `name` runs, from every import statement in it (in functions too).

    `import a.b.c` runs `a`, `a.b` and `a.b.c`; `from a.b import c` runs `a.b.c` when `c` is a module. A
    module's own packages are left out: they are always imported before it.
    """
    is_package = path.endswith("__init__.py")
    targets = set()
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".")[:len(name.split(".")) + is_package - node.level]
                base = ".".join(parts + ([node.module] if node.module else []))
            targets |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names}
    parts_of = {".".join(name.split(".")[:k]) for k in range(1, name.count(".") + 1 + is_package)}
    run = {".".join(t.split(".")[:k]) for t in targets if t.startswith(PACKAGE) for k in range(1, t.count(".") + 2)}
    return {m for m in run if m in known and m != name and m not in parts_of}


def import_graph(root=ROOT):
    known = modules(root)
    return {name: imported(name, path, known) for name, path in known.items()}


def cycles(graph):
    """The strongly connected components of more than one module (Tarjan's algorithm), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_package_has_no_import_cycle():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_sees_function_level_imports_and_packages(tmp_path):
    package = tmp_path / PACKAGE
    (package / "low").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "low" / "__init__.py").write_text("from keras_calikd.low import a\n")
    (package / "low" / "a.py").write_text("def f():\n    from keras_calikd import high\n")
    (package / "high.py").write_text("from keras_calikd.low import a\n")
    graph = import_graph(str(tmp_path))
    assert graph["keras_calikd.low.a"] == {"keras_calikd.high"}  # in a function, and its own package left out
    assert graph["keras_calikd.high"] == {"keras_calikd.low", "keras_calikd.low.a"}  # a's package runs first
    assert cycles(graph) == [["keras_calikd.high", "keras_calikd.low", "keras_calikd.low.a"]]


def test_each_layer_imports_only_below_it():
    graph = import_graph()
    below = {m for m in graph if m.startswith((f"{PACKAGE}.metrics", f"{PACKAGE}.models"))}
    assert not {i for m in below for i in graph[m] if i.startswith((f"{PACKAGE}.training", f"{PACKAGE}.cli"))}
    assert graph[f"{PACKAGE}.contract"] == set()  # the requirement names and input keys, below everything
    assert graph[f"{PACKAGE}.checks"] == {f"{PACKAGE}.contract"}  # validators only
    assert graph[f"{PACKAGE}.files"] == {f"{PACKAGE}.temporaries"}
    assert graph[f"{PACKAGE}.temporaries"] == set()


def test_a_run_asks_which_process_it_is_on_in_one_place():
    """The run writer decides what the chief does that the others do not; the runner and the configuration never ask.

    (Besides it: the cluster and its setup, which answer the question, and the two callbacks' defaults for use
    outside a run.)
    """
    askers = set()
    for name, path in modules().items():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        if any(isinstance(node, ast.Attribute) and node.attr == "is_chief" for node in ast.walk(tree)):
            askers.add(name)
    training = f"{PACKAGE}.training"
    assert askers == {f"{training}.{m}" for m in ("run_writer", "cluster", "distribution", "callbacks", "tensorboard")}
