"""Saving and loading a trained generator: a directory of JSON configs and msgpack weights.

No pickle: loading a model file cannot run code. Every file is written to a temporary name
and renamed, so an interrupted save never leaves a half-written model behind.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
from flax import serialization

from rtaug.fileio import atomic_write_bytes, atomic_write_json
from rtaug.generate.baselines import BackwardMLPConfig, TrainedBackwardMLP
from rtaug.generate.model import RTConfig, RTModel
from rtaug.generate.spec import Spec
from rtaug.generate.train import TrainedRT, TrainedVAE, VAEConfig

# 2: the reward head sees its transition, a forward model may predict episode ends, and the
# dynamics ensemble may sit beside the sequence model (format 1 weights do not fit these heads);
# 3: the reward head is a two-layer MLP
FORMAT = 3
# What every model directory holds; the dynamics ensemble, reward model and backward MLP are optional.
REQUIRED = ("spec.json", "rt.json", "rt.msgpack", "vae.json", "vae.msgpack")


def _json(path: Path, obj) -> None:
    atomic_write_json(path, obj)


def save_generator(out_dir, rt: TrainedRT, vae: TrainedVAE, mlp: TrainedBackwardMLP | None = None,
                   dynamics=None) -> Path:
    """Write spec.json, rt.json + rt.msgpack, vae.json + vae.msgpack (and the MLP baseline and the
    dynamics ensemble, dynamics.json + dynamics.msgpack, if given)."""
    from rtaug.generate.dynamics import save_dynamics

    out = Path(out_dir)
    if dynamics is not None:
        save_dynamics(out, dynamics)
    _json(out / "spec.json", {"format": FORMAT, **rt.spec.to_dict()})
    _json(out / "rt.json", {"config": rt.config.to_dict(), "history": rt.history})
    atomic_write_bytes(out / "rt.msgpack", serialization.to_bytes(rt.params))
    _json(out / "vae.json", {"config": vae.config.to_dict(), "alpha": vae.alpha})
    atomic_write_bytes(out / "vae.msgpack", serialization.to_bytes(vae.params))
    if mlp is not None:
        save_backward_mlp(out, mlp)
    return out


def save_backward_mlp(out_dir, mlp: TrainedBackwardMLP) -> Path:
    """Add the one-step backward MLP baseline to a model directory (backward_mlp.json + .msgpack)."""
    out = Path(out_dir)
    _json(out / "backward_mlp.json", {"config": mlp.config.to_dict()})
    atomic_write_bytes(out / "backward_mlp.msgpack", serialization.to_bytes(mlp.params))
    return out


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: missing (is {path.parent} a model directory written by `rtaug train-model`?)") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def read_config(path: Path, cls, what: str, tuple_fields=("hidden",)):
    """(cls(**meta["config"]), meta) of a component's JSON beside its weights, or a ValueError
    naming the file; list fields in `tuple_fields` become tuples, as the dataclasses hold them."""
    try:
        meta = json.loads(Path(path).read_text())
        cfg = dict(meta["config"])
        for name in tuple_fields:
            if name in cfg:
                cfg[name] = tuple(cfg[name])
        return cls(**cfg), meta
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: not a {what} config ({type(e).__name__}: {e})") from None


def read_weights(path: Path, template, what: str = "this model"):
    """msgpack weights into `template`'s tree, or an error naming the file. from_bytes checks the
    tree, not the shapes: weights fitted on another state space would load and fail only when
    first applied, so the shapes are checked here."""
    try:
        params = serialization.from_bytes(template, Path(path).read_bytes())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: missing") from None
    except Exception as e:  # msgpack / structure mismatch
        raise ValueError(f"{path}: cannot be read as weights of {what} ({e})") from None
    shapes = lambda tree: [tuple(x.shape) for x in jax.tree_util.tree_leaves(tree)]  # noqa: E731
    if shapes(params) != shapes(template):
        raise ValueError(f"{path}: weight shapes do not match {what}")
    return params


def check_complete(model_dir) -> None:
    """FileNotFoundError naming the first file a model directory lacks (of `REQUIRED`)."""
    d = Path(model_dir)
    for name in REQUIRED:
        if not (d / name).is_file():
            raise FileNotFoundError(f"{d / name}: missing (a model directory of `rtaug train-model` holds "
                                    f"{', '.join(REQUIRED)})")


def read_spec(model_dir) -> Spec:
    """The model directory's Spec, or a ValueError naming spec.json and what is wrong with it."""
    path = Path(model_dir) / "spec.json"
    spec_d = _read_json(path)
    fmt = spec_d.pop("format", None) if isinstance(spec_d, dict) else None
    if fmt != FORMAT:
        if isinstance(fmt, int) and fmt < FORMAT:
            raise ValueError(f"{path}: a model of format {fmt}, written by an older rtaug whose heads "
                             f"differ (format {FORMAT} now): retrain it with `rtaug train-model`")
        raise ValueError(f"{path}: unknown format {fmt!r} (expected {FORMAT})")
    try:
        return Spec.from_dict(spec_d)
    except (TypeError, ValueError) as e:  # a key missing or added by hand, or a value of the wrong kind
        raise ValueError(f"{path}: not a model spec ({type(e).__name__}: {e})") from None


def load_generator(model_dir):
    """Return (TrainedRT, TrainedVAE, TrainedBackwardMLP | None) from a model directory."""
    d = Path(model_dir)
    check_complete(d)
    spec = read_spec(d)
    rt_cfg, rt_meta = read_config(d / "rt.json", RTConfig, "sequence model")
    model = RTModel(spec, rt_cfg)
    K = rt_cfg.context_steps
    obs = np.zeros((1, K, spec.obs_dim), np.float32)
    act = np.zeros((1, K), np.int64) if spec.act_kind == "discrete" else np.zeros((1, K, spec.act_dim), np.float32)
    z = np.zeros((1, K), np.float32)
    # Only the parameters' structure is needed: eval_shape traces init without running it (an
    # eager init of the transformer costs seconds of op-by-op dispatch).
    template = jax.eval_shape(model.init, jax.random.PRNGKey(0), obs, act, z, z, np.ones((1, K), bool))
    rt = TrainedRT(spec, rt_cfg, read_weights(d / "rt.msgpack", template), rt_meta.get("history", []))

    vae_cfg, vae_meta = read_config(d / "vae.json", VAEConfig, "reliability VAE")
    try:
        alpha = float(vae_meta["alpha"])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{d / 'vae.json'}: key 'alpha': missing or not a number ({type(e).__name__}: {e})") from None
    vae_stub = TrainedVAE(spec, vae_cfg, None, alpha)
    x = np.zeros((1, spec.transition_dim), np.float32)
    key = jax.random.PRNGKey(0)
    vtemplate = jax.eval_shape(vae_stub.model.init, key, x, key)
    vae = TrainedVAE(spec, vae_cfg, read_weights(d / "vae.msgpack", vtemplate), alpha)

    mlp = None
    if (d / "backward_mlp.json").exists():
        mlp_cfg, _ = read_config(d / "backward_mlp.json", BackwardMLPConfig, "backward MLP")
        stub = TrainedBackwardMLP(spec, mlp_cfg, None)
        s = np.zeros((1, spec.obs_dim), np.float32)
        a = np.zeros((1,), np.int64) if spec.act_kind == "discrete" else np.zeros((1, spec.act_dim), np.float32)
        r = np.zeros((1,), np.float32)
        mtemplate = jax.eval_shape(stub.model.init, key, s, a, r, s)
        mlp = TrainedBackwardMLP(spec, mlp_cfg, read_weights(d / "backward_mlp.msgpack", mtemplate))
    return rt, vae, mlp
