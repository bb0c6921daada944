"""Executors and trial ownership without a cluster: leases (taken, renewed, expired, taken
over, raced), the local pool's per-GPU environments, a script without a ``__main__`` guard,
a dead worker that says why, two concurrent sweeps on one workdir, and the one-line errors
of bad executor input (nothing written). The real SLURM and Ray runs are in tests/cluster/."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from helpers.hold import hold

from cnn_jax import cli
from cnn_jax.errors import UserError
from cnn_jax.study import lease, store
from cnn_jax.study.execution import executors, runner
from cnn_jax.study.execution import status as trial_status

EXPERIMENT = """
from cnn_jax import study
from cnn_jax.config import base_config


def get_config():
    c = base_config()
    c.model.name = "mlp"
    c.model.hidden = (32,)
    c.data.name = "digits"
    c.data.data_dir = {data_dir!r}
    c.data.batch_size = 32
    c.train.steps = {steps}
    c.train.log_every_steps = 3
    c.train.checkpoint_every_steps = 4
    c.optim.learning_rate = 0.01
    return c


def get_sweep():
    return study.Study(study.grid({{"model.activation": {acts!r}}}), seeds={seeds})
"""


def _experiment(tmp_path, data_dir, acts=("relu", "tanh"), seeds=2, steps=12, name="exp.py"):
    p = tmp_path / name
    p.write_text(EXPERIMENT.format(data_dir=data_dir, acts=list(acts), seeds=seeds, steps=steps))
    return str(p)


# ----------------------------------------------------------------------------- leases


def test_a_lease_is_exclusive_renewed_released_and_taken_over_after_expiry(tmp_path):
    d = str(tmp_path / "trial")
    rec = lease.acquire(d)
    assert rec is not None and lease.is_live(lease.read(d)) and lease.held_by_me(d)
    assert lease.acquire(d) is not None  # this process again: still its own
    before = lease.read(d)["renewed"]
    time.sleep(0.01)
    assert lease.renew(d) and lease.read(d)["renewed"] > before
    lease.release(d)
    assert lease.read(d) is None and not lease.held_by_me(d)

    # an owner on another host: live until its heartbeat is older than its TTL
    other = {
        "owner": "elsewhere/123/abc",
        "host": "elsewhere",
        "pid": 123,
        "pidns": "x",
        "job": {"executor": "slurm", "id": "7_1"},
        "acquired": time.time(),
        "renewed": time.time(),
        "ttl": 2.0,
    }
    store.rundir.write_json(lease.path(d), other)
    assert lease.is_live(other) and lease.acquire(d) is None
    assert store.read_status(d)["status"] == "running"  # whatever status.json says
    assert not trial_status.mark(d, "queued")  # a non-owner does not write its status
    assert not os.path.exists(os.path.join(d, store.STATUS_FILE))
    stale = {**other, "renewed": time.time() - 3}
    store.rundir.write_json(lease.path(d), stale)
    assert not lease.is_live(stale)
    taken = lease.acquire(d)
    assert taken is not None and taken["previous_owner"] == "elsewhere/123/abc"
    lease.release(d)

    # on this host, a dead process's lease is dead at once (no waiting for the TTL)
    p = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = {
        **lease.identity(),
        "owner": "x/1/y",
        "pid": int(p.stdout),
        "renewed": time.time(),
        "ttl": 60.0,
    }
    assert not lease.is_live(dead)
    # and a lease of this very process that it no longer holds is dead too
    assert not lease.is_live(
        {**lease.identity(), "owner": "mine/but/released", "renewed": time.time(), "ttl": 60.0}
    )


def _race(directory, barrier, out):
    barrier.wait()
    out.put(lease.acquire(directory) is not None)
    time.sleep(0.5)  # hold it while the others try


def test_of_processes_racing_for_a_lease_exactly_one_wins(tmp_path):
    ctx = mp.get_context("spawn")
    for i in range(3):
        d = str(tmp_path / f"trial{i}")
        barrier, out = ctx.Barrier(4), ctx.Queue()
        procs = [ctx.Process(target=_race, args=(d, barrier, out)) for _ in range(4)]
        for p in procs:
            p.start()
        wins = [out.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(30)
        assert sum(wins) == 1, wins


# ----------------------------------------------------------------------------- local pool


def test_gpu_workers_get_their_own_device_and_memory_fraction(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("XLA_PYTHON_CLIENT_MEM_FRACTION", raising=False)
    assert executors.gpu_worker_envs(2) == [
        {"CUDA_VISIBLE_DEVICES": "0"},
        {"CUDA_VISIBLE_DEVICES": "1"},
    ]
    envs = executors.gpu_worker_envs(2, per_gpu=3)
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["0"] * 3 + ["1"] * 3
    assert {e["XLA_PYTHON_CLIENT_MEM_FRACTION"] for e in envs} == {"0.300"}
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")  # the host's own selection is kept
    assert [e["CUDA_VISIBLE_DEVICES"] for e in executors.gpu_worker_envs(2)] == ["4", "6"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setenv("CNN_JAX_GPUS", "2")
    local = executors.create("local", {})
    assert len(local.plan_workers(10)) == 2 and len(local.plan_workers(1)) == 1
    assert len(executors.create("local", {"trials_per_gpu": 2}).plan_workers(10)) == 4
    monkeypatch.setenv("CNN_JAX_GPUS", "0")
    with pytest.raises(UserError, match="no GPU"):
        executors.create("local", {"trials_per_gpu": 2}).plan_workers(4)


def test_a_gpu_host_runs_one_worker_per_gpu(tmp_path, data_dir, monkeypatch):
    """On CPU, through the environment each worker gets (recorded in status.json)."""
    monkeypatch.setenv("CNN_JAX_GPUS", "2")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    exp = _experiment(tmp_path, data_dir, seeds=1)
    wd = str(tmp_path / "sweep")
    out = runner.run(exp, wd, log=lambda s: None, report=False)
    assert out["done"] == 2
    seen = {
        store.read_status(os.path.join(wd, "trials", t["name"]))["env"]["CUDA_VISIBLE_DEVICES"]
        for t in store.load_sweep(wd)["trials"]
    }
    assert seen == {"0", "1"}  # two workers, one per GPU, one trial each


def test_study_run_from_a_script_without_main_guard(tmp_path, data_dir):
    exp = _experiment(tmp_path, data_dir, acts=("relu",), seeds=2)
    script = tmp_path / "plain.py"
    script.write_text(
        textwrap.dedent(f"""
        from cnn_jax import study
        print("SCRIPT BODY RAN")
        out = study.run({exp!r}, {str(tmp_path / "sweep")!r}, workers=1, report=False)
        print("RESULT", out["done"], out["failed"])
    """)
    )
    r = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("SCRIPT BODY RAN") == 1  # the worker did not run the script again
    assert "RESULT 2 0" in r.stdout


def test_a_dead_worker_says_why_its_trial_failed(tmp_path, data_dir):
    # Every worker's first trial kills its process after writing an error (as an
    # out-of-memory kill or a native crash would), through a sitecustomize on its path.
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        textwrap.dedent("""
        import os, sys
        if "cnn_jax.study.execution.worker" in sys.orig_argv:
            from cnn_jax.study.execution import task
            def die(cfg, d, load=None):
                sys.stderr.write("Fatal: cudaMalloc failed: out of memory (simulated)\\n")
                sys.stderr.flush()
                os._exit(9)
            task._fit_single = die
    """)
    )
    exp = _experiment(tmp_path, data_dir, acts=("relu",), seeds=1)
    wd = str(tmp_path / "sweep")
    env = {**os.environ, "PYTHONPATH": f"{hook}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    r = subprocess.run(
        [sys.executable, "-m", "cnn_jax", "sweep", exp, "--workdir", wd, "--workers", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert r.returncode == 1
    name = store.load_sweep(wd)["trials"][0]["name"]
    st = json.loads(Path(os.path.join(wd, "trials", name, "status.json")).read_text())
    assert st["status"] == "failed"
    assert st["error"] == (
        "worker process died (exit code 9): Fatal: cudaMalloc failed: out of memory (simulated)"
    )
    assert any("out of memory" in x for x in st["stderr_tail"])
    assert "worker process died (exit code 9): Fatal: cudaMalloc" in r.stdout  # on the console


def test_two_concurrent_sweeps_on_one_workdir_never_run_a_trial_twice(tmp_path, data_dir):
    exp = _experiment(tmp_path, data_dir, acts=("relu", "tanh", "elu"), seeds=2, steps=40)
    wd = str(tmp_path / "sweep")
    cmd = [sys.executable, "-m", "cnn_jax", "sweep", exp, "--workdir", wd, "--workers", "1"]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    names = [t["name"] for t in store.load_sweep(wd)["trials"]]
    trained = [
        {
            n
            for n in names
            if any(
                line.split()[1:2] == ["done"] and n in line and "by another sweep" not in line
                for line in o.splitlines()
            )
        }
        for o in outs
    ]
    # each trial trained by exactly one of the two sweeps, and each sweep ends with all six
    assert trained[0].isdisjoint(trained[1]) and trained[0] | trained[1] == set(names), outs
    for o in outs:
        assert "6 done, 0 diverged, 0 failed" in o
    for n in names:  # the trial logs: one uninterrupted run each
        d = os.path.join(wd, "trials", n)
        summary = json.loads(Path(os.path.join(d, "summary.json")).read_text())
        assert summary["resumed_from"] == 0
        steps = [r["step"] for r in store.rundir.read_metrics(d) if r["split"] == "train"]
        assert steps == sorted(set(steps))


# ----------------------------------------------------------------------------- bad input


def _cli(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--executor", "slurmm"], "unknown executor 'slurmm'; choose one of: local, slurm, ray"),
        (["--executor", "ray", "--ray-address", "127.0.0.1:9"], "no Ray cluster at 127.0.0.1:9"),
        (["--executor", "ray", "--ray-address", "nonsense"], "--ray-address must be HOST:PORT"),
        (
            ["--executor", "slurm", "--ray-address", "h:1"],
            "--ray-address is an option of the ray executor, not of slurm",
        ),
        (
            ["--executor", "ray", "--partition", "gpu"],
            "--partition is an option of the slurm executor, not of ray",
        ),
        (
            ["--executor", "slurm", "--workers", "2"],
            "--workers is an option of the local executor, not of slurm",
        ),
        (
            ["--trials-per-gpu", "2", "--executor", "ray"],
            "--trials-per-gpu is an option of the local executor, not of ray",
        ),
        (
            ["--gpus-per-trial", "1"],
            "--gpus-per-trial is an option of the slurm and ray executors, not of local",
        ),
        (["--executor", "slurm", "--time", "0"], "--time must be positive, got 0"),
    ],
)
def test_bad_executor_input_is_one_line_and_writes_nothing(
    capsys, tmp_path, data_dir, args, message
):
    exp = _experiment(tmp_path, data_dir)
    wd = tmp_path / "w"
    t0 = time.time()
    code, _, err = _cli(capsys, "sweep", exp, "--workdir", str(wd), *args)
    assert code == 2 and err.startswith("error: ") and message in err, err
    assert len(err.strip().splitlines()) == 1 and time.time() - t0 < 30
    assert not wd.exists()


def test_slurm_without_sbatch_on_path(capsys, tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable))
    exp = _experiment(tmp_path, data_dir)
    code, _, err = _cli(
        capsys, "sweep", exp, "--workdir", str(tmp_path / "w"), "--executor", "slurm"
    )
    assert code == 2 and "sbatch is not on PATH" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--nodes", "2"], "--nodes is an option of --executor slurm"),
        (
            ["--executor", "slurm", "--nodes", "2", "--coordinator", "h:1"],
            "--executor slurm starts the processes itself",
        ),
    ],
)
def test_bad_launcher_input_is_one_line(capsys, tmp_path, data_dir, args, message):
    code, _, err = _cli(
        capsys,
        "train",
        "--config",
        "experiments/lenet5_mnist.py",
        "--workdir",
        str(tmp_path / "w"),
        f"--config.data.data_dir={data_dir}",
        *args,
    )
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "w").exists()


def test_engines_are_imported_only_by_their_executor_and_the_cache_is_shared(tmp_path):
    code = (
        "import sys; from cnn_jax.study.execution import executors, runner; "
        "executors.create('local', {}); "
        "print(sorted(m for m in ('ray', 'submitit', 'jax') if m in sys.modules))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"
    # every job of a sweep compiles into (and reuses) the cache under the sweep's workdir
    wd = str(tmp_path / "sweep")
    cache = runner.cache_dir_for(wd)
    assert cache == os.path.join(wd, ".cache", "xla")
    assert runner._runtime_settings(cache)["jax"]["jax_compilation_cache_dir"] == cache
    assert runner.cache_dir_for(wd, "off") is None
    assert runner.cache_dir_for(wd, str(tmp_path / "shared")) == str(tmp_path / "shared")


def test_the_local_pool_reads_only_workers_with_events_waiting(monkeypatch):
    """An idle worker gets its next task while another is still in the middle of one: the
    pool reads only the workers that have something to read (a read of a busy one would
    block until its trial ends). The fake workers fail a read with nothing to read."""
    import select

    from cnn_jax.study.execution.executors import local

    workers = []

    class FakeWorker:
        def __init__(self, settings, env, index):
            self.r, self.w = os.pipe()
            self.env, self.index, self.task = env, index, None
            self.finished, self.attempted = set(), set()
            self.eof, self.tail, self.sent = False, [], []
            workers.append(self)

        def fileno(self):
            return self.r

        def emit(self, *events):
            os.write(self.w, b"".join(json.dumps(e).encode() + b"\n" for e in events))

        def send(self, task):
            self.task, self.finished, self.attempted = task, set(), set()
            self.sent.append(task["name"])
            name = task["name"]
            self.emit({"event": "running", "name": name})
            if name.startswith("short"):  # ends at once
                self.emit({"event": "done", "name": name}, {"event": "idle"})
            if name == "short2":  # the last short one: the long task ends too
                workers[0].emit({"event": "done", "name": "long"}, {"event": "idle"})

        def events(self):
            assert select.select([self.r], [], [], 0)[0], f"worker {self.index}: read with nothing to read"
            out = []
            for line in os.read(self.r, 1 << 16).decode().splitlines():
                out.append(json.loads(line))
            return out

        def stop(self, interrupted=False):
            os.close(self.r)
            os.close(self.w)

    monkeypatch.setattr(local, "_Worker", FakeWorker)
    handled = []
    tasks = [{"name": n, "trials": [{"name": n}]} for n in ("long", "short0", "short1", "short2")]
    local._run_pool(tasks, [{}, {}], {}, handled.append, print)
    assert workers[0].sent == ["long"] and workers[1].sent == ["short0", "short1", "short2"]
    assert sorted(e["name"] for e in handled if e["event"] == "done") == ["long", "short0", "short1", "short2"]


def test_cpu_workers_get_disjoint_cpus(monkeypatch):
    from cnn_jax.study.execution.executors import local

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 5}, raising=False)
    # one CPU per trial by default, however many workers: a trial's numbers depend on it
    assert local.cpu_groups(2) == ["0", "1"] and local.cpu_groups(1) == ["0"]
    assert local.cpu_groups(2, 2) == ["0,1", "2,3"]
    assert local.cpu_groups(7) == ["0", "1", "2", "3", "5", "0", "1"]  # too many: shared
    assert local.cpu_groups(3, 2) == ["0,1", "2,3", "5,0"]
    monkeypatch.setenv("CNN_JAX_GPUS", "0")
    envs = executors.create("local", {"workers": 2}).plan_workers(n_tasks=4)
    assert [e[store.WORKER_CPUS_ENV] for e in envs] == ["0", "1"]
    envs = executors.create("local", {"cpus": 2}).plan_workers(n_tasks=4)  # 5 CPUs: 2 workers
    assert [e[store.WORKER_CPUS_ENV] for e in envs] == ["0,1", "2,3"]
    one = executors.create("local", {"workers": 2}).plan_workers(n_tasks=1)  # one task
    assert [e[store.WORKER_CPUS_ENV] for e in one] == ["0"]
    with pytest.raises(UserError, match=r"--cpus-per-trial 6: this machine offers the pool 5 CPUs; choose 1 to 5"):
        executors.create("local", {"cpus": 6})


HANG_S = 1800  # a guard against a hung worker, never a statement about speed


@pytest.mark.skipif(len(getattr(os, "sched_getaffinity", lambda p: [])(0)) < 2,
                    reason="pinning two workers needs two CPUs")
def test_a_two_worker_sweep_pins_each_worker_and_reports_the_workers_time(tmp_path, data_dir, monkeypatch):
    exp = _experiment(tmp_path, data_dir, seeds=2, steps=12)
    wd = str(tmp_path / "sweep")
    lines = []
    # Each worker waits inside its first trial until both have one: a worker that starts
    # late cannot find every seed taken by the other (helpers/hold.py), on any machine.
    env, held, release = hold(tmp_path, run=1, batch=2, per_process=True)
    for k, v in env.items():
        monkeypatch.setenv(k, v)

    def release_when_both_hold():
        deadline = time.monotonic() + HANG_S
        while len(os.listdir(held)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        release.touch()

    waiter = threading.Thread(target=release_when_both_hold, daemon=True)
    waiter.start()
    out = runner.run(exp, wd, workers=2, report=False, log=lines.append)
    waiter.join()
    assert len(os.listdir(held)) == 2
    assert out["done"] == 4 and out["workers"] == 2
    assert 0 < out["overhead"] < 1 and out["capacity_seconds"] == pytest.approx(2 * out["wall_seconds"])
    assert "in 2 workers" in lines[-1] and "(2 x the wall time)" in lines[-1]
    cpus = {json.loads(Path(wd, "trials", n, "status.json").read_text())["env"]["CNN_JAX_WORKER_CPUS"]
            for n in os.listdir(os.path.join(wd, "trials"))}
    from cnn_jax.study.execution.executors import local

    assert cpus == set(local.cpu_groups(2)) and len(cpus) == 2  # each config's task in its own worker


def test_an_idle_worker_takes_over_from_the_back_the_seeds_nobody_has_begun():
    from types import SimpleNamespace

    from cnn_jax.study.execution.executors import local

    def worker(index, names, attempted=(), vmap="off"):
        task = {"trials": [{"name": n} for n in names], "vmap": vmap}
        return SimpleNamespace(index=index, task=task, attempted=set(attempted), finished=set())

    a = worker(0, ["s0", "s1", "s2", "s3", "s4"], attempted=["s0"])
    b = worker(1, ["t0", "t1"], attempted=["t0"])
    ran = {"s0": 0, "t0": 1}
    idle = worker(2, [])
    idle.task = None
    part = local.split_off([a, b, idle], idle, ran)
    assert [t["name"] for t in part["trials"]] == ["s4", "s3", "s2", "s1"] and part["vmap"] == "off"
    idle.task = part  # given: a second idle worker gets what nobody has been given yet
    other = worker(3, [])
    other.task = None
    assert local.split_off([a, b, idle, other], other, ran)["trials"] == [{"name": "t1"}]
    b.attempted.add("t1")
    assert local.split_off([a, b, idle, other], other, ran) is None
    assert local.split_off([worker(0, ["v0", "v1"], vmap="on"), other], other, {}) is None

    # a dies while training s1 (s0 done; s2 was begun by the other worker, which has s3
    # and s4 yet to try)
    a.finished.add("s0")
    a.attempted |= {"s1"}
    ran |= {"s1": 0, "s2": 2}
    idle.attempted |= {"s2"}
    assert [t["name"] for t in local._orphans(a, [a, b, idle], ran, {})] == ["s1"]
    # the other worker found s3 taken by another sweep and passed it: not an orphan either
    idle.attempted |= {"s3"}
    assert [t["name"] for t in local._orphans(a, [a, b, idle], ran, {"s3": {}})] == ["s1"]
    idle.task = None  # ... and if it is gone, s3 (someone else's) and s4 (nobody's): s4 fails
    assert [t["name"] for t in local._orphans(a, [a, b, idle], ran, {"s3": {}})] == ["s1", "s4"]


@pytest.mark.skipif(len(getattr(os, "sched_getaffinity", lambda p: [])(0)) < 2,
                    reason="pinning two workers needs two CPUs")
def test_the_seeds_of_one_config_are_shared_out_between_two_workers(tmp_path, data_dir, monkeypatch):
    """One configuration, four seeds, two workers: the second worker takes over seeds the
    first has not started; every trial is trained once, and to the same result as one
    worker (pinned to one CPU too) training all four."""
    from cnn_jax.study.execution.executors import local

    exp = _experiment(tmp_path, data_dir, acts=("relu",), seeds=4, steps=12)
    wd = str(tmp_path / "sweep")
    lines = []
    # The interleaving is forced, not left to the machine's speed: each worker's first trial
    # waits (at a gate, through a sitecustomize on the workers' path) until both workers
    # have begun one, so the first cannot finish all four seeds before the second starts.
    # The second can only get a trial by taking over seeds the first has not begun.
    hook, gate = tmp_path / "hook", tmp_path / "gate"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(textwrap.dedent("""
        import os, sys, time
        if "cnn_jax.study.execution.worker" in sys.orig_argv:
            from cnn_jax.study.execution import task
            real, gate = task._fit_single, os.environ["CNN_JAX_TEST_GATE"]
            def gated(cfg, d, load=None):
                os.makedirs(gate, exist_ok=True)
                open(os.path.join(gate, str(os.getpid())), "w").close()
                deadline = time.monotonic() + 600  # a guard: the design says this returns
                while len(os.listdir(gate)) < 2 and time.monotonic() < deadline:
                    time.sleep(0.02)
                return real(cfg, d, load)
            task._fit_single = gated
    """))
    with monkeypatch.context() as m:
        m.setenv("PYTHONPATH", f"{hook}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
        m.setenv("CNN_JAX_TEST_GATE", str(gate))
        out = runner.run(exp, wd, workers=2, report=False, log=lines.append)
    assert len(os.listdir(gate)) == 2  # both workers reached the gate
    assert out["done"] == 4 and out["workers"] == 2
    assert len([x for x in lines if " done " in x]) == 4  # each counted once
    names = sorted(os.listdir(os.path.join(wd, "trials")))
    status = {n: json.loads(Path(wd, "trials", n, "status.json").read_text()) for n in names}
    assert len({s["pid"] for s in status.values()}) == 2
    assert {s["status"] for s in status.values()} == {"done"}

    one = str(tmp_path / "one")  # one worker: pinned to one CPU like each of the two
    assert runner.run(exp, one, workers=1, report=False, log=lambda s: None)["done"] == 4
    for n in names:
        got, want = (json.loads(Path(d, "trials", n, "summary.json").read_text()) for d in (wd, one))
        assert got["test"] == want["test"] and got["best"] == want["best"], n
