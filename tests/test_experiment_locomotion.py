"""`rtaug run` on a locomotion task: a `sac` stage per environment (shared by its four datasets),
`data` cut out of it, the task's evaluation protocol, scores without this simulator's references
reported D4RL-normalised and raw, then scored once references are measured; a rerun reuses every
stage."""

import csv
import json

import pytest
from conftest import with_references

pytest.importorskip("mujoco")

from rtaug.cli import main
from rtaug.experiments.config import ConfigError, build
from rtaug.experiments.run import plan, run_experiment

TINY_LOCO = {
    "task": "hopper-medium-replay", "seeds": [0], "protocol": "test",
    "data": {"recipe": {"sac_steps": 600, "learning_starts": 200, "eval_every": 300, "eval_episodes": 2,
                        "hidden": [16, 16], "batch_size": 16, "checkpoint_every": 300,
                        "max_episode_steps": 100}},
    "generator": {"kind": "none"},
    "learner": {"algo": "bc", "steps": 20, "eval_every": 10, "eval_episodes": 1, "chunk": 10, "hidden": [16, 16]},
    "evaluation": {"episodes": 2},
}


def test_a_locomotion_config_builds_and_its_four_datasets_share_one_sac_stage():
    cfg = build({"task": "walker2d-medium"}, ["data.recipe.sac_steps=3000", "data.recipe.hidden=[32,32]"])
    assert cfg.data.recipe == {"sac_steps": 3000, "hidden": [32, 32]}
    stages = {kind: plan(build({"task": f"hopper-{kind}", "data": {"steps": None if kind == "medium-replay" else 500}}))
              for kind in ("medium", "medium-replay", "expert", "medium-expert")}
    sac_keys = {p.stages[0].key for p in stages.values()}
    assert [s.name for s in stages["medium"].stages[:2]] == ["sac", "data"] and len(sac_keys) == 1
    assert len({p.stages[1].key for p in stages.values()}) == 4
    assert plan(build({"task": "walker2d-medium"})).stages[0].key not in sac_keys
    assert plan(build({"task": "hopper-medium", "data": {"seed": 1}})).stages[0].key not in sac_keys


@pytest.mark.parametrize("values, message", [
    ({"task": "hopper-medium", "data": {"recipe": {"sac_stepz": 5}}}, "data.recipe: collect hopper-medium: unknown setting(s) sac_stepz"),
    ({"task": "hopper-medium", "data": {"recipe": {"learning_starts": "many"}}}, "data.recipe: collect hopper-medium: learning_starts='many'"),
    ({"task": "hopper-medium", "data": {"recipe": {"sac_steps": True}}}, "data.recipe: collect hopper-medium: sac_steps=True: expected int"),
    ({"task": "hopper-medium", "data": {"recipe": {"learning_starts": 2.5}}}, "data.recipe: collect hopper-medium: learning_starts=2.5: expected int"),
    ({"task": "hopper-medium-replay", "data": {"steps": 1000}}, "data.steps: does not apply to hopper-medium-replay"),
    ({"task": "hopper-medium", "data": {"timeouts": "goal"}}, "data.timeouts: a maze setting"),
    ({"task": "maze2d-umaze-sparse", "data": {"recipe": {"sac_steps": 5}}}, "data.recipe: only locomotion tasks"),
    ({"task": "boxball"}, "task: task 'boxball': rtaug run supports maze2d and mujoco tasks only"),
])
def test_bad_locomotion_configs_are_refused_by_key(values, message):
    with pytest.raises(ConfigError) as err:
        build(values)
    assert str(err.value).startswith(message)


@pytest.mark.parametrize("values, message", [
    ({"task": "hopper-medium", "generator": {"kind": "rt", "relabel": "oracle"}},
     "generator.relabel: 'oracle' is not one of model, simulator"),
    ({"task": "hopper-medium", "generator": {"relabel": "simulator"}},
     "generator.relabel: 'simulator' needs a generator"),
    ({"task": "maze2d-umaze-sparse", "generator": {"kind": "rt", "relabel": "simulator"}},
     "generator.relabel: 'simulator' is for locomotion tasks, not maze2d-umaze-sparse"),
])
def test_bad_relabel_settings_are_refused_by_key(values, message):
    with pytest.raises(ConfigError) as err:
        build(values)
    assert str(err.value).startswith(message)


def test_relabelled_rows_sit_between_generation_and_the_learner():
    """`generator.relabel=simulator` adds one stage after `generated`: the policies and the audit
    read it, the sequence model and the generation are the ones RT's run uses (shared keys)."""
    rt = plan(build({"task": "hopper-medium", "generator": {"kind": "rt"}, "seeds": [0]}))
    re = plan(build({"task": "hopper-medium", "generator": {"kind": "rt", "relabel": "simulator"}, "seeds": [0]}))
    names = [s.name for s in re.stages]
    assert names == ["sac", "data", "model", "generated", "relabelled", "audit", "policy", "evaluation"]
    by = {s.name: s for s in re.stages}
    assert [s.key for s in re.stages[:4]] == [s.key for s in rt.stages[:4]]
    assert by["relabelled"].deps["generated"] is by["generated"]
    assert by["policy"].deps["dataset"] is by["relabelled"] and by["audit"].deps["generated"] is by["relabelled"]
    assert re.config.label == "rt-relabelled+iql" and rt.config.label == "rt+iql"


def _sac_config(cfg):
    from rtaug.collect.locomotion import sac_settings
    from rtaug.envs.registry import get_task

    return sac_settings(get_task(cfg.task), cfg.data.seed, cfg.data.recipe)[1]


@pytest.mark.slow  # a tiny SAC run and BC (compiling them is most of the time)
def test_a_tiny_locomotion_run_end_to_end_then_reused(tmp_path, monkeypatch):
    from dataclasses import replace

    from rtaug.collect.sac import train_sac

    with_references(monkeypatch, "hopper", None, None)  # as before hopper's were measured
    cfg = build(TINY_LOCO)
    sac = plan(cfg).stages[0]
    config = replace(_sac_config(cfg), total_steps=300)
    # a SAC stage killed at step 300: its run directory is left in the stage's work directory
    train_sac(config, tmp_path / "cache" / "sac" / f"{sac.key}.partial" / "sac", progress=False, log=lambda *_: None)
    lines = []
    result = run_experiment(build(TINY_LOCO), tmp_path / "run", cache=tmp_path / "cache", progress=False,
                            printer=lines.append)
    assert [s["stage"] for s in result["stages"]] == ["sac", "data", "policy", "evaluation"]
    assert not any(s["cached"] for s in result["stages"])
    assert any("resuming" in line and "at step 300 of 600" in line for line in lines)  # not started over
    sac_dir = tmp_path / "cache" / "sac" / result["stages"][0]["key"]
    assert (sac_dir / "sac" / "run.json").exists() and (sac_dir / "sac" / "curve.csv").exists()
    data = json.loads((tmp_path / "cache" / "data" / result["stages"][1]["key"] / "stage.json").read_text())
    assert data["transitions"] == data["cut"]["medium_step"]  # medium-replay: the buffer up to the cut
    row = result["per_seed"]["0"]
    assert row["episodes"] == 2 and row["normalized_mean"] is None and row["normalized_d4rl_mean"] is not None
    assert result["summary"]["normalized"] is None and result["summary"]["return"]["mean"] == row["return_mean"]
    assert [p["step"] for p in row["curve"]] == [10, 20] and "normalized_mean" not in row["curve"][0]
    assert result["references"]["measured"] is False and "rtaug reference hopper" in result["references"]["command"]
    assert any("normalized: – (this simulator's references are not measured yet; `rtaug reference hopper-medium "
               f"--sac-dir {sac_dir}/sac` measures them)" in line for line in lines)
    again = run_experiment(build(TINY_LOCO), tmp_path / "run", cache=tmp_path / "cache", progress=False,
                           printer=lambda *_: None)
    assert all(s["cached"] for s in again["stages"]) and again["per_seed"] == result["per_seed"]
    # the report: an empty `normalized` column beside the D4RL-normalised score, no curve made up
    assert main(["report", str(tmp_path / "run"), "--out", str(tmp_path / "report")]) == 0
    rows = list(csv.DictReader((tmp_path / "report" / "results.csv").open()))
    assert rows[0]["mean"] == "" and float(rows[0]["d4rl_mean"]) == pytest.approx(row["normalized_d4rl_mean"], abs=1e-3)
    # the run's SAC stage (in the cache, not under the run directory): its curve and where medium was cut
    md = (tmp_path / "report" / "report.md").read_text()
    assert "## SAC runs" in md and f"`{sac_dir / 'sac'}`" in md and "| Hopper-v5 | 0 | 600 / 600 |" in md
    assert (tmp_path / "report" / "sac.png").stat().st_size > 1000
    # the expert's return given to the data (a run stopped at the cut): the same SAC stage, and the
    # report's SAC table cuts where the data did and says the level was given
    from rtaug.collect.locomotion import medium_cut
    from rtaug.collect.sac import read_curve

    level = medium_cut(read_curve(sac_dir / "sac"), 1 / 3)["expert_level"]  # some evaluation reaches a third
    given = build({**TINY_LOCO, "data": {**TINY_LOCO["data"],
                                         "recipe": {**TINY_LOCO["data"]["recipe"], "expert_return": level}}})
    third = run_experiment(given, tmp_path / "run3", cache=tmp_path / "cache", progress=False, printer=lambda *_: None)
    assert third["stages"][0]["cached"] and third["stages"][1]["key"] != result["stages"][1]["key"]
    cut = json.loads((tmp_path / "cache" / "data" / third["stages"][1]["key"] / "stage.json").read_text())["cut"]
    assert (cut["window"], cut["expert_level"]) == (0, level)
    assert main(["report", str(tmp_path / "run3"), "--out", str(tmp_path / "report3")]) == 0
    assert f"| {level:.1f} (given) | {cut['medium_step']:,}, {cut['medium_return']:.1f} |" in (
        tmp_path / "report3" / "report.md").read_text()

    # the same SAC run given as data.sac_dir (as `rtaug collect --sac-dir` leaves one) to a fresh cache:
    # a stage keyed by that run, not passed off as a trained one, and the same data and policy
    imported = build({**TINY_LOCO, "data": {**TINY_LOCO["data"], "sac_dir": str(sac_dir / "sac")}})
    other = run_experiment(imported, tmp_path / "run2", cache=tmp_path / "cache2", progress=False,
                           printer=lambda *_: None)
    assert other["stages"][0]["key"] != result["stages"][0]["key"]
    assert other["stages"][1]["key"] != result["stages"][1]["key"]  # data reads the sac stage's key
    assert other["per_seed"]["0"]["return_mean"] == row["return_mean"]
    copied = tmp_path / "cache2" / "sac" / other["stages"][0]["key"]
    assert json.loads((copied / "stage.json").read_text())["imported_from"] == str((sac_dir / "sac").resolve())
    assert (copied / "sac" / "checkpoint.msgpack").read_bytes() == (sac_dir / "sac" / "checkpoint.msgpack").read_bytes()
    # refused before any work: another budget, a run not finished
    with pytest.raises(ConfigError, match=r"data.sac_dir: .*another SAC run: total_steps 600 \(wanted 900\)"):
        build({**TINY_LOCO, "data": {**TINY_LOCO["data"], "sac_dir": str(sac_dir / "sac"),
                                      "recipe": {**TINY_LOCO["data"]["recipe"], "sac_steps": 900}}})
    config = replace(_sac_config(cfg), total_steps=300)
    train_sac(config, tmp_path / "half", progress=False, log=lambda *_: None)
    info = json.loads((tmp_path / "half" / "run.json").read_text())
    (tmp_path / "half" / "run.json").write_text(json.dumps({**info, "total_steps": 600}))  # as a killed 600-step run's
    with pytest.raises(ConfigError, match=r"data.sac_dir: .*half: the SAC run has not finished \(300 of 600 steps\)"):
        build({**TINY_LOCO, "data": {**TINY_LOCO["data"], "sac_dir": str(tmp_path / "half")}})

    # the references measured after the run: its cached stages' raw returns are scored, nothing runs again
    with_references(monkeypatch, "hopper", -100.0, 900.0)
    scored = run_experiment(build(TINY_LOCO), tmp_path / "run4", cache=tmp_path / "cache", progress=False,
                            printer=lambda *_: None)
    assert all(s["cached"] for s in scored["stages"])
    now = scored["per_seed"]["0"]
    assert now["return_mean"] == row["return_mean"]
    assert now["normalized_mean"] == pytest.approx((row["return_mean"] + 100.0) / 10.0)
    assert [p["normalized_mean"] for p in now["curve"]] == pytest.approx(
        [(p["return_mean"] + 100.0) / 10.0 for p in row["curve"]])
    assert scored["summary"]["normalized"]["mean"] == pytest.approx(now["normalized_mean"])
    assert scored["references"]["measured"] is True


@pytest.mark.parametrize("values, message", [
    ({"task": "maze2d-umaze-sparse", "data": {"sac_dir": "runs/sac/x"}}, "data.sac_dir: only locomotion tasks have a SAC run"),
    ({"task": "hopper-medium", "data": {"sac_dir": "runs/sac/{envs}"}}, "data.sac_dir: 'runs/sac/{envs}' names no field 'envs'"),
    ({"task": "hopper-medium", "data": {"sac_dir": "/nonexistent/{env}-seed{seed}"}},
     "data.sac_dir: /nonexistent/hopper-seed0: no SAC run here"),
])
def test_a_bad_sac_dir_is_refused_by_key(values, message):
    with pytest.raises(ConfigError) as err:
        build(values)
    assert str(err.value).startswith(message)
