"""Every command's paths are checked before it works (issue 13): a missing or wrong-kind input, an
output that is an input or part of one, an output of the wrong kind or under a file, and an
existing output without --overwrite are refused in one line with exit code 2, and the inputs
survive byte for byte; temporaries of a killed run are removed by the next; an unexpected
error is one line (exit 1) unless --debug. Nothing here trains a model."""

import json
import os
from pathlib import Path

import pytest

from rtaug.cli import build_parser, main
from rtaug.data.hdf5 import save_hdf5
from rtaug.requests import RequestError, check_request, is_leftover

from conftest import continuous_walks, file_bytes, grid_walks, refused


@pytest.fixture
def work(tmp_path, monkeypatch):
    """A directory with a small continuous dataset, a BoxBall-shaped grid dataset, a run
    directory (its checkpoint a stand-in: nothing here gets as far as reading it) and a model
    directory; relative paths in the tests resolve inside it."""
    monkeypatch.chdir(tmp_path)
    save_hdf5(continuous_walks(n=100), "walks.hdf5")
    save_hdf5(grid_walks(n_episodes=5), "grid.hdf5")
    Path("run").mkdir()
    Path("run/checkpoint.msgpack").write_bytes(b"\x81\xa4step\x05")
    Path("run/run.json").write_text("{}")
    Path("model").mkdir()
    Path("model/spec.json").write_text('{"format": 3}')
    return tmp_path


def _refused(argv, message, capsys, keep=("walks.hdf5", "grid.hdf5", "run", "model")):
    refused(argv, message, capsys, keep)


AUGMENT = ["augment", "--dataset", "walks.hdf5", "--model", "model", "--no-progress"]


# ------------------------------------------------------------------ inputs


@pytest.mark.parametrize("argv, message", [
    (["audit", "none.hdf5", "--task", "boxball"], "none.hdf5: no such file"),
    (["train-model", "--dataset", "none.hdf5", "--out", "m"], "--dataset none.hdf5: no such file"),
    ([*AUGMENT[:2], "none.hdf5", *AUGMENT[3:], "--out", "a.hdf5"], "--dataset none.hdf5: no such file"),
    (["augment", "--dataset", "walks.hdf5", "--model", "nomodel", "--out", "a.hdf5"],
     "--model nomodel: no such model directory"),
    (["train-policy", "--dataset", "none.hdf5", "--algo", "bc"], "--dataset none.hdf5: no such file"),
    (["eval", "--run", "norun", "--task", "maze2d-umaze-sparse"], "--run norun: no such run directory"),
    (["minari", "export", "none.hdf5", "--id", "x-v0"], "none.hdf5: no such file"),
    (["minari", "import", "x-v0", "--root", "noroot", "--out", "x.hdf5"],
     "--root noroot: no such Minari root directory"),
    (["report", "noruns"], "noruns: no such directory"),
    (["run", "none.yaml"], "none.yaml: no such config file"),
    (["sweep", "none.yaml"], "none.yaml: no such config file"),
])
def test_a_missing_input_is_refused(work, capsys, argv, message):
    _refused(argv, message, capsys)
    assert not Path("m").exists() and not Path("a.hdf5").exists() and not Path("x.hdf5").exists()


def test_report_of_a_directory_without_runs_is_refused(work, capsys):
    # run/run.json is not a SAC run's and nothing below model/ is a result
    _refused(["report", "model"], "model: no result.json or SAC run below it (run `rtaug run`, `rtaug sweep` or "
                                  "`rtaug collect` on a locomotion task first)", capsys)
    _refused(["report", "run"], "run: no result.json or SAC run below it (run `rtaug run`, `rtaug sweep` or "
                                "`rtaug collect` on a locomotion task first)", capsys)
    assert not Path("model/report").exists() and not Path("run/report").exists()


@pytest.mark.parametrize("argv, message", [
    (["train-model", "--dataset", "run", "--out", "m"], "--dataset run: is a directory, not a file"),
    (["audit", "run", "--task", "boxball"], "run: is a directory, not a file"),
    (["augment", "--dataset", "walks.hdf5", "--model", "grid.hdf5", "--out", "a.hdf5"],
     "--model grid.hdf5: is a file, not a directory"),
    (["eval", "--run", "run/run.json"], "--run run/run.json: is a file, not a directory"),
    (["run", "run"], "run: is a directory, not a file"),
])
def test_an_input_of_the_wrong_kind_is_refused(work, capsys, argv, message):
    _refused(argv, message, capsys)


# ------------------------------------------------------------------ outputs that would destroy an input


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
@pytest.mark.parametrize("argv, message", [
    (["audit", "grid.hdf5", "--task", "boxball", "--json", "grid.hdf5"],
     "--json grid.hdf5: is also the input grid.hdf5; choose another path"),
    ([*AUGMENT, "--out", "walks.hdf5"], "--out walks.hdf5: is also the input --dataset walks.hdf5; choose another path"),
    (["eval", "--run", "run", "--json", "run/checkpoint.msgpack"],
     "--json run/checkpoint.msgpack: is part of the input --run run; choose another path"),
    ([*AUGMENT, "--out", "model/spec.json"],
     "--out model/spec.json: is part of the input --model model; choose another path"),
    (["train-model", "--dataset", "walks.hdf5", "--out", "."],
     "--out .: holds the input --dataset walks.hdf5; choose another directory"),
])
def test_an_output_that_is_an_input_is_refused_even_with_overwrite(work, capsys, argv, message, overwrite):
    _refused([*argv, *overwrite], message, capsys)


def test_a_report_is_not_written_into_the_results_it_reads(work, capsys):
    (Path("run") / "result.json").write_text("{}")
    _refused(["report", "run", "--out", "run"], "--out run: is also the input run; choose another path", capsys)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file whatever its mode")
def test_an_unreadable_input_is_refused(work, capsys):
    Path("walks.hdf5").chmod(0)
    try:
        _refused(["train-model", "--dataset", "walks.hdf5", "--out", "m"],
                 "--dataset walks.hdf5: not readable (permission denied)", capsys, keep=("grid.hdf5",))
    finally:
        Path("walks.hdf5").chmod(0o644)


def test_the_same_file_by_another_name_is_the_same_input(work, capsys):
    Path("alias.hdf5").symlink_to("walks.hdf5")
    _refused([*AUGMENT, "--out", "alias.hdf5", "--overwrite"],
             "--out alias.hdf5: is also the input --dataset walks.hdf5; choose another path", capsys)


# ------------------------------------------------------------------ outputs of the wrong kind, or under a file


@pytest.mark.parametrize("argv, message", [
    (["collect", "boxball", "--out", "run"], "--out run: is a directory, not a file"),
    (["audit", "grid.hdf5", "--task", "boxball", "--json", "run"], "--json run: is a directory, not a file"),
    ([*AUGMENT, "--out", "run"], "--out run: is a directory, not a file"),
    (["minari", "import", "x-v0", "--out", "run"], "--out run: is a directory, not a file"),
    (["eval", "--policy", "random", "--json", "run"], "--json run: is a directory, not a file"),
    (["reference", "maze2d-umaze-sparse", "--json", "run"], "--json run: is a directory, not a file"),
    (["train-model", "--dataset", "walks.hdf5", "--out", "grid.hdf5"], "--out grid.hdf5: is a file, not a directory"),
    (["train-policy", "--dataset", "walks.hdf5", "--algo", "bc", "--out", "grid.hdf5"],
     "--out grid.hdf5: is a file, not a directory"),
    (["quickstart", "--out", "grid.hdf5"], "--out grid.hdf5: is a file, not a directory"),
    (["collect", "boxball", "--out", "grid.hdf5/x.hdf5"], "--out grid.hdf5/x.hdf5: grid.hdf5 is a file, not a directory"),
    (["train-model", "--dataset", "walks.hdf5", "--out", "grid.hdf5/new/m"],
     "--out grid.hdf5/new/m: grid.hdf5 is a file, not a directory"),
])
def test_an_output_of_the_wrong_kind_is_refused(work, capsys, argv, message):
    _refused(argv, message, capsys)


# ------------------------------------------------------------------ existing outputs and --overwrite


@pytest.mark.parametrize("argv, out", [
    (["collect", "boxball", "--out", "old.hdf5"], "--out old.hdf5"),
    ([*AUGMENT, "--out", "old.hdf5"], "--out old.hdf5"),
    (["audit", "grid.hdf5", "--task", "boxball", "--json", "old.hdf5"], "--json old.hdf5"),
    (["eval", "--policy", "random", "--json", "old.hdf5"], "--json old.hdf5"),
    (["reference", "maze2d-umaze-sparse", "--json", "old.hdf5"], "--json old.hdf5"),
    (["minari", "import", "x-v0", "--out", "old.hdf5"], "--out old.hdf5"),
    (["train-model", "--dataset", "walks.hdf5", "--out", "model"], "--out model"),
])
def test_an_existing_output_needs_overwrite(work, capsys, argv, out):
    Path("old.hdf5").write_bytes(b"an earlier result")
    _refused(argv, f"{out}: exists; pass --overwrite to replace it", capsys,
             keep=("walks.hdf5", "grid.hdf5", "run", "model", "old.hdf5"))


def test_overwrite_replaces_an_existing_output(work, capsys):
    Path("old.json").write_text("an earlier result")
    before = file_bytes("grid.hdf5")
    assert main(["audit", "grid.hdf5", "--task", "boxball", "--json", "old.json", "--overwrite", "--no-progress"]) == 0
    assert json.loads(Path("old.json").read_text()) == json.loads(capsys.readouterr().out)
    assert file_bytes("grid.hdf5") == before
    assert not [p for p in Path().iterdir() if is_leftover(p.name)]


def test_an_empty_directory_is_no_existing_output(work):
    Path("empty").mkdir()
    check_request(build_parser().parse_args(["train-model", "--dataset", "walks.hdf5", "--out", "empty"]))


@pytest.mark.parametrize("argv", [
    ["train-policy", "--dataset", "walks.hdf5", "--algo", "bc", "--out", "run", "--resume"],
    ["run", "c.yaml", "--out", "run", "--cache", "model"],
    ["sweep", "c.yaml", "--out", "run", "--cache", "model"],
    ["report", "model", "--out", "run"],
    ["quickstart", "--out", "run"],
    ["minari", "export", "walks.hdf5", "--id", "x-v0", "--root", "run"],
])
def test_an_existing_output_is_normal_where_a_rerun_reuses_it(work, argv):
    Path("c.yaml").write_text("task: boxball\n")
    check_request(build_parser().parse_args(argv))  # refuses by raising


def test_an_existing_run_needs_resume(work, capsys):
    _refused(["train-policy", "--dataset", "walks.hdf5", "--algo", "bc", "--out", "run"],
             "--out run: exists; pass --resume to continue it, or choose another path", capsys)


# ------------------------------------------------------------------ what a killed run left behind


def test_temporaries_beside_an_output_are_removed_by_the_next_run(work, capsys):
    Path(".a.json.k2j3h4g5.tmp").write_text("half of a killed write")
    Path(".m.x9y8z7w6.tmp").mkdir()  # a killed train-model's directory
    Path(".m.x9y8z7w6.tmp/rt.msgpack").write_bytes(b"half")
    Path(".walks.hdf5.abcd1234.tmp").write_text("another output's: not this command's to remove")
    Path("notes.abcd1234.tmp").write_text("not a temporary of rtaug's (no leading dot)")
    assert main(["audit", "grid.hdf5", "--task", "boxball", "--json", "a.json", "--no-progress"]) == 0
    assert not Path(".a.json.k2j3h4g5.tmp").exists()
    assert Path(".walks.hdf5.abcd1234.tmp").exists() and Path("notes.abcd1234.tmp").exists()
    check_request(build_parser().parse_args(["train-model", "--dataset", "walks.hdf5", "--out", "m"]))
    assert not Path(".m.x9y8z7w6.tmp").exists()


def test_a_refused_request_removes_nothing(work, capsys):
    Path(".a.json.k2j3h4g5.tmp").write_text("half of a killed write")
    _refused(["audit", "none.hdf5", "--task", "boxball", "--json", "a.json"], "none.hdf5: no such file", capsys)
    assert Path(".a.json.k2j3h4g5.tmp").exists()


def test_temporaries_inside_an_output_directory_go_unless_it_is_shared(work):
    for d in ("qs/models/rt", "cache/stage"):
        Path(d).mkdir(parents=True)
        Path(d, ".rt.msgpack.abcd1234.tmp").write_bytes(b"half")
        Path(d, ".fig4.png.abcd1234.png").write_bytes(b"half")
        Path(d, "rt.msgpack").write_bytes(b"whole")
    check_request(build_parser().parse_args(["quickstart", "--out", "qs"]))
    assert sorted(p.name for p in Path("qs/models/rt").iterdir()) == ["rt.msgpack"]
    # the stage cache is shared with concurrent runs: their files in flight are not leftovers
    Path("c.yaml").write_text("task: boxball\n")
    check_request(build_parser().parse_args(["run", "c.yaml", "--out", "qs", "--cache", "cache"]))
    assert len(list(Path("cache/stage").iterdir())) == 3


@pytest.mark.parametrize("name, target, leftover", [
    (".a.json.k2j3h4g5.tmp", "a.json", True),
    (".fig4.png.k2j3h4g5.png", "fig4.png", True),
    (".m.k2j3h4g5.old.tmp", "m", True),
    (".a.json.k2j3h4g5.tmp", "b.json", False),
    (".fig4.png.k2j3h4g5.pdf", "fig4.png", False),
    (".a.json.K2J3H4G5.tmp", "a.json", False),
    ("a.json.k2j3h4g5.tmp", "a.json", False),
    (".a.json.tmp", "a.json", False),
])
def test_what_counts_as_a_temporary(name, target, leftover):
    assert is_leftover(name, target) is leftover


# ------------------------------------------------------------------ train-model writes its directory whole


def _fake_train_model(fail: bool):
    def train_model(dataset_path, out_dir, *args, log=print, **kwargs):
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "spec.json").write_text('{"new": true}')
        if fail:
            raise RuntimeError("the dynamics ensemble diverged")
        log(f"wrote {out}")
        return out
    return train_model


def test_train_model_replaces_its_directory_whole(work, capsys, monkeypatch):
    import rtaug.experiments.stages as stages

    Path("model/stale.msgpack").write_bytes(b"a part the new model does not have")
    monkeypatch.setattr(stages, "train_model", _fake_train_model(fail=False))
    assert main(["train-model", "--dataset", "walks.hdf5", "--out", "model", "--overwrite"]) == 0
    assert capsys.readouterr().out == "wrote model\n"  # the user's path, not the temporary's
    assert sorted(p.name for p in Path("model").iterdir()) == ["spec.json"]
    assert Path("model/spec.json").read_text() == '{"new": true}'
    assert not [p for p in work.iterdir() if is_leftover(p.name)]


def test_a_failed_train_model_leaves_the_old_directory_and_no_temporary(work, capsys, monkeypatch):
    import rtaug.experiments.stages as stages

    monkeypatch.setattr(stages, "train_model", _fake_train_model(fail=True))
    before = file_bytes("model", "walks.hdf5")
    assert main(["train-model", "--dataset", "walks.hdf5", "--out", "model", "--overwrite"]) == 1
    assert capsys.readouterr().err == ("rtaug train-model: error: RuntimeError: the dynamics ensemble diverged "
                                       "(rerun with --debug for the traceback)\n")
    assert file_bytes("model", "walks.hdf5") == before
    assert not [p for p in work.iterdir() if is_leftover(p.name)]
    assert main(["train-model", "--dataset", "walks.hdf5", "--out", "new"]) == 1
    assert not Path("new").exists()


# ------------------------------------------------------------------ unexpected errors and --debug


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(work, capsys, monkeypatch):
    import rtaug.experiments.tasks as tasks

    def broken(*args, **kwargs):
        raise RuntimeError("a message\n  over two lines")

    monkeypatch.setattr(tasks, "task_table", broken)
    assert main(["tasks"]) == 1
    assert capsys.readouterr().err == ("rtaug tasks: error: RuntimeError: a message over two lines "
                                       "(rerun with --debug for the traceback)\n")
    with pytest.raises(RuntimeError):
        main(["--debug", "tasks"])


def test_debug_does_not_turn_a_refusal_into_a_traceback(work, capsys):
    assert main(["--debug", "audit", "none.hdf5", "--task", "boxball"]) == 2
    assert capsys.readouterr().err == "rtaug audit: error: none.hdf5: no such file\n"


def test_a_refusal_is_a_value_error_for_callers(work):
    with pytest.raises(RequestError) as e:
        check_request(build_parser().parse_args(["collect", "boxball", "--out", "run"]))
    assert isinstance(e.value, ValueError)


# ------------------------------------------------------------------ a relative Minari root


@pytest.mark.parametrize("how", ["--root", "MINARI_DATASETS_PATH"])
def test_a_relative_minari_root_works(work, capsys, monkeypatch, how):
    pytest.importorskip("minari")
    root = ["--root", "mroot"] if how == "--root" else []
    if how == "MINARI_DATASETS_PATH":
        monkeypatch.setenv("MINARI_DATASETS_PATH", "mroot")
    before = file_bytes("walks.hdf5")
    assert main(["minari", "export", "walks.hdf5", "--id", "walks-v0", *root]) == 0
    assert (work / "mroot" / "walks-v0" / "data" / "main_data.hdf5").is_file()
    assert main(["minari", "import", "walks-v0", *root, "--out", "back.hdf5"]) == 0
    assert "wrote back.hdf5: 100 transitions" in capsys.readouterr().out
    assert file_bytes("walks.hdf5") == before
