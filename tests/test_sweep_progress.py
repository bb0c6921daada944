"""The sweep's progress lines: elapsed time and an ETA from the mean time per trial."""

from cnn_jax.study.execution.progress import SweepProgress, duration


def test_each_line_has_elapsed_and_eta_from_the_mean_trial_time():
    now = [100.0]
    lines = []
    p = SweepProgress(4, lines.append, bar=False, clock=lambda: now[0])
    now[0] += 30
    p.line("[1/4] done a")
    now[0] += 30
    p.line("[2/4] done b")
    now[0] += 3600
    p.line("[3/4] done c")
    now[0] += 10
    p.line("[4/4] done d")
    assert lines[0] == "[1/4] done a  [30s elapsed, ETA 1m30s]"  # 30 s per trial, 3 left
    assert lines[1] == "[2/4] done b  [1m00s elapsed, ETA 1m00s]"
    assert lines[2].endswith("[1h01m elapsed, ETA 20m20s]")
    assert lines[3].endswith("elapsed, done]")


def test_durations():
    assert [duration(s) for s in (0, 59.4, 61, 3599, 3600, 7325)] == [
        "0s", "59s", "1m01s", "59m59s", "1h00m", "2h02m"]
