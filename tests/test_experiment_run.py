"""`rtaug run` / `rtaug report` end to end on a tiny maze experiment: every stage built once and
then reused, a changed learner field recomputes only the policies, a killed stage's leftovers
are cleaned, the report's CSV has the issue's columns, bad input is refused before any work."""

import csv
import json
import os
from pathlib import Path

import pytest
import yaml

pytest.importorskip("gymnasium_robotics")

pytestmark = pytest.mark.slow  # trains models: outside the fast subset (-m "not slow")

from conftest import TINY_EXPERIMENT  # noqa: E402
from rtaug.cli import main  # noqa: E402
from rtaug.experiments.config import ConfigError, build  # noqa: E402
from rtaug.experiments.run import Log, execute, plan, run_experiment  # noqa: E402
from rtaug.experiments.report import CSV_COLUMNS, generated_share  # noqa: E402

TINY = TINY_EXPERIMENT


def test_a_run_builds_every_stage_and_records_its_evidence(tiny_experiment):
    d, result, lines = tiny_experiment
    assert [s["stage"] for s in result["stages"]] == ["trajectories", "data", "model", "generated", "audit", "policy", "evaluation",
                                                      "policy", "evaluation"]
    assert not any(s["cached"] for s in result["stages"]) and all(s["wall_s"] > 0 for s in result["stages"])
    model = next(s for s in result["stages"] if s["stage"] == "model")
    parts = json.loads((Path(model["path"]) / "stage.json").read_text())["train_seconds"]
    assert set(parts) == {"sequence model", "reliability VAE", "dynamics ensemble", "reward model"}
    assert 0 < sum(parts.values()) <= model["wall_s"]
    assert set(result["per_seed"]) == {"0", "1"}
    for row in result["per_seed"].values():
        assert row["episodes"] == 2 and [p["step"] for p in row["curve"]] == [15, 30]
    assert result["summary"]["normalized"]["n_seeds"] == 2
    gen, audit = result["evidence"]["generation"], result["evidence"]["audit"]
    assert gen["trajectories"] == 16 and gen["max_length"] == 4
    assert audit["generated"]["transitions"] == gen["generated_transitions"]
    assert audit["real"]["mean_error"] < 1e-4  # the real rows replay exactly: the file was not damaged
    on_disk = json.loads((d / "run" / "result.json").read_text())
    assert on_disk["per_seed"] == result["per_seed"]
    assert yaml.safe_load((d / "run" / "config.yaml").read_text())["learner"]["hidden"] == [16, 16]


def test_a_rerun_reuses_everything_and_a_learner_change_only_the_policies(tiny_experiment):
    d, first, _ = tiny_experiment
    again = run_experiment(build(TINY), d / "run", cache=d / "cache", progress=False, printer=lambda *_: None)
    assert all(s["cached"] for s in again["stages"])
    assert again["per_seed"] == first["per_seed"]
    changed = run_experiment(build(TINY, ["learner.steps=20", "learner.eval_every=null", "seeds=[1]"]),
                             d / "run2", cache=d / "cache", progress=False, printer=lambda *_: None)
    built = {s["stage"] for s in changed["stages"] if not s["cached"]}
    assert built == {"policy", "evaluation"}


def test_fig2_runs_train_on_generated_trajectories_only_from_repeated_starts(tiny_experiment):
    d, first, _ = tiny_experiment
    # the one-step backward MLP: its stage adds the MLP to RT's model (cached), RT is not retrained
    cfg = build(TINY, ["seeds=[0]", "generator.kind=backward-mlp", "generator.samples_per_start=3",
                       "generator.generation.num_trajectories=4", "learner.data=generated", "learner.eval_every=null",
                       "generator.model.backward_mlp.steps=20"])
    res = run_experiment(cfg, d / "fig2", cache=d / "cache", progress=False, printer=lambda *_: None)
    built = [s["stage"] for s in res["stages"] if not s["cached"]]
    assert built == ["mlp", "generated", "audit", "policy", "evaluation"]
    made = res["evidence"]["generation"]
    assert made["trajectories"] == 12  # 4 start states × 3 samples
    policy = next(s for s in res["stages"] if s["stage"] == "policy")
    train_rows = json.loads((Path(policy["path"]) / "stage.json").read_text())["train_rows"]
    assert train_rows == made["generated_rows"] + made["copied_rows"] < made["input_rows"]
    assert generated_share(res) == pytest.approx(made["generated_rows"] / train_rows)  # no real rows trained on
    with pytest.raises(ConfigError, match="learner.data: 'generated' needs a generator"):
        build(TINY, ["generator.kind=none", "learner.data=generated"])


def test_the_cli_records_its_command_and_refuses_a_file_as_output(tiny_experiment, capsys):
    d, first, _ = tiny_experiment
    cfg = d / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    argv = ["run", str(cfg), "--cache", str(d / "cache"), "--out", str(d / "cli"), "--no-progress"]
    assert main(argv) == 0  # every stage cached
    result = json.loads((d / "cli" / "result.json").read_text())
    assert result["command"] == "rtaug " + " ".join(argv) and result["per_seed"] == first["per_seed"]
    blocker = d / "a-file"
    blocker.write_text("mine")
    assert main(["run", str(cfg), "--cache", str(d / "cache"), "--out", str(blocker), "--no-progress"]) == 2
    assert "a-file" in capsys.readouterr().err and blocker.read_text() == "mine"


def test_a_larger_budget_continues_the_finished_shorter_run_to_the_same_parameters(tiny_experiment, tmp_path):
    from rtaug.data.hdf5 import load_hdf5
    from rtaug.experiments.run import learner_config
    from rtaug.train import train

    d, first, _ = tiny_experiment
    cfg = build(TINY, ["learner.steps=45", "seeds=[0]"])
    lines = []
    longer = run_experiment(cfg, d / "longer", cache=d / "cache", progress=False, printer=lines.append)
    short = next(s for s in first["stages"] if s["label"] == "policy bc seed 0")
    assert any(f"continuing the finished 30-update run {short['key']}" in line for line in lines)
    assert [p["step"] for p in longer["per_seed"]["0"]["curve"]] == [15, 30, 45]
    assert longer["per_seed"]["0"]["curve"][:2] == first["per_seed"]["0"]["curve"]
    # the same parameters as 45 updates from scratch (the same chunks, evaluation and checkpoint steps)
    data = next(Path(s["path"]) for s in longer["stages"] if s["stage"] == "generated") / "data.hdf5"
    fresh = train(load_hdf5(data), "bc", learner_config(cfg), steps=45, seeds=[0], out_dir=tmp_path / "fresh",
                  eval_every=15, chunk=15, progress=False)
    policy = next(Path(s["path"]) for s in longer["stages"] if s["stage"] == "policy")
    assert (policy / "run" / "checkpoint.msgpack").read_bytes() == (tmp_path / "fresh" / "checkpoint.msgpack").read_bytes()
    assert fresh.steps == 45


def test_a_killed_stage_is_rebuilt_from_scratch(tiny_experiment):
    d, _, _ = tiny_experiment
    cfg = build(TINY, ["evaluation.episodes=1", "seeds=[0]"])
    stage = plan(cfg).evaluations[0]
    leftover = d / "cache" / "evaluation" / f"{stage.key}.partial"
    leftover.mkdir(parents=True)
    (leftover / "half-written.json").write_text("{")
    rec = execute(stage, d / "cache", Log(False, lambda *_: None))
    assert not rec["cached"] and not leftover.exists()
    assert sorted(p.name for p in stage.path(d / "cache").iterdir()) == ["evaluation.json", "stage.json"]


def test_a_resumed_stage_counts_the_time_of_its_killed_attempts(tiny_experiment):
    """A policy stage killed 100 s into its first attempt (its last file written then) and resumed:
    its wall_s is that attempt's 100 s plus the one that finished it."""
    import os
    import time

    d, _, _ = tiny_experiment
    cfg = build(TINY, ["learner.steps=20", "seeds=[0]"])
    stage = plan(cfg).policies[0]
    work = d / "cache" / "policy" / f"{stage.key}.partial"
    work.mkdir(parents=True)
    start = time.time() - 500
    (work / ".attempts.json").write_text(json.dumps([[start, None]]))
    (work / "left-behind.txt").write_text("x")
    os.utime(work / "left-behind.txt", (start + 100, start + 100))
    rec = execute(stage, d / "cache", Log(False, lambda *_: None))
    assert not rec["cached"] and rec["earlier_attempts_s"] == pytest.approx(100, abs=1.0)
    assert 100 < rec["wall_s"] < 100 + 400 and not (stage.path(d / "cache") / ".attempts.json").exists()


def test_report_writes_the_table_csv_and_figures(tiny_experiment, capsys):
    d, result, _ = tiny_experiment
    assert main(["report", str(d / "run"), "--out", str(d / "report")]) == 0
    rows = list(csv.DictReader((d / "report" / "results.csv").open()))
    assert list(rows[0]) == CSV_COLUMNS
    assert rows[0]["task"] == "maze2d-umaze-sparse" and rows[0]["method"] == "rt+bc" and rows[0]["n_seeds"] == "2"
    assert float(rows[0]["mean"]) == pytest.approx(result["summary"]["normalized"]["mean"], abs=1e-3)
    assert rows[0]["protocol"] == "test"
    md = (d / "report" / "report.md").read_text()
    assert "| rt+bc | 2 | 30 |" in md and "![curves](curves.png)" in md
    assert f"at commit {result['commit']}: maze2d-umaze-sparse rt+bc" in md
    # the bar a learner is read against: the real data's own score, from the run's data stage
    from rtaug.experiments.stages import describe_file

    data = describe_file(Path(next(s["path"] for s in result["stages"] if s["stage"] == "data")) / "data.hdf5")
    assert (f"| *the data itself* ({data['episodes']:,} episodes' mean return) | | | "
            f"{data['normalized']['mean']:.1f} | | {data['normalized_d4rl']['mean']:.1f} | | |") in md
    # which file the row stands on: the real data's fingerprint, recorded by its stage
    from rtaug.data.hdf5 import load_hdf5

    fingerprint = load_hdf5(Path(data["file"])).fingerprint()
    assert rows[0]["data"] == fingerprint[:12]
    assert f"Data: every row on the same file (fingerprint {fingerprint[:12]})." in md
    assert (d / "report" / "generated-maze2d-umaze-sparse-rt.png").stat().st_size > 1000  # over the walls
    for png in ("curves.png", "scores.png", "lengths.png"):
        assert (d / "report" / png).stat().st_size > 1000, png
    evidence = md.split("| rt+bc | ")[-1].split(" | ")
    gamma = float(evidence[5])  # the evidence row's mean Γ
    assert 0 < gamma <= result["evidence"]["generation"]["alpha"]
    made = result["evidence"]["generation"]
    share = made["generated_rows"] / (made["generated_rows"] + made["copied_rows"] + made["input_rows"])
    assert evidence[1] == f"{100 * share:.1f}% (suffix)"  # generated rows among what the learner samples
    # named files, for docs/results/
    assert main(["report", str(d / "run"), "--out", str(d / "docs"), "--name", "table2"]) == 0
    assert (d / "docs" / "table2.csv").read_text() == (d / "report" / "results.csv").read_text()
    named = (d / "docs" / "table2.md").read_text()
    assert named.startswith("# table2") and "![table2-curves](table2-curves.png)" in named
    assert (d / "docs" / "table2-generated-maze2d-umaze-sparse-rt.png").is_file()
    assert main(["report", str(d / "run"), "--out", str(d / "docs"), "--name", "../x"]) == 2
    assert "--name '../x': a file name stem" in capsys.readouterr().err


def test_runs_sharing_generated_rows_share_one_picture(tmp_path):
    """One picture per audit stage, named after its generator and listing every run it stands for
    (three learners on one generation were three identical files before)."""
    from rtaug.experiments.report import generated_pictures

    def run(label, algo, audit, task="maze2d-umaze-sparse"):
        (tmp_path / audit).mkdir(exist_ok=True)
        (tmp_path / audit / "generated.png").write_bytes(audit.encode())
        return {"task": task, "label": label, "config": {"learner": {"algo": algo}},
                "stages": [{"stage": "audit", "path": str(tmp_path / audit)}]}

    results = [run("rt+bc", "bc", "aaaaaaaaaa1"), run("rt+bcq", "bcq", "aaaaaaaaaa1"), run("rt+iql", "iql", "aaaaaaaaaa1"),
               run("rt+bcq-merge=prefix", "bcq", "aaaaaaaaaa1"), run("ft+bcq", "bcq", "bbbbbbbbbb2"),
               run("rt+bcq-start=uniform", "bcq", "cccccccccc3"),
               {"task": "maze2d-umaze-sparse", "label": "bcq", "config": {"learner": {"algo": "bcq"}}, "stages": []}]
    got = generated_pictures(results, prefix="t-")
    assert [(name, src.parent.name, runs) for name, src, runs in got] == [
        ("t-generated-maze2d-umaze-sparse-rt.png", "aaaaaaaaaa1", ["rt+bc", "rt+bcq", "rt+iql", "rt+bcq-merge=prefix"]),
        ("t-generated-maze2d-umaze-sparse-ft.png", "bbbbbbbbbb2", ["ft+bcq"]),
        ("t-generated-maze2d-umaze-sparse-rt-start=uniform.png", "cccccccccc3", ["rt+bcq-start=uniform"])]
    # two generations that would take one name keep apart by their audit's key
    clash = generated_pictures([run("rt+bc", "bc", "dddddddddd4"), run("rt+iql", "iql", "eeeeeeeeee5")])
    assert [name for name, _, _ in clash] == ["generated-maze2d-umaze-sparse-rt.png",
                                             "generated-maze2d-umaze-sparse-rt-eeeeeeee.png"]


def test_q_curves_are_drawn_for_learners_with_a_critic(tiny_experiment, tmp_path):
    from rtaug.experiments.report import plot_q

    d, result, _ = tiny_experiment
    assert plot_q([result], tmp_path / "bc.png") is None  # BC has no critic
    run = tmp_path / "policy" / "run" / "seed_0"
    run.mkdir(parents=True)
    run.joinpath("metrics.csv").write_text("step,q_mean\n1000,0.5\n2000,1.5\n3000,2.0\n")
    critic = {**result, "stages": [{"stage": "policy", "path": str(tmp_path / "policy")}]}
    assert plot_q([critic], tmp_path / "q.png").stat().st_size > 1000


def test_behaviour_value_is_the_real_data_discounted_return(tiny_experiment, tmp_path):
    from rtaug.data.episodes import reward_to_go
    from rtaug.data.hdf5 import load_hdf5
    from rtaug.experiments.report import behaviour_value

    d, result, _ = tiny_experiment
    data_stage = next(s for s in result["stages"] if s["stage"] == "data")
    assert behaviour_value(result) is None  # BC: no discount, no critic to compare with
    run = tmp_path / "policy" / "run"
    run.mkdir(parents=True)
    run.joinpath("run.json").write_text(json.dumps({"config": {"discount": 0.5}}))
    critic = {**result, "stages": [data_stage, {"stage": "policy", "path": str(tmp_path / "policy")}]}
    data = load_hdf5(Path(data_stage["path"]) / "data.hdf5")
    want = reward_to_go(data.rewards, data.episodes(), 0.5).mean()
    assert behaviour_value(critic) == pytest.approx(want) and want > 0


def test_learning_curves_as_tensorboard_events(tiny_experiment):
    pytest.importorskip("tensorboardX")
    from rtaug.experiments.report import write_tensorboard

    d, result, _ = tiny_experiment
    expected = 0
    for stage in (s for s in result["stages"] if s["stage"] == "policy"):
        for table in Path(stage["path"]).glob("run/seed_*/*.csv"):
            rows = list(csv.DictReader(table.open()))
            expected += sum(1 for row in rows for k, v in row.items() if k != "step" and v != "")
    assert expected > 0
    assert write_tensorboard(d / "run", d / "tb", printer=lambda *_: None) == expected
    assert main(["report", str(d / "run"), "--out", str(d / "report-tb"), "--tensorboard", str(d / "tb2")]) == 0
    assert len(list((d / "tb2").rglob("events.out.tfevents.*"))) == 2
    for seed in (0, 1):
        events = list((d / "tb" / "maze2d-umaze-sparse" / "rt+bc" / f"seed_{seed}").glob("events.out.tfevents.*"))
        assert len(events) == 1 and events[0].stat().st_size > 100


def test_bad_requests_are_refused_before_any_work(tmp_path, capsys):
    import numpy as np

    from rtaug.data import Dataset
    from rtaug.data.hdf5 import save_hdf5

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    assert main(["run", str(cfg), "learner.expectile=0.9", "--cache", str(tmp_path / "cache")]) == 2
    assert "learner.expectile: unknown key" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "none.yaml")]) == 2
    assert "none.yaml: no such config file" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 2
    assert "no result.json" in capsys.readouterr().err
    # data.file: one line naming the key and the problem, nothing made, the input untouched
    wide = tmp_path / "wide.hdf5"
    save_hdf5(Dataset(np.zeros((4, 5), np.float32), np.zeros((4, 2), np.float32), np.zeros(4, np.float32),
                      np.zeros(4, bool), np.array([0, 0, 0, 1], bool), np.zeros((4, 5), np.float32)), wide)
    before = wide.read_bytes()
    for value, problem in ((tmp_path / "none.hdf5", "none.hdf5: no such file"),
                           (wide, "task 'maze2d-umaze-sparse' has 4-dimensional observations")):
        assert main(["run", str(cfg), "data.steps=null", f"data.file={value}", "--cache", str(tmp_path / "cache"),
                     "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert "data.file:" in err and problem in err and err.count("\n") == 1
    assert wide.read_bytes() == before and not (tmp_path / "out").exists()
    assert not (tmp_path / "cache").exists()


def test_a_sweep_runs_on_ray_reusing_the_cache_and_writes_every_cell(tiny_experiment, tmp_path, monkeypatch):
    pytest.importorskip("ray")
    from rtaug.experiments.sweep import expand, run_sweep

    monkeypatch.setenv("RTAUG_CORE_LOCKS", str(tmp_path / "cores"))  # the workers inherit it
    d, result, _ = tiny_experiment
    cells = expand({**TINY, "grid": {"generator.kind": ["none", "rt"]}})
    lines = []
    summary = run_sweep(cells, d / "sweep", cache=d / "cache", workers=2, printer=lines.append)
    # each worker claimed a core of this machine and ran pinned to it
    assert {p.name for p in (tmp_path / "cores").iterdir()} <= {f"core{c}.{k}.lock" for c in os.sched_getaffinity(0)
                                                              for k in (0, 1)}
    assert any((tmp_path / "cores").iterdir())
    rt = summary["cells"]["maze2d-umaze-sparse/rt+bc"]
    none = summary["cells"]["maze2d-umaze-sparse/bc"]
    assert (rt["ran"], rt["failed"]) == (0, []) and rt["normalized"]["mean"] == result["summary"]["normalized"]["mean"]
    # 2 policies + 2 evaluations ran; the collection and the data were cached
    assert none["ran"] == 4 and none["cached"] == 2 and none["failed"] == []
    bc = json.loads((d / "sweep" / "maze2d-umaze-sparse" / "bc" / "result.json").read_text())
    assert bc["generator"] == "none"
    assert [s["stage"] for s in bc["stages"] if not s["cached"]] == ["policy", "evaluation", "policy", "evaluation"]
    assert "2 of 2 cells finished" in lines[-1]
    ran = [s for s in bc["stages"] if not s["cached"]]
    assert all(json.loads((d / "cache" / s["stage"] / s["key"] / "stage.json").read_text())["host_cpus"] == 1
               for s in ran)


def test_execute_claims_only_to_compute_and_releases_after(tmp_path):
    """A sweep's worker claims its core once it holds the stage's lock and will compute it: a
    cached stage claims nothing, and the claim is released when computing ends, failed or not."""
    from rtaug.experiments.run import Stage

    events = []

    class Claim:
        def close(self):
            events.append("released")

    def claim():
        events.append("claimed")
        return Claim()

    def compute(work, inputs, log):
        events.append("computed")
        return {}

    def broken(work, inputs, log):
        raise RuntimeError("out of memory")

    log = Log(progress=False, printer=lambda m: None)
    stage = Stage("data", "k1", {}, {}, compute, "a stage")
    assert execute(stage, tmp_path, log, claim=claim)["cached"] is False
    assert events == ["claimed", "computed", "released"]
    assert execute(stage, tmp_path, log, claim=claim)["cached"] is True and len(events) == 3
    with pytest.raises(RuntimeError, match="out of memory"):
        execute(Stage("data", "k2", {}, {}, broken, "b stage"), tmp_path, log, claim=claim)
    assert events[3:] == ["claimed", "released"]


_CLAIM = ("import os, sys; from rtaug.experiments.sweep import hold_a_core; "
          "fh, core = hold_a_core(per_core=int(sys.argv[1]), poll_s=0.05, log=lambda m: print(m, flush=True)); "
          "print('claimed', core, sorted(os.sched_getaffinity(0)), flush=True)")


def test_sweep_workers_claim_cores_machine_wide_and_wait_for_a_free_one(tmp_path, monkeypatch):
    """Two sweeps side by side share the cores: a worker takes a core no other rtaug worker on the
    machine holds, pins itself to it, and waits while every core is held (a first sweep's last
    policy alone leaves a core that the second sweep's worker then takes)."""
    import fcntl
    import subprocess
    import sys

    monkeypatch.setenv("RTAUG_CORE_LOCKS", str(tmp_path))
    cores = sorted(os.sched_getaffinity(0))
    held = {}
    for c in cores:  # another sweep's workers, one on every core
        held[c] = open(tmp_path / f"core{c}.0.lock", "a")
        fcntl.flock(held[c], fcntl.LOCK_EX)
    # with a second place per core (more workers than cores) it does not wait
    two = subprocess.run([sys.executable, "-c", _CLAIM, "2"], capture_output=True, text=True, timeout=120)
    assert two.stdout.splitlines() == [f"claimed {cores[0]} [{cores[0]}]"], two.stderr
    proc = subprocess.Popen([sys.executable, "-c", _CLAIM, "1"], stdout=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert "is held by another rtaug worker: waiting" in first and proc.poll() is None
        held[cores[-1]].close()  # that sweep's worker on the last core finishes
        out = proc.communicate(timeout=120)[0].splitlines()
    finally:
        proc.kill()
        for fh in held.values():
            fh.close()
    assert out == [f"core {cores[-1]} free: starting", f"claimed {cores[-1]} [{cores[-1]}]"]


def test_short_stages_take_a_place_beside_a_long_one():
    """An evaluation or an audit (seconds) claims one place more than the sweep's workers need, so
    it runs beside another sweep's policy (the second place, as the test above shows) instead of
    waiting out that policy; every other stage keeps to the sweep's places."""
    from rtaug.experiments.run import VERSIONS
    from rtaug.experiments.sweep import SHORT_STAGES, claim_places, ray_cpus

    assert set(SHORT_STAGES) <= set(VERSIONS)  # names of real stages
    for name in VERSIONS:
        assert claim_places(name, 1) == (2 if name in SHORT_STAGES else 1)
        # nor do they queue for one of Ray's CPUs behind the policies submitted before them
        assert ray_cpus(name) == (0 if name in SHORT_STAGES else 1)
    assert claim_places("policy", 2) == 2 and claim_places("evaluation", 2) == 3


def test_a_sweeps_dry_run_says_where_each_stage_stands(tiny_experiment, tmp_path, capsys, monkeypatch):
    """`rtaug sweep --dry-run` computes nothing and tells cached, running (another process holds
    the stage's lock), resumable (a killed policy's checkpoint: its update count) and to-run stages;
    it reads the cache only, so it needs no Ray."""
    import fcntl
    import shutil
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # as where Ray is not installed: importing it fails

    from rtaug.experiments.sweep import expand, sweep_status

    d, _, _ = tiny_experiment
    cache = tmp_path / "cache"
    shutil.copytree(d / "cache", cache)  # the session's cache stays as the other tests expect it
    cells = expand({**TINY, "grid": {"learner.steps": [30, 60]}})
    longer = plan(cells[1].config)
    seed0, seed1 = longer.policies[0], longer.policies[1]
    done = plan(cells[0].config).policies[0]
    work = cache / "policy" / f"{seed0.key}.partial" / "run"
    work.mkdir(parents=True)
    shutil.copy(done.path(cache) / "run" / "checkpoint.msgpack", work)  # killed at update 30 of 60
    with open(cache / "policy" / f".{seed1.key}.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # a worker building seed 1 now
        before = sorted(str(p) for p in cache.rglob("*"))
        status = sweep_status(cells, cache)
        assert main(["sweep", str(_sweep_file(tmp_path)), "grid.learner.steps=[30,60]", "--cache", str(cache),
                     "--out", str(tmp_path / "out"), "--dry-run"]) == 0
    first, second = status["cells"].values()
    assert (first["cached"], first["to run"], first["unfinished"]) == (len(plan(cells[0].config).stages), 0, [])
    n = len(longer.stages)
    assert (second["cached"], second["running"], second["resumable"], second["to run"]) == (n - 4, 1, 1, 2)
    assert second["unfinished"] == [f"{seed0.label}: resumable, update 30 of 60", f"{seed1.label}: running"]
    assert status["stages"]["resumable"] == 1 and status["stages"]["running"] == 1
    out = capsys.readouterr().out
    assert f"    {seed0.label}: resumable, update 30 of 60" in out and f"{n - 4} cached, 1 running, 1 resumable, 2 to run" in out
    assert sorted(str(p) for p in cache.rglob("*")) == before and not (tmp_path / "out").exists()


def test_a_sweep_with_a_bad_core_locks_directory_stops_before_any_work(tmp_path, monkeypatch, capsys):
    """`RTAUG_CORE_LOCKS` naming a file: one line naming it, exit 2, before Ray starts or anything
    is written (otherwise every worker would fail on it in turn, after the sweep began)."""
    pytest.importorskip("ray")
    taken = tmp_path / "locks"
    taken.write_text("not a directory")
    monkeypatch.setenv("RTAUG_CORE_LOCKS", str(taken))
    assert main(["sweep", str(_sweep_file(tmp_path)), "--cache", str(tmp_path / "cache"),
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err == f"rtaug sweep: error: RTAUG_CORE_LOCKS={taken}: not a directory\n"
    assert taken.read_text() == "not a directory"
    assert not (tmp_path / "cache").exists() and not (tmp_path / "out").exists()


def test_a_sweep_without_ray_stops_before_any_work(tmp_path, monkeypatch, capsys):
    """Without Ray a sweep cannot run its cells: one line saying how to install it, exit 2, nothing written."""
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)
    assert main(["sweep", str(_sweep_file(tmp_path)), "--cache", str(tmp_path / "cache"),
                 "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == ("rtaug sweep: error: rtaug sweep runs on Ray, which is not installed: "
                                               "pip install 'rtaug[ray]'")
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def _sweep_file(tmp_path) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({**TINY, "grid": {"learner.steps": [30]}}))
    return path


def test_the_papers_numbers_are_keyed_by_real_tasks_and_methods():
    """A typo in a PAPER key would silently leave the report's paper column empty for that row."""
    from rtaug.envs.registry import task_names
    from rtaug.experiments.report import PAPER, table_rows

    assert all(task in task_names() and method in {"bcq", "cql", "iql", "rt+bcq", "ft+bcq"} for task, method in PAPER)
    # Table 1's three locomotion rows, as the paper prints them (shared/paper/RESULTS.md)
    assert [PAPER[("walker2d-medium-replay", m)] for m in ("bcq", "cql", "iql", "rt+bcq")] == [16.8, 15.8, 74.9, 70.3]
    assert {t for t, _ in PAPER if not t.startswith("maze2d")} == {
        "hopper-medium-replay", "walker2d-medium-replay", "halfcheetah-medium-replay"}
    summary = {"normalized": None, "normalized_d4rl": {"mean": 9.8}}
    row = table_rows([{"task": "walker2d-medium-replay", "label": "rt+bcq", "seeds": [0], "summary": summary,
                       "config": {"protocol": "cpu"}, "learner_steps": 30000}])[0]
    assert (row["paper_d4rl"], row["mean"], row["d4rl_mean"]) == (70.3, None, 9.8)
    # a matmul setting is how the method was computed, not another method; other axes are ablations
    labels = {"cql-matmul=onednn-bf16": 17.2, "rt+bcq-learner.matmul=onednn-bf16-sequence.matmul=onednn": 40.8,
              "rt+bcq-start=arrival": None, "rt+bcq-start=arrival-matmul=onednn-bf16": None, "cql": 17.2}
    rows = table_rows([{"task": "maze2d-large-sparse", "label": label, "seeds": [0], "summary": summary,
                        "config": {}, "learner_steps": 30000} for label in labels])
    assert [r["paper_d4rl"] for r in rows] == list(labels.values())


def test_the_second_half_of_training_is_read_from_the_learning_curve():
    """The report's late-training column: per seed the mean of the cheap evaluations after half the
    updates (the points at or before half are not in it), then mean ± std over seeds."""
    from rtaug.experiments.report import late_training, table_rows, to_markdown

    def curve(points):
        return [{"step": s, "normalized_mean": v} for s, v in points]

    run = {"task": "maze2d-umaze-dense", "label": "bcq", "seeds": [0, 1], "learner_steps": 10,
           "summary": {"normalized": {"mean": 1.0, "std": 0.5, "iqm": 1.0, "iqm_ci95": [0.5, 1.5]},
                       "normalized_d4rl": {"mean": 2.0}},
           "config": {"protocol": "cpu"}, "stages": [], "compute_s": 1.0, "_path": "runs/x",
           "per_seed": {"0": {"curve": curve([(2, 50), (4, 50), (5, 50), (6, 1), (8, 2), (10, 3)])},
                        "1": {"curve": curve([(6, 4), (8, 4), (10, 4)])}}}
    late = late_training(run)
    assert late["late_mean"] == pytest.approx(3.0) and late["late_std"] == pytest.approx(2 ** 0.5)
    assert late["late_points"] == 3
    one = late_training({**run, "per_seed": {"0": run["per_seed"]["0"], "1": {"curve": []}}})
    assert (one["late_mean"], one["late_std"], one["late_points"]) == (pytest.approx(2.0), None, 3)
    assert late_training({**run, "per_seed": {"0": {"curve": curve([(5, 9)])}}})["late_mean"] is None
    md = to_markdown([run], table_rows([run]), [])
    assert "| bcq | 2 | 10 | 1.0 ± 0.5 | 1.0 [0.5, 1.5] | 2.0 | 3.0 ± 1.4 (3) | 50.1 |" in md


def test_a_run_on_a_given_data_file(tiny_experiment, tmp_path):
    """data.file: a user's own file through the whole run; it is copied into the cache (the input
    untouched), the result names it by fingerprint, and the same content elsewhere is the same stage."""
    from rtaug.data.hdf5 import load_hdf5

    d, result, _ = tiny_experiment
    made = Path(next(s["path"] for s in result["stages"] if s["stage"] == "data")) / "data.hdf5"
    mine = tmp_path / "mine.hdf5"
    mine.write_bytes(made.read_bytes())
    before = mine.read_bytes()
    values = {**{k: v for k, v in TINY.items() if k not in ("data", "generator")}, "seeds": [0],
              "data": {"file": str(mine)}}
    ran = run_experiment(build(values), tmp_path / "run", cache=tmp_path / "cache", progress=False,
                         printer=lambda *_: None)
    assert [s["stage"] for s in ran["stages"]] == ["data", "policy", "evaluation"]
    fingerprint = load_hdf5(mine).fingerprint()
    stage = Path(ran["stages"][0]["path"])
    assert json.loads((stage / "stage.json").read_text())["file"] == str(mine.resolve())
    assert load_hdf5(stage / "data.hdf5").fingerprint() == fingerprint == ran["evidence"]["data"]["fingerprint"]
    assert mine.read_bytes() == before and ran["per_seed"]["0"]["normalized_mean"] is not None
    copy = tmp_path / "copy.hdf5"
    copy.write_bytes(before)
    again = run_experiment(build({**values, "data": {"file": str(copy)}}), tmp_path / "again", cache=tmp_path / "cache",
                           progress=False, printer=lambda *_: None)
    assert all(s["cached"] for s in again["stages"])


def test_a_table_says_when_its_rows_stand_on_different_data(tiny_experiment):
    """The same recipe makes other data on another machine (a SAC run is not bitwise the same):
    a task's rows on two files must say so, naming which method stands on which."""
    from rtaug.experiments.report import data_note, table_rows, to_markdown
    from rtaug.experiments.run import collect_result, data_fingerprint

    d, result, _ = tiny_experiment
    p = plan(build(TINY))
    record = json.loads((p.data.path(d / "cache") / "stage.json").read_text())
    assert len(record["fingerprint"]) == 32  # recorded when the stage was built
    # a stage built before the record: read from its file; neither: None
    assert data_fingerprint({}, p.data.path(d / "cache")) == record["fingerprint"]
    assert data_fingerprint({}, d / "nowhere") is None
    assert collect_result(p, d / "cache")["evidence"]["data"]["fingerprint"] == record["fingerprint"]
    older = {**result, "evidence": {k: v for k, v in result["evidence"].items() if k != "data"}}
    assert table_rows([older])[0]["data"] == record["fingerprint"][:12]  # from its stage's file
    gone = {**older, "stages": [{**s, "path": str(d / "nowhere")} for s in older["stages"]]}
    assert table_rows([gone])[0]["data"] is None
    rows = [{"method": "bcq", "data": "aaaa"}, {"method": "cql", "data": "bbbb"}, {"method": "iql", "data": "aaaa"}]
    assert data_note(rows) == ("**Data: these rows stand on 2 different files** (aaaa: bcq, iql; bbbb: cql); "
                               "rows on different files do not compare.")
    assert data_note([{"method": "bcq", "data": None}]) == "Data: the file's fingerprint is not recorded for these runs."
    assert "not recorded: cql" in data_note([rows[0], {"method": "cql", "data": None}])
    result = {**result, "_path": "runs/x"}
    other = {**result, "label": "other", "evidence": {**result["evidence"], "data": {"fingerprint": "f" * 32}}}
    md = to_markdown([result, other], table_rows([result, other]), [])
    assert f"({record['fingerprint'][:12]}: rt+bc; ffffffffffff: other)" in md


def test_the_evidence_of_a_relabelled_run_shows_both_audits():
    """With generator.relabel=simulator the audit is of the rows the learner read (≈ 0 error); the
    evidence row must also say what the model's own rows erred by, or the cell reads as RT's."""
    from rtaug.experiments.report import to_markdown

    run = {"task": "halfcheetah-medium-replay", "label": "rt-relabelled+iql", "stages": [], "compute_s": 1.0,
           "command": "rtaug run x", "commit": "abc", "_path": "runs/x",
           "evidence": {"generation": {"generated_rows": 10, "input_rows": 30, "merge": "prefix"},
                        "audit": {"generated": {"mean_error": 5e-7}},
                        "relabel": {"relabelled_rows": 10, "mean_error_before": 7.44}}}
    row = next(line for line in to_markdown([run], [], []).splitlines() if line.startswith("| halfcheetah"))
    cells = row.split(" | ")
    assert cells[3] == "25.0% (prefix)"
    assert cells[8] == "5e-07 (relabelled by the simulator; the model's rows: 7.44)"
    plain = {**run, "evidence": {k: v for k, v in run["evidence"].items() if k != "relabel"}}
    row = next(line for line in to_markdown([plain], [], []).splitlines() if line.startswith("| halfcheetah"))
    assert row.split(" | ")[8] == "5e-07"


def test_panels_with_different_methods_each_get_their_own_legend(tmp_path):
    """Colours are assigned per panel in turn, so one shared legend would name another panel's lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rtaug.experiments.report import _save_panels

    def panels(names):
        fig, axes = plt.subplots(1, 2, squeeze=False)
        for ax, mine in zip(axes[0], names):
            for name in mine:
                ax.plot([0, 1], [0, 1], label=name)
        return fig, axes

    fig, axes = panels([["iql", "rt+iql"], ["iql", "rt+iql"]])
    _save_panels(fig, axes, "score", tmp_path / "same.png")
    assert [ax.get_legend() is not None for ax in axes[0]] == [False, True]
    fig, axes = panels([["iql", "rt+iql (prefix)"], ["iql", "rt-f3+iql"]])
    _save_panels(fig, axes, "score", tmp_path / "differ.png")
    assert [ax.get_legend() is not None for ax in axes[0]] == [True, True]
    assert (tmp_path / "differ.png").stat().st_size > 1000


def test_results_name_the_commit_the_process_loaded_not_the_newest(monkeypatch):
    import subprocess

    from rtaug.experiments import run as run_module

    loaded = run_module.commit()

    def newer_head(argv, **kwargs):  # the checkout moved on while a long run was under way
        return subprocess.CompletedProcess(argv, 0, stdout="" if "status" in argv else "f00dfeed\n", stderr="")

    monkeypatch.setattr(run_module.subprocess, "run", newer_head)
    assert run_module._checkout_commit() == "f00dfeed"
    assert run_module.commit() == loaded
