"""Long work without a bar (--no-progress, logs, Ray workers) still says what it does."""

import re

from rtaug.progress import LogProgress, progress_bar, rate_text


def test_log_progress_lines(capsys):
    bar = LogProgress(total=30, desc="collect x", unit="step", every_s=0.0)
    bar.update(10)
    bar.set_postfix({"loss": "0.5"})
    bar.update(10)
    bar.update(10)  # the last update: no running line, the done line follows
    bar.close()
    bar.close()  # closing twice says it once
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "[collect x] started: 30 step"
    assert lines[1].startswith("[collect x] 10/30 step, ")
    assert lines[2].startswith("[collect x] 20/30 step, ") and lines[2].endswith(", loss 0.5")
    assert re.fullmatch(r"\[collect x\] done: 30 step in \d+\.\d s, (\S+|-) step/s, loss 0\.5", lines[3])
    assert len(lines) == 4


def test_log_progress_resumed_and_iterated(capsys):
    LogProgress(total=100, desc="bcq x3 seeds", unit="update", initial=40).close()
    assert list(progress_bar(iterable=range(3), desc="audit", unit="row", progress=False)) == [0, 1, 2]
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "[bcq x3 seeds] continuing at 40 of 100 update"
    assert lines[1].startswith("[bcq x3 seeds] done: 40 update in ")
    assert lines[2] == "[audit] started: 3 row" and lines[3].startswith("[audit] done: 3 row in ")


def test_silent_for_steps_of_a_logged_stage(capsys):
    bar = progress_bar(total=5, desc="eval", progress=None)
    bar.update(5)
    bar.close()
    assert capsys.readouterr() == ("", "")


def test_rate_text():
    assert rate_text(1500, 2.0, "update") == "750 update/s"
    assert rate_text(3, 2.0, "update") == "1.5 update/s"
    assert rate_text(0, 2.0, "row") == "- row/s"
