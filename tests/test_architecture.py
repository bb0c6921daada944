"""The house's rules, checked on ``cnn_jax/`` and shown to fire on broken examples.

1. No import circle between modules (a module is a node; imports inside functions count).
2. No upward import: no unit (top-level module or package) imports one on a higher floor
   (README, "Architecture").
3. No private name (``_x``) imported from another module.
4. No function over 60 lines, no module over 400 lines.

An import counts wherever it stands (top level or inside a function), so a lazy import
cannot hide an arrow.
"""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys
import textwrap

import pytest

FLOORS = [
    {"errors", "rundir"},
    {"registry", "barrier"},
    {"activations", "conv", "conv_tuning", "corruptions", "data", "losses", "optim", "runtime", "slurm", "summary"},
    {"pooling"},
    {"layers"},
    {"models"},
    {"config"},
    {"experiment", "train"},
    {"analyses", "bench", "lowering", "viz"},
    {"study"},
    {"cli", "launch"},
    {"__main__"},
]
FLOOR = {unit: i for i, units in enumerate(FLOORS) for unit in units}
ROOT = pathlib.Path(__file__).resolve().parent.parent / "cnn_jax"
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 400


class Package:
    """The modules of a package directory: dotted name -> (path, AST)."""

    def __init__(self, root: pathlib.Path):
        self.root, self.name = root, root.name
        self.modules: dict[str, tuple[pathlib.Path, ast.Module]] = {}
        for path in sorted(root.rglob("*.py")):
            parts = (self.name, *path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            self.modules[".".join(parts)] = (path, ast.parse(path.read_text()))

    def _is_package(self, module: str) -> bool:
        return self.modules[module][0].name == "__init__.py"

    def _target(self, name: str) -> str | None:
        """The module of ours that ``name`` (a module or a module's attribute) names."""
        while name and name not in self.modules:
            name = name.rpartition(".")[0]
        return name or None

    def imports(self, module: str):
        """``(node, imported module, imported names)`` of every import in ``module``."""
        path, tree = self.modules[module]
        base = module if self._is_package(module) else module.rpartition(".")[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    yield node, a.name, []
            elif isinstance(node, ast.ImportFrom):
                src = node.module or ""
                if node.level:
                    up = base.split(".")[: len(base.split(".")) - node.level + 1]
                    src = ".".join(up + ([src] if src else []))
                for a in node.names:
                    yield node, f"{src}.{a.name}", [a.name]

    def edges(self):
        """``(module, module it imports)`` for every import between our modules."""
        for module in self.modules:
            for _, name, _ in self.imports(module):
                target = self._target(name)
                if target and target != module:
                    yield module, target


def import_circles(pkg: Package) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    graph: dict[str, set[str]] = {m: set() for m in pkg.modules}
    for a, b in pkg.edges():
        graph[a].add(b)
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return out


def upward_imports(pkg: Package, floor: dict[str, int]) -> list[str]:
    def unit(module):
        parts = module.split(".")
        return parts[1] if len(parts) > 1 else "__init__"

    bad = []
    for a, b in pkg.edges():
        ua, ub = unit(a), unit(b)
        if ua != ub and "__init__" not in (ua, ub) and floor[ub] > floor[ua]:
            bad.append(f"{a} (floor {floor[ua]}) imports {b} (floor {floor[ub]})")
    return bad


def private_imports(pkg: Package) -> list[str]:
    bad = []
    for module in pkg.modules:
        for _, name, names in pkg.imports(module):
            src = name.rpartition(".")[0]
            for n in names:
                if n.startswith("_") and not n.startswith("__") and pkg._target(src):
                    if pkg._target(name) is None or pkg._target(name) == pkg._target(src):
                        bad.append(f"{module} imports {n} from {src}")
    return bad


def long_functions(pkg: Package, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    bad = []
    for module, (_, tree) in pkg.modules.items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > limit:
                    bad.append(f"{module}.{node.name}: {n} lines")
    return bad


def long_modules(pkg: Package, limit: int = MAX_MODULE_LINES) -> list[str]:
    bad = []
    for module, (path, _) in pkg.modules.items():
        n = len(path.read_text().splitlines())
        if n > limit:
            bad.append(f"{module}: {n} lines")
    return bad


@pytest.fixture(scope="module")
def house():
    return Package(ROOT)


def test_every_unit_has_a_floor(house):
    units = {m.split(".")[1] for m in house.modules if m.count(".")}
    assert units - set(FLOOR) == set(), "add the new module to FLOORS (and the README)"


def test_no_import_circle(house):
    assert import_circles(house) == []


def test_no_import_goes_up_a_floor(house):
    assert upward_imports(house, FLOOR) == []


def test_no_private_name_is_imported_from_another_module(house):
    assert private_imports(house) == []


def test_no_function_over_60_lines(house):
    assert long_functions(house) == []


def test_no_module_over_400_lines(house):
    assert long_modules(house) == []


def test_the_checker_sees_lazy_imports(house):
    # The rules would be empty if the walk missed imports inside functions.
    seen = set(house.edges())
    assert ("cnn_jax.config", "cnn_jax.models") in seen  # config.resolve imports models lazily
    assert not any(a.startswith("cnn_jax.pooling") and b.startswith("cnn_jax.layers") for a, b in seen)


# ----------------------------------------------------------------------------- broken examples


def _broken(tmp_path, files: dict[str, str]) -> Package:
    root = tmp_path / "pkg"
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    return Package(root)


def test_a_circle_through_a_function_level_import_is_found(tmp_path):
    pkg = _broken(tmp_path, {
        "__init__.py": "",
        "a.py": "from pkg import b\n",
        "b.py": "def f():\n    from pkg.c import g\n    return g\n",
        "c.py": "import pkg.a\n",
        "d.py": "from pkg import a\n",  # imports into the circle: not part of it
    })
    assert import_circles(pkg) == [["pkg.a", "pkg.b", "pkg.c"]]


def test_a_circle_through_a_package_init_and_a_relative_import_is_found(tmp_path):
    pkg = _broken(tmp_path, {
        "__init__.py": "",
        "data/__init__.py": "from .loading import load\nSPEC = 1\n",
        "data/loading.py": "def load():\n    from pkg.data import SPEC\n",
        "data/spec.py": "from pkg.data import loading\n",  # a module, not the package: no circle
    })
    assert import_circles(pkg) == [["pkg.data", "pkg.data.loading"]]


def test_an_upward_import_is_found(tmp_path):
    pkg = _broken(tmp_path, {
        "__init__.py": "",
        "low.py": "def f():\n    from pkg import high\n",
        "high.py": "from pkg import low\n",
    })
    assert upward_imports(pkg, {"low": 0, "high": 1}) == ["pkg.low (floor 0) imports pkg.high (floor 1)"]


def test_a_private_import_is_found(tmp_path):
    pkg = _broken(tmp_path, {
        "__init__.py": "",
        "a.py": "def _helper():\n    pass\n",
        "b.py": "def f():\n    from pkg.a import _helper, __doc__\n",
        "c.py": "from pkg import a as _a\nfrom pkg.sub import _mod\n",  # aliases and modules are fine
        "sub/__init__.py": "",
        "sub/_mod.py": "",
    })
    assert private_imports(pkg) == ["pkg.b imports _helper from pkg.a"]


def test_long_functions_and_modules_are_found(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(60))
    pkg = _broken(tmp_path, {
        "__init__.py": "",
        "fine.py": "def f():\n" + "\n".join(f"    x{i} = {i}" for i in range(59)) + "\n",
        "long.py": "def f():\n" + body + "\n" + "\n" * 340,
    })
    assert long_functions(pkg) == ["pkg.long.f: 61 lines"]
    assert long_modules(pkg) == ["pkg.long: 401 lines"]


@pytest.mark.parametrize("light", ["cnn_jax.rundir", "cnn_jax.train", "cnn_jax.study", "cnn_jax.analyses"])
def test_light_imports_do_not_load_jax(light):
    code = f"import sys, {light}; print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
