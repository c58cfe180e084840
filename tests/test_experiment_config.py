"""Experiment configs: YAML + `key=value` overrides into typed dataclasses, checked by key path;
stage keys that change exactly when what a stage depends on changes; sweep grids."""

import dataclasses
import re

import pytest

from rtaug.experiments.config import ConfigError, build, dump_yaml, load, to_dict
from rtaug.experiments.run import plan
from rtaug.experiments.sweep import expand


def test_overrides_reach_every_level_and_are_typed():
    cfg = build({"task": "maze2d-medium-dense", "learner": {"algo": "iql"}},
                ["learner.expectile=0.9", "generator.generation.beta=0", "seeds=[3, 4]", "generator.kind=rt",
                 "generator.model.sequence.n_layer=2", "learner.hidden=[64, 64]"])
    assert cfg.learner.params == {"expectile": 0.9, "hidden": (64, 64)}
    assert isinstance(cfg.generator.generation.beta, float) and cfg.generator.generation.beta == 0.0
    assert cfg.seeds == [3, 4] and cfg.generator.model.sequence.n_layer == 2
    assert cfg.label == "rt+iql"


@pytest.mark.parametrize("overrides, message", [
    (["learner.expectile=0.9", "learner.algo=bc"], "learner.expectile: unknown key"),
    (["generator.generation.betta=0.1"], "generator.generation.betta: unknown key"),
    (["generator.model.sequence.n_layer=two"], "generator.model.sequence.n_layer: expected an integer"),
    (["generator.kind=rt-f7"], "generator.kind: 'rt-f7' is not one of"),
    (["task=maze2d-tiny"], "task:"),
    (["seeds=[1, 1]"], "seeds: must be non-empty and distinct"),
    (["learner.steps=0"], "learner.steps: must be at least 1"),
    (["generator.generation.reliability=mean"], "generator.generation:"),
    (["learner.algo=sac"], "learner.algo:"),
    (["nokey"], "an override is key=value"),
    (["generator.kind=rt", "generator.generation.context=30"], "generator.generation.context:"),
    # ranges: the fields' own (rtaug.ranges), the same the command line's flags are checked by
    (["generator.model.sequence.steps=0"], "generator.model.sequence.steps: must be at least 1, got 0"),
    (["generator.model.sequence.context_steps=1"], ("generator.model.sequence.context_steps: must be at least 2 "
                                                    "(a window holds at least one step of context and one generated "
                                                    "step)")),
    (["generator.generation.alpha_quantile=2"], ("generator.generation.alpha_quantile: must be in (0, 1] "
                                                 "(1 = the maximum), got 2.0")),
    (["generator.model.vae.alpha_quantile=0"], "generator.model.vae.alpha_quantile: must be in (0, 1]"),
    (["generator.model.dynamics.members=0"], "generator.model.dynamics.members: must be at least 1"),
    (["generator.model.reward.lr=0"], "generator.model.reward.lr: must be greater than 0"),
    (["generator.generation.kappa=-1"], "generator.generation.kappa: must be at least 0"),
    (["evaluation.episodes=0"], "evaluation.episodes: must be at least 1"),
    (["data.seed=-1"], "data.seed: must be in [0, 2^32) (JAX's generators use a seed's low 32 bits), got -1"),
    (["seeds=[0, 4294967296]"], "seeds: must be in [0, 2^32)"),
    # the learners' own settings, declared beside their fields in rtaug/algos
    (["learner.algo=iql", "learner.expectile=1.0"], "learner.expectile: must be in (0, 1), got 1.0"),
    (["learner.algo=bcq", "learner.batch_size=0"], "learner.batch_size: must be at least 1, got 0"),
    (["learner.algo=td3bc", "learner.tau=0"], "learner.tau: must be in (0, 1], got 0.0"),
    (["learner.algo=cql", "learner.discount=1.5"], "learner.discount: must be in [0, 1], got 1.5"),
    (["learner.algo=bc", "learner.hidden=[256, 0]"], "learner.hidden: must be at least 1, got (256, 0)"),
])
def test_bad_fields_are_refused_by_their_path(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        build({}, overrides)


def test_the_largest_seed_jax_tells_apart_is_accepted():
    assert build({}, ["seeds=[0, 4294967295]", "learner.eval_every=null"]).seeds == [0, 2**32 - 1]


def test_yaml_round_trip(tmp_path):
    cfg = build({"generator": {"kind": "ft"}, "learner": {"algo": "iql", "expectile": 0.8}}, ["seeds=[0]"])
    path = tmp_path / "c.yaml"
    path.write_text(dump_yaml(cfg))
    again = load(path)
    assert to_dict(again) == to_dict(cfg)
    assert [s.key for s in plan(again).stages] == [s.key for s in plan(cfg).stages]


def test_bad_files_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="list.yaml: expected a mapping"):
        load(tmp_path / "list.yaml")
    (tmp_path / "bad.yaml").write_text("task: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load(tmp_path / "bad.yaml")


def _keys(cfg):
    p = plan(cfg)
    return {s.label: s.key for s in p.stages}


def test_a_changed_field_changes_exactly_the_stages_downstream():
    base = build({"generator": {"kind": "rt"}}, ["seeds=[0, 1]"])
    k = _keys(base)
    learner = _keys(build({"generator": {"kind": "rt"}}, ["seeds=[0, 1]", "learner.steps=5000"]))
    assert [n for n in k if k[n] != learner[n]] == ["policy iql seed 0", "evaluation seed 0",
                                                    "policy iql seed 1", "evaluation seed 1"]
    gen = _keys(build({"generator": {"kind": "rt"}}, ["seeds=[0, 1]", "generator.generation.beta=0.5"]))
    assert {n for n in k if k[n] != gen[n]} == set(k) - {"trajectories (maze2d-umaze)", "data (maze2d-umaze-sparse)",
                                                         "model (backward)"}
    model = _keys(build({"generator": {"kind": "rt"}}, ["seeds=[0, 1]", "generator.model.vae.steps=10"]))
    assert {n for n in k if k[n] != model[n]} == set(k) - {"trajectories (maze2d-umaze)", "data (maze2d-umaze-sparse)"}
    # a maze's -sparse and -dense tasks share the collection, and nothing after it
    dense = _keys(build({"generator": {"kind": "rt"}}, ["seeds=[0, 1]", "task=maze2d-umaze-dense"]))
    assert set(k.values()) & set(dense.values()) == {k["trajectories (maze2d-umaze)"]}
    # labels and the protocol's name are not inputs of any stage
    named = _keys(build({"generator": {"kind": "rt"}}, ["seeds=[0, 1]", "name=mine", "protocol=cpu"]))
    assert named == k


def test_rt_and_its_fixed_length_ablations_share_one_model_and_ft_does_not():
    models = {}
    for kind in ("rt", "rt-f3", "rt-f5", "ft", "backward-mlp"):
        p = plan(build({}, [f"generator.kind={kind}", "seeds=[0]"]))
        models[kind] = next(s.key for s in p.stages if s.name == "model")
        gen = next(s for s in p.stages if s.name == "generated")
        assert gen.spec["generation"]["fixed_length"] == {"rt-f3": 3, "rt-f5": 5}.get(kind)
    assert models["rt"] == models["rt-f3"] == models["rt-f5"] == models["backward-mlp"] != models["ft"]
    # the one-step baseline adds its MLP to RT's model directory in a stage of its own
    p = plan(build({}, ["generator.kind=backward-mlp", "seeds=[0]"]))
    mlp = next(s for s in p.stages if s.name == "mlp")
    assert mlp.deps["model"].key == models["rt"] and next(s for s in p.stages if s.name == "generated").deps["model"] is mlp
    # the baseline has no generator stages, and its policies read the real data
    p = plan(build({}, ["seeds=[0]"]))
    assert [s.name for s in p.stages] == ["trajectories", "data", "policy", "evaluation"]


def test_grid_cells_are_every_combination_with_distinct_names():
    cells = expand({"task": "maze2d-umaze-sparse", "learner": {"algo": "bcq"},
                    "grid": {"task": ["maze2d-umaze-sparse", "maze2d-umaze-dense"],
                             "generator.kind": ["none", "ft", "rt"]}})
    assert [c.name for c in cells] == [f"{t}/{m}" for t in ("maze2d-umaze-sparse", "maze2d-umaze-dense")
                                       for m in ("bcq", "ft+bcq", "rt+bcq")]
    cells = expand({"grid": {"learner.expectile": [0.7, 0.9]}})
    assert [c.name for c in cells] == ["maze2d-umaze-sparse/iql-expectile=0.7", "maze2d-umaze-sparse/iql-expectile=0.9"]
    # the report labels them so too (a label names no stage: the stages are the same as unlabelled)
    assert [c.config.label for c in cells] == ["iql-expectile=0.7", "iql-expectile=0.9"]
    assert plan(cells[0].config).stages[-1].key == plan(dataclasses.replace(cells[0].config, name="")).stages[-1].key
    named = expand({"name": "mine", "grid": {"learner.expectile": [0.7]}})
    assert named[0].config.label == "mine" and named[0].name == "maze2d-umaze-sparse/mine-expectile=0.7"
    # two axes ending in the same field are named by as many trailing fields as tell them apart
    both = expand({"learner": {"algo": "bcq"},
                   "grid": {"learner.matmul": ["onednn"], "generator.model.sequence.matmul": ["onednn-bf16"]}})
    assert both[0].name == "maze2d-umaze-sparse/bcq-learner.matmul=onednn-sequence.matmul=onednn-bf16"
    with pytest.raises(ConfigError, match="grid.seeds: expected a non-empty list"):
        expand({"grid": {"seeds": 3}})


def test_every_protocol_file_loads():
    from pathlib import Path

    from rtaug.experiments.sweep import load_sweep

    files = sorted((Path(__file__).parents[1] / "configs").rglob("*.yaml"))
    assert len(files) >= 6
    for f in files:
        cells = load_sweep(f)
        assert cells and all(c.config.protocol == f.parent.name for c in cells), f


def test_a_grid_axis_is_overridden_from_the_command_line():
    tree = {"grid": {"task": ["maze2d-umaze-sparse", "maze2d-large-dense"], "generator.kind": ["none", "rt"]}}
    cells = expand(tree, ["grid.task=[maze2d-medium-dense]", "learner.steps=500"])
    assert [c.name for c in cells] == ["maze2d-medium-dense/iql", "maze2d-medium-dense/rt+iql"]
    assert all(c.config.learner.steps == 500 for c in cells)


def test_run_on_a_sweep_file_runs_one_cell_or_is_refused():
    tree = {"grid": {"task": ["maze2d-umaze-sparse", "maze2d-large-dense"], "generator.kind": ["none", "rt"],
                     "learner.algo": ["bcq"]}}
    cfg = build(tree, ["task=maze2d-large-dense", "generator.kind=rt"])
    # the chosen cell, and the axis of one value taken as it is
    assert (cfg.task, cfg.generator.kind, cfg.learner.algo) == ("maze2d-large-dense", "rt", "bcq")
    # an axis left open would silently run the file's defaults, which is no cell of the grid
    with pytest.raises(ConfigError, match=re.escape("sweep.yaml: a sweep file (2 cells over generator.kind): run it "
                                                    "with `rtaug sweep`, or one cell of it by choosing each axis, "
                                                    "e.g. `generator.kind=none`")):
        build(tree, ["task=maze2d-umaze-sparse"], source="sweep.yaml")


def test_learner_configs_check_their_ranges_when_built_in_python():
    from rtaug.algos.iql import IQLConfig

    with pytest.raises(ValueError, match=re.escape("IQLConfig.expectile must be in (0, 1), got 0.0")):
        IQLConfig(expectile=0.0)
    assert IQLConfig(expectile=0.9).expectile == 0.9


def test_cql_cells_warm_up_for_a_share_of_their_own_budget():
    """The policy stage trains (and is keyed by) the config with the budget-scaled fields resolved."""
    from rtaug.experiments.run import learner_config

    assert learner_config(build({}, ["learner.algo=cql", "learner.steps=30000"])).bc_steps == 1_200
    assert learner_config(build({}, ["learner.algo=cql", "learner.steps=30000", "learner.bc_steps=10"])).bc_steps == 10
    assert learner_config(build({}, ["learner.algo=iql", "learner.steps=30000"])).decay_steps == 30_000


def test_a_learner_field_given_at_its_class_default_beats_the_domain_table():
    """Maze2D's IQL normalises states by its domain table; `learner.normalize_obs=false` (the class
    default) must still train on raw states, and be a different stage from the default run."""
    from rtaug.experiments.run import learner_config

    maze = ["task=maze2d-large-sparse", "learner.algo=iql"]
    assert learner_config(build({}, maze)).normalize_obs is True
    c = learner_config(build({}, maze + ["learner.normalize_obs=false", "learner.return_normalize=true"]))
    assert (c.normalize_obs, c.return_normalize) == (False, True)


def _save(path, obs_dim=4, act_dim=2, n=40, metadata=None, infos=None):
    """A small D4RL-layout file: two episodes of n/2 rows with the given sizes."""
    import numpy as np

    from rtaug.data import Dataset
    from rtaug.data.hdf5 import save_hdf5

    rng = np.random.default_rng(0)
    obs = rng.normal(size=(n, obs_dim)).astype(np.float32)
    timeouts = np.zeros(n, bool)
    timeouts[[n // 2 - 1, n - 1]] = True
    data = Dataset(obs, rng.uniform(-1, 1, (n, act_dim)).astype(np.float32), np.zeros(n, np.float32),
                   np.zeros(n, bool), timeouts, obs + 0.1, infos=infos or {}, metadata=metadata or {})
    save_hdf5(data, path)
    return path


def test_a_data_file_is_checked_before_any_work(tmp_path):
    """data.file: the file is the data; what would make other data, another task's file, the wrong
    sizes and (locomotion) a file the audit cannot replay are refused by key, before any stage."""
    import numpy as np

    mine = _save(tmp_path / "mine.hdf5", metadata={"task": "maze2d-umaze-sparse"})
    cfg = build({"task": "maze2d-umaze-sparse", "data": {"file": str(mine)}})
    moved = tmp_path / "elsewhere.hdf5"
    moved.write_bytes(mine.read_bytes())
    p, q = plan(cfg), plan(build({"task": "maze2d-umaze-sparse", "data": {"file": str(moved)}}))
    assert [s.name for s in p.stages][:2] == ["data", "policy"] and p.data.key == q.data.key  # content, not name
    # a file edited between planning and its stage is refused, and nothing is left as finished
    from rtaug.experiments.run import Log, execute

    _save(moved, n=60, metadata={"task": "maze2d-umaze-sparse"})
    with pytest.raises(RuntimeError, match="changed since the run was planned"):
        execute(q.data, tmp_path / "cache", Log(False, lambda *_: None))
    assert not q.data.done(tmp_path / "cache")
    refused = [
        ({"file": str(tmp_path / "none.hdf5")}, "maze2d-umaze-sparse", f"data.file: {tmp_path / 'none.hdf5'}: no such file"),
        ({"file": str(mine), "steps": 100}, "maze2d-umaze-sparse", "data.file: the file is the data; data.steps would make data"),
        ({"file": str(mine), "seed": 3, "timeouts": "goal"}, "maze2d-umaze-sparse",
         "data.seed, data.timeouts would make data, leave them unset"),
        ({"file": str(mine)}, "maze2d-umaze-dense", "records task 'maze2d-umaze-sparse', not 'maze2d-umaze-dense'"),
        ({"file": str(_save(tmp_path / "wide.hdf5", obs_dim=5))}, "maze2d-umaze-sparse",
         "key 'observations': task 'maze2d-umaze-sparse' has 4-dimensional observations"),
    ]
    hopper = _save(tmp_path / "hopper.hdf5", obs_dim=11, act_dim=3)
    refused.append(({"file": str(hopper)}, "hopper-medium-replay", "key 'infos/qpos': missing"))
    for data, task, message in refused:
        with pytest.raises(ConfigError, match=re.escape(message)):
            build({"task": task, "data": data, "generator": {"kind": "rt"}})
    # without a generator nothing replays the simulator: a file without infos is enough
    assert build({"task": "hopper-medium-replay", "data": {"file": str(hopper)}}).data.file == str(hopper)
    states = {"qpos": np.zeros((40, 6)), "qvel": np.zeros((40, 6))}
    build({"task": "hopper-medium-replay", "data": {"file": str(_save(tmp_path / "h2.hdf5", 11, 3, infos=states))},
           "generator": {"kind": "rt"}})
