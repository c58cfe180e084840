"""The oneDNN matmul (rtaug.nets.onednn): the same products and gradients as XLA's in float32,
bfloat16's error where it is asked for, the same networks and CQL updates, and the stage key
of every run made before the option existed left unchanged."""

from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rtaug.algos import bcq, cql
from rtaug.algos.common import Critics
from rtaug.nets import onednn
from rtaug.nets.mlp import MLP


@pytest.fixture(scope="module", autouse=True)
def built():
    usable, why = onednn.available()
    if not usable:  # the test extra installs oneDNN; a compiler is the machine's
        pytest.fail(f"rtaug.nets.onednn cannot be built here: {why}")


def _normal(seed, shape):
    return jax.random.normal(jax.random.key(seed), shape)


def test_float32_matmul_matches_xla_with_leading_axes():
    x, w = _normal(0, (3, 5, 7)), _normal(1, (7, 4))
    np.testing.assert_allclose(onednn.matmul(x, w, bf16=False), x @ w, rtol=1e-5, atol=1e-5)
    assert onednn.matmul(x, w, bf16=False).shape == (3, 5, 4)


def test_batched_matmul_is_attentions_products_in_float32():
    # as a decoding transformer calls it: (batch, heads, queries, d) against keys read transposed
    q, k, a = _normal(4, (3, 2, 4, 8)), _normal(5, (3, 2, 6, 8)), _normal(6, (3, 2, 4, 6))
    jit = jax.jit(onednn.batched_matmul, static_argnames="transpose_b")
    np.testing.assert_allclose(jit(q, k, transpose_b=True), q @ jnp.swapaxes(k, -1, -2), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(jit(a, k), a @ k, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(jit(a[0], k[0]), a[0] @ k[0], rtol=1e-5, atol=1e-5)  # rank 3
    with pytest.raises(ValueError, match="rank 3-4 and equal rank"):
        onednn.batched_matmul(q, k[0])


def test_gradients_match_xla_under_vmap_over_an_ensemble():
    # nn.vmap over a critic ensemble: x shared (unbatched), the weights stacked; jit as in training.
    x, ws = _normal(2, (6, 9)), _normal(3, (2, 9, 5))

    def loss(matmul):
        return lambda x, ws: jnp.sum(jnp.sin(jax.vmap(lambda w: matmul(x, w))(ws)))

    ref = jax.grad(loss(jnp.matmul), argnums=(0, 1))(x, ws)
    got = jax.jit(jax.grad(loss(lambda x, w: onednn.matmul(x, w, bf16=False)), argnums=(0, 1)))(x, ws)
    for r, g in zip(ref, got):
        assert r.shape == g.shape
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-5)


def test_nested_vmap_broadcasts_both_operands():
    x, ws = _normal(4, (3, 6, 8)), _normal(5, (2, 8, 4))
    f = jax.vmap(jax.vmap(lambda x, w: onednn.matmul(x, w, bf16=False), (None, 0)), (0, None))
    np.testing.assert_allclose(f(x, ws), jnp.einsum("bik,wkn->bwin", x, ws), rtol=1e-5, atol=1e-5)


def test_bfloat16_error_is_bfloat16_sized():
    # Products of bfloat16-rounded operands (8 significant bits), float32 sums: a relative error
    # near 2^-8 at most; a CPU without bfloat16 units may compute in float32 (error ~1e-7).
    x, w = _normal(6, (64, 256)), _normal(7, (256, 64))
    ref = np.asarray(x @ w)
    err = np.abs(np.asarray(onednn.matmul(x, w, bf16=True)) - ref).max() / np.abs(ref).max()
    assert err < 2**-7


def test_rejects_a_weight_that_is_not_a_matrix():
    with pytest.raises(ValueError, match="w must be 2-D"):
        onednn.matmul(jnp.ones((2, 3)), jnp.ones((2, 3, 4)))


def test_mlp_has_xla_parameters_and_outputs():
    x = _normal(8, (10, 6))
    nets = {m: MLP((32, 32), 3, weight_init="torch", matmul=m) for m in ("xla", "onednn")}
    params = {m: net.init(jax.random.key(0), x) for m, net in nets.items()}
    assert jax.tree_util.tree_structure(params["xla"]) == jax.tree_util.tree_structure(params["onednn"])
    for a, b in zip(jax.tree_util.tree_leaves(params["xla"]), jax.tree_util.tree_leaves(params["onednn"])):
        np.testing.assert_array_equal(a, b)  # same names and initialisers: checkpoints interchange
    np.testing.assert_allclose(nets["onednn"].apply(params["xla"], x), nets["xla"].apply(params["xla"], x),
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="MLP.matmul must be one of"):
        MLP((4,), 1, matmul="bf16").init(jax.random.key(0), x)


def test_critics_ensemble_through_onednn():
    obs, act = _normal(9, (4, 1, 3)), _normal(10, (4, 7, 2))
    ref = Critics((16, 16), 2)
    params = ref.init(jax.random.key(1), obs, act)
    got = Critics((16, 16), 2, matmul="onednn").apply(params, obs, act)
    np.testing.assert_allclose(got, ref.apply(params, obs, act), rtol=1e-5, atol=1e-5)


SMALL = {"cql": {"hidden": (32, 32), "batch_size": 16, "n_actions": 3, "bc_steps": 2},
         "bcq": {"vae_hidden": (32, 32), "actor_hidden": (32, 16), "critic_hidden": (32, 16), "batch_size": 16,
                 "n_samples": 3}}


def _run(algo, matmul, steps=5):
    module = {"cql": cql, "bcq": bcq}[algo]
    config = module.Config(**SMALL[algo], matmul=matmul)
    rng = np.random.default_rng(0)
    batch = {"observations": rng.normal(size=(16, 4)).astype(np.float32),
             "actions": rng.uniform(-0.9, 0.9, (16, 2)).astype(np.float32),
             "next_observations": rng.normal(size=(16, 4)).astype(np.float32),
             "rewards": rng.normal(size=16).astype(np.float32), "dones": np.zeros(16, np.float32)}
    state = module.init(config, 4, 2, jax.random.key(0))
    update = jax.jit(lambda s, k: module.update(config, s, batch, k))
    for i in range(steps):
        state, metrics = update(state, jax.random.key(i + 1))
    return state, metrics, jax.jit(lambda p, o: module.act(config, p, o, jax.random.key(9))
                                   if algo == "bcq" else module.act(config, p, o))(state["params"], batch["observations"])


@pytest.mark.parametrize("algo", ["cql", "bcq"])
def test_updates_and_actions_through_onednn_match_xla(algo):
    (xs, xm, xa), (os_, om, oa) = _run(algo, "xla"), _run(algo, "onednn")
    assert xm.keys() == om.keys()
    for k in xm:
        np.testing.assert_allclose(om[k], xm[k], rtol=1e-3, atol=1e-4, err_msg=k)
    for a, b in zip(jax.tree_util.tree_leaves(xs["params"]), jax.tree_util.tree_leaves(os_["params"])):
        np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(oa, xa, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("algo", ["cql", "bcq"])
def test_bfloat16_trains_and_stays_finite(algo):
    _, metrics, actions = _run(algo, "onednn-bf16", steps=3)
    assert all(bool(jnp.isfinite(v)) for v in metrics.values()) and bool(jnp.isfinite(actions).all())


def test_configs_name_their_matmul_choices():
    with pytest.raises(ValueError, match="CQLConfig.matmul must be one of"):
        cql.CQLConfig(matmul="amx")
    with pytest.raises(ValueError, match="BCQConfig.matmul must be one of"):
        bcq.BCQConfig(matmul="amx")


def test_unavailable_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(onednn, "_prefixes", lambda: [tmp_path])
    with pytest.raises(onednn.OnednnUnavailable, match=r"rtaug\[onednn\]"):
        onednn._find()


def test_stage_keys_leave_the_default_out():
    from rtaug.experiments.config import build
    from rtaug.experiments.run import plan

    def policy(*overrides):
        cfg = build({"learner": {"algo": "cql", "steps": 10}, "seeds": [0]}, overrides)
        return next(st for st in plan(cfg).stages if st.name == "policy")

    default, bf16 = policy(), policy("learner.matmul=onednn-bf16")
    assert "matmul" not in default.spec["config"]  # keys made before the field existed still match
    assert bf16.spec["config"]["matmul"] == "onednn-bf16" and bf16.key != default.key
    assert policy("learner.matmul=xla").key == default.key


def test_a_run_asking_for_onednn_where_it_cannot_build_is_refused_before_work(monkeypatch):
    from rtaug.experiments.config import ConfigError, build

    monkeypatch.setattr(onednn, "available", lambda: (False, "no C++ compiler"))
    with pytest.raises(ConfigError, match="learner.matmul: onednn-bf16 is not usable here: no C.. compiler"):
        build({"learner": {"algo": "cql"}}, ["learner.matmul=onednn-bf16"])
    with pytest.raises(ConfigError, match="generator.model.sequence.matmul: onednn is not usable here"):
        build({"generator": {"kind": "rt"}}, ["generator.model.sequence.matmul=onednn"])
    build({"learner": {"algo": "cql"}, "generator": {"kind": "rt"}})  # the default needs nothing


def test_train_policy_matmul_flag(tmp_path, capsys):
    import json

    from test_train_policy_cli import _write_augmented

    from rtaug.cli import main

    data = tmp_path / "maze2d-aug.hdf5"
    _write_augmented(data)
    common = ["train-policy", "--dataset", str(data), "--steps", "4", "--chunk", "2", "--no-progress"]
    assert main([*common, "--algo", "iql", "--matmul", "onednn-bf16", "--out", str(tmp_path / "iql")]) == 2
    assert "--matmul onednn-bf16: iql has no oneDNN path" in capsys.readouterr().err
    assert not (tmp_path / "iql").exists()
    assert main([*common, "--algo", "cql", "--matmul", "onednn-bf16", "--out", str(tmp_path / "cql")]) == 0
    summary = json.loads((tmp_path / "cql" / "summary.json").read_text())
    assert summary["matmul"] == "onednn-bf16" and summary["steps"] == 4
    assert np.isfinite(summary["final"]["0"]["critic_loss"])


def test_a_checkpoint_from_before_the_field_resumes(tmp_path):
    # run.json and checkpoints record the config without `matmul` at its default, as they did
    # before the field existed: such a run (and a cached shorter run a longer one continues) resumes.
    import json

    from test_train_policy_cli import _write_augmented

    from rtaug.data.hdf5 import load_hdf5
    from rtaug.train import CHECKPOINT, load_checkpoint, train

    path = tmp_path / "maze2d-aug.hdf5"
    _write_augmented(path)
    data = load_hdf5(path)
    small = cql.CQLConfig(hidden=(16,), batch_size=8, n_actions=2)
    train(data, "cql", small, steps=4, chunk=2, out_dir=tmp_path / "run", progress=False)
    assert "matmul" not in json.loads((tmp_path / "run" / "run.json").read_text())["config"]
    train(data, "cql", small, steps=6, chunk=2, out_dir=tmp_path / "run", progress=False, resume=True)
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT)["step"] == 6
    with pytest.raises(Exception, match="differs in"):  # another matmul is another run
        train(data, "cql", replace(small, matmul="onednn"), steps=8, chunk=2,
              out_dir=tmp_path / "run", progress=False, resume=True)


def test_train_policy_offers_every_matmul_mode():
    # the CLI lists the modes itself (its --help does not import JAX): it must list these
    import argparse

    from rtaug.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for command in ("train-policy", "train-model"):
        matmul = next(a for a in sub.choices[command]._actions if a.dest == "matmul")
        assert tuple(matmul.choices) == onednn.MODES, command


# ---- RT's sequence model (RTConfig.matmul) ---------------------------------------------------
TINY_RT = {"context_steps": 6, "n_layer": 1, "n_head": 2, "d_model": 16, "batch_size": 8, "steps": 6, "rtg_bins": 8}


def test_rt_model_through_onednn_has_xla_parameters_likelihoods_and_gradients(continuous_data):
    from rtaug.data.episodes import reward_to_go
    from rtaug.generate.model import RTConfig, RTModel
    from rtaug.generate.spec import Spec
    from rtaug.generate.train import training_windows

    data = continuous_data
    spec = Spec.fit(data, rtg_bins=8)
    bounds = data.episodes()
    rows = np.random.default_rng(0).integers(0, len(data), 8)
    batch = training_windows(data, reward_to_go(data.rewards, bounds, 0.99), bounds, rows, 6, "backward")
    models = {m: RTModel(spec, RTConfig(**TINY_RT, matmul=m)) for m in ("xla", "onednn")}
    params = {m: model.init(jax.random.key(0), *batch) for m, model in models.items()}
    assert jax.tree_util.tree_structure(params["xla"]) == jax.tree_util.tree_structure(params["onednn"])
    for a, b in zip(jax.tree_util.tree_leaves(params["xla"]), jax.tree_util.tree_leaves(params["onednn"])):
        np.testing.assert_array_equal(a, b)  # a model trained in one mode loads in the other

    # the trunk's four matmuls per layer and the five hidden layers of the heads go through oneDNN
    calls = str(jax.make_jaxpr(lambda p: models["onednn"].apply(p, *batch))(params["xla"])).count("target_name=rtaug_onednn")
    assert calls == 4 * TINY_RT["n_layer"] + 5
    assert "rtaug_onednn" not in str(jax.make_jaxpr(lambda p: models["xla"].apply(p, *batch))(params["xla"]))

    def loss(model):
        return jax.jit(jax.value_and_grad(lambda p: -model.apply(p, *batch).sum()))

    (ref, ref_g), (got, got_g) = loss(models["xla"])(params["xla"]), loss(models["onednn"])(params["xla"])
    np.testing.assert_allclose(got, ref, rtol=1e-4)
    for a, b in zip(jax.tree_util.tree_leaves(ref_g), jax.tree_util.tree_leaves(got_g)):
        # float32 sums in another order: errors relative to the array's scale (gradients reach 1e3)
        np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-5 * float(np.abs(a).max()))


def test_rt_trains_and_generates_through_onednn_as_through_xla(continuous_data):
    # The whole path: training (scan of jitted updates) and generation (prefill, decoding with the
    # key/value cache, candidates, Γ and truncation) in oneDNN's float32 give XLA's results.
    from rtaug.generate.generation import GenerationConfig, generate
    from rtaug.generate.model import RTConfig
    from rtaug.generate.spec import Spec
    from rtaug.generate.train import VAEConfig, train_sequence_model, train_vae

    data = continuous_data
    spec = Spec.fit(data, rtg_bins=8)
    vae = train_vae(data, spec, VAEConfig(steps=5, hidden=(16,), latent_dim=2), progress=False)
    gcfg = GenerationConfig(num_trajectories=6, max_length=4, candidates=3, batch=3, seed=1, dist="vae",
                            alpha_trajectories=6)
    out = {}
    for m in ("xla", "onednn"):
        rt = train_sequence_model(data, RTConfig(**TINY_RT, matmul=m), progress=False, spec=spec)
        out[m] = (rt, generate(data, rt, vae, gcfg, progress=False))
    (rt_x, g_x), (rt_o, g_o) = out["xla"], out["onednn"]
    np.testing.assert_allclose([h["loss"] for h in rt_o.history], [h["loss"] for h in rt_x.history], rtol=1e-3)
    np.testing.assert_array_equal(g_o.kept, g_x.kept)
    for name in ("observations", "actions", "rewards", "reliability"):
        np.testing.assert_allclose(getattr(g_o, name), getattr(g_x, name), rtol=1e-3, atol=1e-3, err_msg=name)
    assert "matmul" not in rt_x.config.to_dict() and rt_o.config.to_dict()["matmul"] == "onednn"
    with pytest.raises(ValueError, match="RTConfig.matmul must be one of"):
        RTConfig(matmul="amx")


def test_batches_decoding_at_once_give_the_same_generation_with_one_onednn_thread_per_call(continuous_data):
    # several batches at once run each oneDNN call on one thread (threads_per_call): the same
    # result as one batch at a time with every thread
    from rtaug.generate.generation import GenerationConfig, generate
    from rtaug.generate.model import RTConfig
    from rtaug.generate.spec import Spec
    from rtaug.generate.train import VAEConfig, train_sequence_model, train_vae

    data = continuous_data
    spec = Spec.fit(data, rtg_bins=8)
    vae = train_vae(data, spec, VAEConfig(steps=5, hidden=(16,), latent_dim=2), progress=False)
    rt = train_sequence_model(data, RTConfig(**TINY_RT, matmul="onednn-bf16"), progress=False, spec=spec)
    gcfg = GenerationConfig(num_trajectories=8, max_length=4, candidates=3, batch=2, seed=1, dist="vae",
                            alpha_trajectories=6)
    one, two = (generate(data, rt, vae, gcfg, progress=False, concurrency=c) for c in (1, 2))
    for name in ("observations", "actions", "rewards", "reliability", "kept", "real_reliability"):
        np.testing.assert_array_equal(getattr(one, name), getattr(two, name), err_msg=name)
    with pytest.raises(ValueError, match="n must be a positive int"), onednn.threads_per_call(0):
        pass


def test_model_stage_key_leaves_the_default_out():
    from rtaug.experiments.config import build
    from rtaug.experiments.run import plan

    def stages(*overrides):
        cfg = build({"generator": {"kind": "rt"}, "learner": {"algo": "bc", "steps": 10}, "seeds": [0]}, overrides)
        return {st.name: st for st in plan(cfg).stages}

    default, bf16 = stages(), stages("generator.model.sequence.matmul=onednn-bf16")
    assert "matmul" not in default["model"].spec["sequence"]  # models keyed before the field keep their key
    assert bf16["model"].spec["sequence"]["matmul"] == "onednn-bf16"
    for name in ("model", "generated", "policy"):  # and everything downstream of the model is another stage
        assert bf16[name].key != default[name].key, name
    assert bf16["data"].key == default["data"].key
    assert stages("generator.model.sequence.matmul=xla")["model"].key == default["model"].key


def test_train_model_matmul_is_refused_before_work_where_it_cannot_build(tmp_path, monkeypatch, capsys):
    from conftest import continuous_walks, refused

    from rtaug.data.hdf5 import save_hdf5

    data = tmp_path / "walks.hdf5"
    save_hdf5(continuous_walks(n=100), data)
    monkeypatch.setattr(onednn, "available", lambda: (False, "no C++ compiler (c++ or $CXX)"))
    refused(["train-model", "--dataset", str(data), "--out", str(tmp_path / "model"), "--matmul", "onednn-bf16"],
            "--matmul onednn-bf16: no C++ compiler (c++ or $CXX)", capsys, keep=[data])
    assert not (tmp_path / "model").exists()


def test_generating_with_a_onednn_model_where_it_cannot_build_is_refused_first(tmp_path, monkeypatch):
    import json

    from rtaug.experiments.stages import check_model_parts
    from rtaug.generate.generation import GenerationConfig
    from rtaug.generate.model import RTConfig

    gen = GenerationConfig(dist="vae", reward="mean")
    (tmp_path / "rt.json").write_text(json.dumps({"config": RTConfig(matmul="onednn-bf16").to_dict()}))
    check_model_parts(tmp_path, gen)  # buildable here
    monkeypatch.setattr(onednn, "available", lambda: (False, "no C++ compiler (c++ or $CXX)"))
    with pytest.raises(ValueError, match=r"rt.json\), which is not usable here: no C\+\+ compiler"):
        check_model_parts(tmp_path, gen)
    (tmp_path / "rt.json").write_text(json.dumps({"config": RTConfig().to_dict()}))
    check_model_parts(tmp_path, gen)  # an XLA model needs nothing
