"""``cnn-jax sweep | status | report``: run a study, see where it stands, write its report.

Top-level imports stay light (argparse only); commands import what they need.
"""

from __future__ import annotations

import argparse

EXAMPLES = """examples:
  cnn-jax sweep experiments/pooling_study.py --workdir runs/pooling
  cnn-jax sweep experiments/pooling_study.py --workdir runs/pooling --dry-run
  cnn-jax sweep experiments/hparam_search.py --workdir runs/hp --workers 1 --config.train.epochs=1
  cnn-jax sweep experiments/pooling_study.py --workdir /shared/pooling --executor slurm \
      --partition gpu --gpus-per-trial 1 --time 120
  cnn-jax sweep experiments/pooling_study.py --workdir /shared/pooling --executor ray \
      --ray-address head:6379
  cnn-jax status runs/pooling
  cnn-jax report runs/pooling
"""


def _print_report(out: dict) -> None:
    print()
    print(out["table"])
    if out.get("comparison"):
        print()
        print(out["comparison"])
    print()
    print(f"report:  {out['report']}")
    print(f"results: {out['results']}")
    print(f"timing:  {out['timing']}")
    for p in out["plots"]:
        print(f"plot:    {p}")


def cmd_sweep(args, overrides) -> int:
    import signal

    from cnn_jax.study.execution import runner

    # `kill PID` stops a sweep like Ctrl-C: workers checkpoint, statuses say what is left.
    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    import os

    cache = args.cache_dir if args.cache_dir is not None else os.environ.get("CNN_JAX_CACHE_DIR")
    result = runner.run(
        args.experiment,
        args.workdir,
        overrides=overrides,
        workers=args.workers,
        vmap=args.vmap_seeds,
        dry_run=args.dry_run,
        report=not args.dry_run and ("strict" if args.strict_numerics else True),
        executor=args.executor,
        executor_options=executor_options(args),
        cache_dir=cache if cache is not None else runner.cache_dir_for(args.workdir),
        mlflow=args.mlflow,
    )
    if args.dry_run:
        return 0
    secs = result.get("seconds")
    print(
        f"{result['trials']} trials: {result['ran']} run now"
        + (f" in {secs:.0f} s" if secs is not None and result["ran"] else "")
        + f", {result['skipped']} skipped (already finished); {result['done']} done, "
        f"{result['diverged']} diverged, {result['failed']} failed"
        + (f", {result['interrupted']} interrupted" if result.get("interrupted") else "")
    )
    _print_report(result["report"])
    if result.get("interrupted"):
        print(
            f"{result['interrupted']} trial(s) were interrupted (their jobs ended early): re-run "
            "the same command to resume them from their checkpoints"
        )
        return 75
    return 1 if result["failed"] else 0


def executor_options(args) -> dict:
    """The executor options given on the command line (``None``: not given)."""
    return {
        "trials_per_gpu": args.trials_per_gpu,
        "partition": args.partition,
        "time_min": args.time,
        "cpus": args.cpus_per_trial,
        "gpus": args.gpus_per_trial,
        "mem_gb": args.mem_gb,
        "array_parallelism": args.array_parallelism,
        "sbatch": args.sbatch,
        "address": args.ray_address,
    }


def cmd_status(args, overrides) -> int:
    import os

    from cnn_jax import rundir
    from cnn_jax.errors import UserError
    from cnn_jax.study import store

    if overrides:
        raise UserError("status takes no --config overrides")
    rec = store.load_sweep(args.workdir)
    rows = []
    for t in rec["trials"]:
        d = os.path.join(args.workdir, store.TRIALS_DIR, t["name"])
        rows.append((t["name"], d, store.read_status(d)))
    order = ("done", "running", "queued", "interrupted", "failed", "diverged", "missing")
    counts = {s: sum(1 for *_, st in rows if st["status"] == s) for s in order}
    print(f"{args.workdir}: {rec['experiment']}, {len(rows)} trials")
    print("  " + ", ".join(f"{s} {n}" for s, n in counts.items() if n or s == "done"))
    jobs = _job_states(rows)
    for name, d, st in rows:
        s = st["status"]
        if s == "done" and not args.all:
            continue
        if s in ("queued", "missing") and not args.all:
            continue
        extra = ""
        if s in ("running", "interrupted"):
            steps = [r["step"] for r in rundir.read_metrics(d)]
            extra = f"(at step {max(steps)})" if steps else "(starting)"
            if s == "running":
                owner = st.get("lease") or st
                extra += f" pid {owner.get('pid')} on {owner.get('host')}"
        elif s in ("failed", "diverged"):
            extra = st.get("error", "")
        elif s == "done":
            summary = rundir.read_summary(d) or {}
            acc = (summary.get("test") or {}).get("accuracy")
            extra = f"test accuracy {acc:.4f}" if acc is not None else ""
        job = (st.get("lease") or {}).get("job") or st.get("job") or {}
        if job.get("executor") in ("slurm", "ray") and s != "done":
            state = jobs.get(job.get("id"))
            extra += f"  [{job['executor']} job {job.get('id')}{f' {state}' if state else ''}]"
        print(f"  {s:<11} {name}  {extra}".rstrip())
    if counts["running"]:
        print(f"{counts['running']} trial(s) are being trained (their owners renew their leases)")
    elif counts["interrupted"] or counts["queued"] or counts["failed"] or counts["missing"]:
        print(
            f"re-run `cnn-jax sweep {rec['experiment']} --workdir {args.workdir}` to finish "
            "(finished trials are skipped, interrupted ones resume, failed ones are retried)"
        )
    return 0


def _job_states(rows) -> dict[str, str]:
    """SLURM's state of the trials' jobs (``squeue``), where SLURM is at hand."""
    import shutil

    ids = []
    for _, _, st in rows:
        job = (st.get("lease") or {}).get("job") or st.get("job") or {}
        if job.get("executor") == "slurm" and st["status"] != "done" and job.get("id"):
            ids.append(job["id"])
    if not ids or shutil.which("squeue") is None:
        return {}
    from cnn_jax import slurm
    from cnn_jax.errors import UserError

    try:
        return slurm.squeue_states(ids)
    except UserError:
        return {}


def cmd_report(args, overrides) -> int:
    from cnn_jax.errors import UserError
    from cnn_jax.study.reporting import write as report

    if overrides:
        raise UserError("report takes no --config overrides")
    from cnn_jax.study import store

    store.load_sweep(args.workdir)  # a clear error before heavy imports
    _print_report(report.write(args.workdir, strict_numerics=args.strict_numerics))
    return 0


STRICT_HELP = ("refuse to report (exit 2, the previous report kept) when the trials ran in more "
               "than one numeric environment (jax/jaxlib, CPU model, CPUs per trial, XLA "
               "options: summary.json's numerics)")


def add_commands(sub: argparse._SubParsersAction) -> None:
    _add_sweep(sub)

    st = sub.add_parser("status", help="where a sweep stands: counts, running, failed trials")
    st.add_argument("workdir", help="sweep directory")
    st.add_argument("--all", action="store_true", help="list every trial")
    st.set_defaults(func=cmd_status)

    r = sub.add_parser("report", help="(re)write a sweep's results.csv, report.md and plots")
    r.add_argument("workdir", help="sweep directory")
    r.add_argument("--strict-numerics", action="store_true", help=STRICT_HELP)
    r.set_defaults(func=cmd_report)


def _add_sweep(sub) -> None:
    s = sub.add_parser(
        "sweep",
        help="run a study: every trial of an experiment's get_sweep() (skips finished ones)",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument(
        "experiment", help="experiment file FILE.py[:ARG] with get_config() and get_sweep()"
    )
    s.add_argument("--workdir", required=True, help="sweep directory (one run directory per trial)")
    s.add_argument(
        "--workers",
        type=int,
        default=None,
        help="parallel worker processes (default: fits the machine; 0: in this process)",
    )
    s.add_argument(
        "--vmap-seeds",
        choices=("auto", "on", "off"),
        default="auto",
        help="train the seeds of a config as one vmapped program (auto: on accelerators)",
    )
    s.add_argument("--dry-run", action="store_true", help="list the trials and what would run")
    s.add_argument(
        "--executor",
        default="local",
        help="where trials run: local (worker processes here, default), slurm (job arrays "
        "through submitit) or ray",
    )
    s.add_argument(
        "--cache-dir",
        help="compilation cache shared by the sweep's jobs (default: $CNN_JAX_CACHE_DIR, else "
        "WORKDIR/.cache/xla; off: none)",
    )
    s.add_argument("--strict-numerics", action="store_true", help=STRICT_HELP)
    s.add_argument("--mlflow", metavar="URI", help="also write the sweep and a nested run per "
                   "finished trial to this MLflow tracking URI (needs the mlflow extra)")
    _add_executor_options(s)
    s.set_defaults(func=cmd_sweep)


def _add_executor_options(s) -> None:
    """The sweep's options of its executors (see :func:`executor_options`)."""
    g = s.add_argument_group("every executor")
    g.add_argument(
        "--cpus-per-trial",
        type=int,
        help="CPUs each trial is pinned to, on every executor (default 1; a trial's numbers "
        "depend on it, not on the number of workers)",
    )
    g = s.add_argument_group("local executor")
    g.add_argument(
        "--trials-per-gpu",
        type=int,
        help="workers per GPU on a GPU host (default 1; JAX's memory fraction is split)",
    )
    g = s.add_argument_group("slurm and ray executors")
    g.add_argument("--gpus-per-trial", type=int, help="GPUs per trial (default 0)")
    g.add_argument("--mem-gb", type=float, help="memory per trial in GiB")
    g = s.add_argument_group("slurm executor")
    g.add_argument("--partition", help="SLURM partition")
    g.add_argument("--time", type=int, help="time limit per job in minutes (default 60)")
    g.add_argument(
        "--array-parallelism", type=int, help="at most this many array tasks at once"
    )
    g.add_argument(
        "--sbatch",
        action="append",
        metavar="KEY=VALUE",
        help="extra sbatch option, e.g. --sbatch account=proj --sbatch qos=low (repeatable)",
    )
    g = s.add_argument_group("ray executor")
    g.add_argument("--ray-address", help="HOST:PORT of the Ray cluster's head, or auto")
