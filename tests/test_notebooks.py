"""The notebooks of docs/notebooks/ are what scripts/make_notebooks.py writes (committed
without outputs), and they run: each is executed with nbclient in a fresh kernel on the
embedded dataset."""

import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = os.path.join(ROOT, "docs", "notebooks")


def _maker():
    spec = importlib.util.spec_from_file_location("make_notebooks",
                                                  os.path.join(ROOT, "scripts", "make_notebooks.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_notebooks_are_the_script_s_and_have_no_outputs():
    for name, text in _maker().texts().items():
        with open(os.path.join(NOTEBOOKS, name)) as f:
            assert f.read() == text, f"re-run scripts/make_notebooks.py: {name} differs"


# The ablation notebook (26 s) runs in the long stage, for the default suite's budget.
@pytest.mark.parametrize("name", ["lenet5.ipynb", pytest.param("pooling_ablation.ipynb", marks=pytest.mark.long)])
def test_the_notebook_runs(name, data_dir, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("CNN_JAX_DATA_DIR", data_dir)  # the kernel inherits the environment
    nb = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    if name == "lenet5.ipynb":
        assert "'accuracy'" in text and "Total params" in text
    else:
        assert "half_max_avg" in text
