"""The house's floors: no module of ``cnn_jax`` imports one on a higher floor.

The floors (README, "Architecture"), lowest first; a unit is a top-level module or package
of ``cnn_jax``. An import counts wherever it stands (top level or inside a function), so a
lazy import cannot hide an upward arrow.
"""

import ast
import pathlib

import pytest

FLOORS = [
    {"errors", "rundir"},
    {"registry"},
    {"activations", "conv", "data", "losses", "optim", "runtime", "summary"},
    {"pooling"},
    {"layers"},
    {"models"},
    {"config"},
    {"experiment", "train"},
    {"bench", "viz"},
    {"study"},
    {"cli", "launch"},
    {"__main__"},
]
FLOOR = {unit: i for i, units in enumerate(FLOORS) for unit in units}
ROOT = pathlib.Path(__file__).resolve().parent.parent / "cnn_jax"


def _unit(path: pathlib.Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.parts[0].removesuffix(".py") if len(rel.parts) else "__init__"


def _imports(path: pathlib.Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "cnn_jax":
                yield from (f"cnn_jax.{a.name}" for a in node.names)
            else:
                yield node.module


def _edges():
    for path in sorted(ROOT.rglob("*.py")):
        unit = _unit(path)
        if unit == "__init__":  # the package's lazy attribute table
            continue
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] == "cnn_jax" and len(parts) > 1 and parts[1] != unit and _is_module(parts[1]):
                yield path.relative_to(ROOT.parent), unit, parts[1]


def _is_module(name: str) -> bool:  # not a package attribute such as __version__
    return (ROOT / f"{name}.py").exists() or (ROOT / name / "__init__.py").exists()


def test_every_unit_has_a_floor():
    units = {_unit(p) for p in ROOT.rglob("*.py")} - {"__init__"}
    assert units - set(FLOOR) == set(), "add the new module to FLOORS (and the README)"


def test_no_import_goes_up_a_floor():
    upward = [
        f"{path}: {unit} (floor {FLOOR[unit]}) imports {target} (floor {FLOOR[target]})"
        for path, unit, target in _edges()
        if FLOOR[target] > FLOOR[unit]
    ]
    assert upward == []


def test_the_checker_sees_lazy_imports():
    # The rule would be empty if the walk missed imports inside functions.
    seen = {(u, t) for _, u, t in _edges()}
    assert ("config", "models") in seen  # config.resolve imports models lazily
    assert ("pooling", "layers") not in seen


@pytest.mark.parametrize("light", ["cnn_jax.rundir", "cnn_jax.train", "cnn_jax.study"])
def test_light_imports_do_not_load_jax(light):
    import subprocess
    import sys

    code = f"import sys, {light}; print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
