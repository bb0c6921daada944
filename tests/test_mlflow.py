"""MLflow tracking against a real tracking server (``mlflow server`` with a SQLite backend,
started here on a loopback port): a sweep's trials are read back through MLflow's client
with their params, logged points and final metrics; a re-run adds no duplicate; an
unreachable server is a one-line error before anything runs; nothing imports MLflow when
tracking is off."""

import csv
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request

import pytest

EXPERIMENT = textwrap.dedent('''
    from cnn_jax import study
    from cnn_jax.config import base_config

    def get_config(arg=""):
        c = base_config()
        c.data.name, c.model.name, c.data.batch_size, c.train.steps = "digits", "mlp", 32, 12
        c.train.log_every_steps = 4
        c.train.eval_every_epochs = 1
        return c

    def get_sweep(arg=""):
        return study.Study(study.grid({"optim.learning_rate": [1e-3, 3e-3]}), seeds=1,
                           title="mlflow test")
''')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{d}/m.db",
         "--default-artifact-root", str(d / "artifacts"), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        stdout=open(d / "log", "w"), stderr=subprocess.STDOUT)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180  # start-up (database migrations) on a slow machine
    while True:
        try:
            with urllib.request.urlopen(uri + "/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("mlflow server did not start: " + (d / "log").read_text()[-2000:])
        time.sleep(0.5)
    yield uri
    proc.terminate()
    proc.wait(timeout=30)


def _sweep(tmp_path, data_dir, workdir, *extra):
    exp = tmp_path / "exp.py"
    exp.write_text(EXPERIMENT)
    env = {**os.environ, "CNN_JAX_TEST_DATA_DIR": data_dir}
    return subprocess.run([sys.executable, "-m", "cnn_jax", "sweep", str(exp), "--workdir",
                           str(workdir), "--workers", "0", *extra],
                          capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.long  # the server's start-up alone takes 30 s or more here: the CI's long stage
def test_a_sweep_is_read_back_from_the_server(tmp_path, data_dir, server):
    from mlflow.tracking import MlflowClient

    wd = tmp_path / "sweep"
    out = _sweep(tmp_path, data_dir, wd, "--mlflow", server)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "mlflow: 2 trial runs under run" in out.stdout
    client = MlflowClient(server)
    exp = client.get_experiment_by_name("cnn-jax sweep")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 2
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    with open(wd / "results.csv") as f:
        rows = {r["trial"]: r for r in csv.DictReader(f)}
    for r in children:
        row = rows[r.info.run_name]
        assert float(r.data.params["optim.learning_rate"]) == float(row["optim.learning_rate"])
        assert r.data.metrics["final/test_accuracy"] == pytest.approx(float(row["test_accuracy"]))
        assert r.info.status == "FINISHED" and r.data.tags["cnn_jax.status"] == "done"
        loss = client.get_metric_history(r.info.run_id, "train/loss")
        assert [m.step for m in loss] == [4, 8, 12]
        names = {a.path for a in client.list_artifacts(r.info.run_id)}
        assert {"summary.json", "config.json"} <= names
    assert "report.md" in {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    # a re-run writes no trial twice
    again = _sweep(tmp_path, data_dir, wd, "--mlflow", server)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(client.search_runs([exp.experiment_id])) == 3


def test_an_unreachable_server_stops_the_sweep_before_anything_runs(tmp_path, data_dir):
    wd = tmp_path / "sweep"
    uri = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    out = _sweep(tmp_path, data_dir, wd, "--mlflow", uri)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr
    assert f"MLflow tracking server {uri!r} is unreachable" in lines[0]
    assert not wd.exists()


def test_no_mlflow_import_when_tracking_is_off():
    code = ("import sys; from cnn_jax.study.execution import runner; from cnn_jax.study import cli; "
            "assert 'mlflow' not in sys.modules, 'mlflow imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
