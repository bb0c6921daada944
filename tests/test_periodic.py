"""The loop's bookkeeping: when to log, evaluate and checkpoint; selection on validation."""

from cnn_jax.train.periodic import EarlyStopping, Schedule


def test_schedule_points():
    s = Schedule(total=100, eval_every=30, log_every=20, checkpoint_every=0)
    assert [t for t in range(1, 101) if s.is_eval(t)] == [30, 60, 90, 100]
    assert [t for t in range(1, 101) if s.is_log(t)] == [20, 30, 40, 60, 80, 90, 100]
    assert [t for t in range(1, 101) if s.is_checkpoint(t)] == [30, 60, 90, 100]
    assert s.is_checkpoint(7, preempted=True) and s.needs_host(7, preempted=True)
    every = Schedule(total=100, eval_every=50, log_every=100, checkpoint_every=40)
    assert [t for t in range(1, 101) if every.is_checkpoint(t)] == [40, 50, 80, 100]


def test_best_only_checkpoints_skip_evaluations_that_do_not_improve():
    s = Schedule(total=100, eval_every=25, log_every=100, checkpoint_every=0, checkpoint_evals="best")
    assert s.is_checkpoint(25, improved=True) and not s.is_checkpoint(50, improved=False)
    assert s.is_checkpoint(100, improved=False)  # the last step always
    assert s.is_checkpoint(50, improved=None)  # no validation: every evaluation
    assert Schedule(100, 25, 100, 0).is_checkpoint(50, improved=False)  # "all"


def test_early_stopping_selects_the_first_best_and_replays_a_resume():
    es = EarlyStopping(patience=2)
    for step, acc in [(10, 0.5), (20, 0.7), (30, 0.7), (40, 0.6)]:
        es.update(step, {"accuracy": acc})
    assert (es.best_step, es.best_accuracy, es.since_best, es.stopped) == (20, 0.7, 2, True)
    rows = [{"step": st, "split": "validation", "accuracy": a} for st, a in
            [(10, 0.5), (20, 0.7), (30, 0.7), (40, 0.6)]] + [{"step": 20, "split": "train", "accuracy": 1.0}]
    again = EarlyStopping(patience=2)
    again.replay(rows, upto=30)  # a run resumed from step 30
    assert (again.best_step, again.since_best, again.stopped) == (20, 1, False)
    assert not EarlyStopping(0).stopped


def test_end_only_checkpoints_save_the_last_step_every_n_steps_and_on_preemption():
    s = Schedule(total=100, eval_every=25, log_every=100, checkpoint_every=0, checkpoint_evals="end")
    assert [t for t in range(1, 101) if s.is_checkpoint(t, improved=True)] == [100]
    assert s.is_checkpoint(7, preempted=True)
    every = Schedule(total=100, eval_every=25, log_every=100, checkpoint_every=40, checkpoint_evals="end")
    assert [t for t in range(1, 101) if every.is_checkpoint(t, improved=True)] == [40, 80, 100]
