"""The Ray executor: one Ray task per trial on a fresh worker process, spread over the
cluster's nodes."""

from __future__ import annotations

import contextlib
import os
import socket
import threading

from cnn_jax.errors import UserError
from cnn_jax.study import store
from cnn_jax.study.execution import status as trial_status
from cnn_jax.study.execution.executors.base import FINAL_EVENTS, Executor, check_positive, register


def _ray_job(task: dict, settings: dict) -> dict:
    """A Ray task: a fresh worker process (``max_calls=1``), where Ray is already
    initialised and JAX not yet imported."""
    import ray

    ctx = ray.get_runtime_context()
    os.environ["CNN_JAX_EXECUTOR"] = "ray"
    os.environ["CNN_JAX_JOB_ID"] = f"{ctx.get_task_id()[:16]}@node-{ctx.get_node_id()[:8]}"
    from cnn_jax.study.execution import worker

    return worker.job_main(task, settings)


@contextlib.contextmanager
def _deadline(seconds: float):
    """Raises :class:`TimeoutError` in the main thread after ``seconds`` (SIGALRM);
    elsewhere does nothing."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def alarm(signum, frame):
        raise TimeoutError

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _is_loopback(host: str) -> bool:
    try:
        return socket.gethostbyname(host).startswith("127.")
    except OSError:
        return False


@register
class Ray(Executor):
    """One Ray task per task (``num_cpus``/``num_gpus`` of a trial, spread over the nodes,
    retried on another node when its node dies)."""

    name = "ray"
    OPTIONS = ("address", "cpus", "gpus", "mem_gb")
    CONNECT_TIMEOUT_S = 25

    def check(self) -> None:
        check_positive(self.options, "cpus")
        check_positive(self.options, "gpus", allow_zero=True)
        check_positive(self.options, "mem_gb")
        try:
            import ray
        except ImportError:
            raise UserError("--executor ray needs ray: pip install 'cnn-jax[ray]'") from None
        address = self.options.get("address") or os.environ.get("RAY_ADDRESS") or "auto"
        self.address = address
        if address != "auto":
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit():
                raise UserError(f"--ray-address must be HOST:PORT or auto, got {address!r}")
            try:
                socket.create_connection((host, int(port)), timeout=5).close()
            except OSError as e:
                raise UserError(
                    f"no Ray cluster at {address} ({e.strerror or e}); start one with `ray start "
                    "--head` (or scripts/local-ray up) and pass its address"
                ) from None
        self._connect()
        need_gpus = self.options.get("gpus") or 0
        if need_gpus:
            import ray

            have = ray.cluster_resources().get("GPU", 0)
            if have < need_gpus:
                self.close()
                raise UserError(
                    f"--gpus-per-trial {need_gpus}: the Ray cluster at {address} has {have:g} GPUs"
                )

    def _connect(self) -> None:
        import ray

        kwargs = {
            "address": self.address,
            "log_to_driver": False,
            "include_dashboard": False,
            "configure_logging": False,
            "namespace": "cnn-jax",
        }
        host = self.address.rpartition(":")[0] if self.address != "auto" else ""
        if host and _is_loopback(host):
            kwargs["_node_ip_address"] = "127.0.0.1"  # else it connects through another address
        try:
            with _deadline(self.CONNECT_TIMEOUT_S):
                ray.init(**kwargs)
        except TimeoutError:
            raise UserError(
                f"the Ray cluster at {self.address} did not answer within "
                f"{self.CONNECT_TIMEOUT_S} s; is it running (`ray status`)?"
            ) from None
        except Exception as e:  # noqa: BLE001  (reported as one line)
            first = (str(e).strip().splitlines() or [""])[0][:200]
            raise UserError(
                f"cannot connect to a Ray cluster at {self.address}: {type(e).__name__}: {first}"
            ) from None

    def run(self, tasks, settings, workdir, handle, log) -> None:
        import ray

        opts = {
            "num_cpus": float(self.options.get("cpus") or 1),
            "num_gpus": float(self.options.get("gpus") or 0),
            "max_calls": 1,  # a fresh process per task: JAX imported after the task's settings
            "max_retries": 3,  # on a dead node or worker: re-run elsewhere, from the checkpoint
            "retry_exceptions": False,
            "scheduling_strategy": "SPREAD",
        }
        if self.options.get("mem_gb"):
            opts["memory"] = int(self.options["mem_gb"] * 2**30)
        remote = ray.remote(**opts)(_ray_job)
        settings = {**settings, "env": {**settings.get("env", {})}}
        refs = {remote.remote(t, settings): t for t in tasks}
        log(f"submitted {len(refs)} Ray task{'s' if len(refs) > 1 else ''} to {self.address}")
        try:
            while refs:
                ready, _ = ray.wait(list(refs), num_returns=1, timeout=5)
                for ref in ready:
                    task = refs.pop(ref)
                    try:
                        out = ray.get(ref)
                    except Exception as e:  # noqa: BLE001  (the task failed for good)
                        err = f"Ray task failed: {type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"
                        for tr in task["trials"]:
                            st = store.read_status(tr["dir"])["status"]
                            if st not in store.FINISHED:
                                trial_status.mark(tr["dir"], "failed", error=err)
                                handle({"event": "failed", "name": tr["name"], "error": err})
                        continue
                    for ev in out["events"]:
                        if ev["event"] in FINAL_EVENTS:
                            handle(ev)
        except BaseException:
            for ref in refs:
                with contextlib.suppress(Exception):
                    ray.cancel(ref)
            raise

    def close(self) -> None:
        with contextlib.suppress(Exception):
            import ray

            ray.shutdown()
