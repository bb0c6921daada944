"""The protocol statement of a sweep report: data sizes per split, the budget, the selection
rule, the plateau check and the power of the comparisons."""

from __future__ import annotations

import math
from typing import Any

from cnn_jax import rundir
from cnn_jax.errors import UserError
from cnn_jax.study.reporting.aggregate import PLATEAU_TOLERANCE, judged, with_labels
from cnn_jax.study.reporting.rows import label, trial_config, trial_dir
from cnn_jax.study.reporting.text import value_range


def _get(cfg: dict, key: str):
    v: Any = cfg
    for part in key.split("."):
        if not isinstance(v, dict) or part not in v:
            return None
        v = v[part]
    return v


def _values(cfgs: list[dict], key: str) -> str:
    """The distinct values of ``key`` over the trials' configs, in order of appearance."""
    vals = list(dict.fromkeys(label(_get(c, key)) for c in cfgs))
    if len(vals) <= 4:
        return " / ".join(vals)
    return f"{len(vals)} values ({', '.join(vals[:3])}, …)"


def _count(x) -> str:
    return f"{int(x):,}" if isinstance(x, (int, float)) and math.isfinite(x) else "-"


def section(workdir: str, df, agg, comp, keys: list[str]) -> list[str]:
    """The lines of the report's protocol section: data sizes per split, budget, numeric
    environment, selection rule, plateau check and power."""
    done = df[df.status == "done"]
    lines = ["## Protocol", ""]
    if not len(done):
        return lines + ["No trial has finished yet.", ""]
    per_trial = [trial_config(workdir, t) for t in done["trial"]]
    cfgs = [c for c in per_trial if c is not None]
    has_val = bool((done["validation_n"].fillna(0) > 0).any())
    lines.append(_data_line(done, per_trial, cfgs, has_val))
    lines.append(_budget_line(done, cfgs))
    lines.append(_numerics_line(workdir, done))
    if cfgs:
        lines.append(_optim_line(cfgs, keys))
    lines.append(_selection_line(has_val))
    lines.append(_plateau_line(agg, keys))
    if len(comp):
        lines.append(_power_line(comp))
    return lines + [""]


def _data_line(done, per_trial: list, cfgs: list[dict], has_val: bool) -> str:
    """The split sizes (summary.json "data") per dataset, and how validation was held out."""
    sizes: dict[tuple, None] = {}
    for (_, r), c in zip(done.iterrows(), per_trial):
        name = _get(c, "data.name") if c else None
        sizes.setdefault(
            (label(name) if name else "-", r["train_n"], r["validation_n"], r["test_n"]), None
        )
    parts = [
        f"{name}: {_count(tr)} train / {_count(va)} validation / {_count(te)} test images"
        for name, tr, va, te in sizes
    ]
    held = _values(cfgs, "data.validation") if cfgs else "-"
    return (
        "- Data: "
        + "; ".join(parts)
        + (
            f". Validation is a stratified, seeded hold-out of the train split "
            f"(`data.validation` = {held}), the same for every seed; the test split is "
            "separate."
            if has_val
            else ". No validation split (`data.validation` = 0)."
        )
    )


def _budget_line(done, cfgs: list[dict]) -> str:
    """Planned and trained steps, batch size, early stopping."""
    planned = done["planned_steps"]
    per_epoch = done["steps"] / done["epochs"]
    planned_epochs = (planned / per_epoch).round(4)
    early = int((done["stopped_early"] == True).sum())
    epochs = _values([{"v": float(v)} for v in planned_epochs.tolist()], "v")
    budget = (
        f"- Budget per trial: {_values([{'v': v} for v in planned.tolist()], 'v')} steps "
        f"({epochs} epoch{'' if epochs == '1' else 's'})"
    )
    if cfgs:
        budget += f" at batch size {_values(cfgs, 'data.batch_size')}"
    return budget + (
        "; every trial trained all its planned steps."
        if not early
        else f"; {early} of {len(done)} trials stopped early (validation accuracy had not "
        f"improved for `train.early_stopping_patience` = "
        f"{_values(cfgs, 'train.early_stopping_patience') if cfgs else '-'} evaluations)."
    )


def describe_numerics(env: dict) -> str:
    """One numeric environment (summary.json ``numerics``) in words."""
    isa = f" ({', '.join(env['isa'])})" if env.get("isa") else ""
    flags = f"; XLA_FLAGS `{env['xla_flags']}`" if env.get("xla_flags") else ""
    options = env.get("compiler_options") or {}
    opts = "; compile options " + ", ".join(f"{k}={v!r}" for k, v in sorted(options.items())) if options else ""
    return (f"jax {env.get('jax')} / jaxlib {env.get('jaxlib')} on {env.get('backend')} "
            f"({env.get('devices')} × {env.get('device_kind')}), {env.get('cpu')}{isa}, "
            f"{env.get('cpus')} CPU(s) per trial; convolutions {env.get('conv')}{opts}{flags}")


def _recorded(workdir: str, names) -> list[dict | None]:
    """Each trial of ``names`` that has a summary: its ``numerics`` (``None``: not recorded)."""
    summaries = (rundir.read_summary(trial_dir(workdir, name)) for name in names)
    return [s.get("numerics") for s in summaries if s is not None]


def _environments(recorded: list[dict | None]) -> tuple[dict[str, int], int]:
    envs: dict[str, int] = {}
    for env in recorded:
        if env is not None:
            key = describe_numerics(env)
            envs[key] = envs.get(key, 0) + 1
    unknown = sum(env is None for env in recorded)
    return dict(sorted(envs.items(), key=lambda kv: -kv[1])), unknown  # the most trials first


def numeric_environments(workdir: str, names) -> tuple[dict[str, int], int]:
    """``({environment in words: number of trials}, trials without a record)`` over the
    trials ``names`` that have a summary."""
    return _environments(_recorded(workdir, names))


def require_one_environment(workdir: str, names) -> None:
    """A one-line :class:`UserError` unless the trials ``names`` that finished training ran
    in one numeric environment (``--strict-numerics``)."""
    envs, unknown = numeric_environments(workdir, names)
    if len(envs) > 1 or (envs and unknown):
        listed = "; ".join(f"{n} trial{'s' if n > 1 else ''}: {k}" for k, n in envs.items())
        extra = f"; {unknown} without a record" if unknown else ""
        raise UserError(
            f"--strict-numerics: the trials ran in {len(envs) + bool(unknown)} numeric "
            f"environments ({listed}{extra}); re-run the trials of the odd ones out (delete their "
            "directories) in one environment, or report without --strict-numerics"
        )


def _numerics_line(workdir: str, done) -> str:
    """The numeric environments the finished trials ran in; a study whose trials ran in
    several says that its comparisons mix them."""
    recorded = _recorded(workdir, done["trial"])
    envs, unknown = _environments(recorded)
    if not envs:
        return "- Numeric environment: not recorded by these trials."
    missing = f" ({unknown} trials did not record theirs)" if unknown else ""
    convs = _conv_sentence(recorded)
    if len(envs) == 1:
        return f"- Numeric environment: {next(iter(envs))}{missing}.{convs}"
    listed = "; ".join(f"{n} trials: {k}" for k, n in envs.items())
    return (f"- Numeric environments: the trials ran in {len(envs)} ({listed}){missing}. "
            "Comparisons mix them: a difference can come from the environment as well as "
            "from the configuration; `cnn-jax report --strict-numerics` refuses such a study."
            + convs)


def _conv_sentence(recorded: list[dict | None]) -> str:
    """The convolution formulations that trials in the measured mode (``CNN_JAX_CONV=
    tuned``, :mod:`cnn_jax.conv_tuning`) traced, per layer geometry, when any is not XLA's
    (the other modes' choices follow from the mode the environment names); a geometry
    computed differently by trials of one mode is named (in a rule mode: trials recorded
    before its rules were changed, which :mod:`cnn_jax.conv_tuning` no longer does).
    ``recorded``: the trials' ``numerics``."""
    by_mode: dict[tuple[str, str], set[str]] = {}
    for env in recorded:
        for geom, choice in ((env or {}).get("conv_choices") or {}).items():
            by_mode.setdefault((str(env.get("conv")), geom), set()).add(choice)
    tuned = {g: c for (m, g), c in by_mode.items() if m == "tuned"}
    text = ""
    if not all(c == {"xla/xla/xla"} for c in tuned.values()):
        parts = [f"`{g}` {' or '.join(sorted(c))}" for g, c in sorted(tuned.items())]
        text = f" Convolutions (forward/input/kernel gradient, per layer geometry): {'; '.join(parts)}."
    mixed = sum(len(c) > 1 for c in tuned.values())
    if mixed:
        text += f" {mixed} geometr{'ies were' if mixed > 1 else 'y was'} computed differently by different trials."
    other = [f"`{g}` {' or '.join(sorted(c))}" for (m, g), c in sorted(by_mode.items()) if m != "tuned" and len(c) > 1]
    if other:
        text += (" Trials of one convolution mode computed these geometries differently "
                 f"(forward/input/kernel gradient): {'; '.join(other)}.")
    return text


def _optim_line(cfgs: list[dict], keys: list[str]) -> str:
    """The optimizer, its schedule and the evaluation interval."""
    optim = (
        f"- Optimizer {_values(cfgs, 'optim.name')}, learning rate "
        f"{_values(cfgs, 'optim.learning_rate')}, schedule {_values(cfgs, 'optim.schedule')}"
        f" (warm-up {_values(cfgs, 'optim.warmup_steps')} steps / "
        f"{_values(cfgs, 'optim.warmup_epochs')} epochs), weight decay "
        f"{_values(cfgs, 'optim.weight_decay')}; validation evaluated every "
        f"{_values(cfgs, 'train.eval_every_epochs')} epoch(s) and after the last step."
    )
    swept = [k for k in keys if k.startswith(("optim.", "data.batch_size", "train."))]
    if swept:
        optim += " Swept: " + ", ".join(f"`{k}`" for k in swept) + " (see the tables)."
    return optim


def _selection_line(has_val: bool) -> str:
    if has_val:
        return (
            "- Selection: each trial's best checkpoint, early stopping and every ranking or "
            '"best configuration" below use validation accuracy; the test split is evaluated '
            "once, at the end of training, for the final state and for the best-by-validation "
            "checkpoint. Tables and comparisons with the baseline report the final state's "
            "test metric, the analyses the state each names below; the test split never "
            "chooses anything."
        )
    return (
        "- Selection: none. Without a validation split no checkpoint or configuration is "
        "selected (selecting on the test split would bias it); the test split is "
        "evaluated once, at the end."
    )


def _plateau_line(agg, keys: list[str]) -> str:
    with_verdict = agg[agg["plateaued"].map(judged)]
    not_judged = len(agg[agg.n > 0]) - len(with_verdict)
    rule = (
        f"A seed has plateaued when the mean of its own last two validation evaluations is "
        f"within {100 * PLATEAU_TOLERANCE:.1f} pp of its own best (with early stopping, at its "
        'own end), an arm when every seed has (column "plateau": the mean over seeds of last '
        "two − best, and the seeds that had not). With a learning rate that decays to zero "
        "every run flattens at its end whatever its length, so this check alone does not show "
        "that the budget suffices; a budget check (`Study(budget_check=...)`, its own section "
        "where run) does."
    )
    if not len(with_verdict):
        return f"- Plateau check: not judged (fewer than two validation evaluations). {rule}"
    bad = with_labels(with_verdict[~with_verdict["plateaued"].astype(bool)], keys)
    if not len(bad):
        text = "every arm plateaued"
    else:
        text = (
            "not plateaued: "
            + ", ".join(
                f"{r['configuration']} ({100 * r['plateau_gap']:.2f} pp; {int(r['plateau_not'])} "
                f"of {int(r['plateau_seeds'])} seeds)"
                for _, r in bad.iterrows()
            )
            + "; longer training may change their results"
        )
    if not_judged:
        text += f"; {not_judged} arm(s) not judged (fewer than two evaluations)"
    return f"- Plateau check: {text}. {rule}"


def _power_line(comp) -> str:
    alphas = value_range(comp["alpha_power"].tolist(), lambda v: f"{v:.4g}")
    m = value_range(comp["family_size"].tolist(), lambda v: str(int(v)))
    return (
        "- Power: for each comparison with the baseline, the minimum detectable difference "
        "(MDD) is the true mean Δ that the two-sided paired t-test detects with 80 % power "
        "given the observed sd of the paired differences (noncentral t with n − 1 degrees of "
        'freedom), and "seeds for Δ" the number of seeds that would detect the observed Δ '
        f"with 80 % power. Both use α/m = {alphas} (α = 0.05; m = {m}, the number of "
        "comparisons in the Holm family): Holm's strictest step, so the MDD holds whatever a comparison's rank. A "
        'non-significant verdict reads "no difference detectable at n = … (MDD …)", not '
        '"no difference".'
    )
