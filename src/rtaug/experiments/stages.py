"""Pipeline stages over files (DESIGN §1): each reads its inputs from disk and writes its output
to disk, so any stage can run alone and a user can inspect what passes between them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rtaug.data import Dataset
from rtaug.data.hdf5 import load_hdf5, save_hdf5
from rtaug.generate.baselines import BackwardMLPConfig, generate_backward_mlp_config, train_backward_mlp
from rtaug.generate.generation import GenerationConfig, augment, generate
from rtaug.generate.io import load_generator, save_generator
from rtaug.generate.model import RTConfig
from rtaug.generate.spec import Spec
from rtaug.generate.train import VAEConfig, train_sequence_model, train_vae


def train_model(
    dataset_path,
    out_dir,
    rt_config: RTConfig,
    vae_config: VAEConfig,
    mlp_config: BackwardMLPConfig | None = None,
    progress: bool = True,
    log=print,
) -> Path:
    """Train the sequence model and the reliability VAE (and optionally the MLP baseline) on a
    dataset file; write them to `out_dir`."""
    data = load_hdf5(dataset_path)
    spec = Spec.fit(data, gamma=rt_config.gamma, rtg_bins=rt_config.rtg_bins)
    log(f"{dataset_path}: {len(data)} transitions, {len(data.episodes())} episodes; "
        f"states {spec.obs_kind} ({spec.obs_dim}), actions {spec.act_kind}, rewards {spec.rew_kind}")
    rt = train_sequence_model(data, rt_config, progress=progress, spec=spec)
    vae = train_vae(data, spec, vae_config, progress=progress)
    mlp = train_backward_mlp(data, spec, mlp_config, progress=progress) if mlp_config else None
    out = save_generator(out_dir, rt, vae, mlp)
    log(f"wrote {out} (final loss {rt.history[-1]['loss']:.4f}, α = {vae.alpha:.4g})")
    return out


def augment_file(dataset_path, model_dir, out_path, config: GenerationConfig, progress: bool = True, log=print,
                 generator: str = "sequence") -> Dataset:
    """Generate with a trained model from a dataset's states and write D_env ∪ D_model.

    generator: "sequence" = the directory's sequence model (RT or FT, as trained); "backward-mlp"
    = its one-step backward MLP baseline (`train_model` with an MLP config).
    """
    if generator not in ("sequence", "backward-mlp"):
        raise ValueError(f"generator must be 'sequence' or 'backward-mlp', got {generator!r}")
    data = load_hdf5(dataset_path)
    rt, vae, mlp = load_generator(model_dir)
    _check_compatible(data, rt.spec, dataset_path, model_dir)
    if generator == "backward-mlp":
        if mlp is None:
            raise ValueError(f"{model_dir}: no backward MLP in this model directory (train one with "
                             "`rtaug train-model --backward-mlp`)")
        gen = generate_backward_mlp_config(data, mlp, vae, config)
    else:
        gen = generate(data, rt, vae, config, progress=progress)
    out = augment(data, gen)
    save_hdf5(out, out_path)
    n_gen = int(gen.lengths.sum())
    log(f"wrote {out_path}: {len(data)} real + {n_gen} generated transitions "
        f"({len(gen.lengths)} trajectories, mean length {gen.lengths.mean():.2f}, "
        f"{int(np.sum(gen.lengths < gen.kept.shape[1]))} truncated by Γ > α = {vae.alpha:.4g})")
    return out


def _check_compatible(data: Dataset, spec: Spec, dataset_path, model_dir) -> None:
    if data.obs_dim != spec.obs_dim:
        raise ValueError(
            f"{dataset_path}: key 'observations': dimension {data.obs_dim} does not match the model in "
            f"{model_dir} (trained on {spec.obs_dim})"
        )
    if data.discrete_actions != (spec.act_kind == "discrete"):
        raise ValueError(
            f"{dataset_path}: key 'actions': {'discrete' if data.discrete_actions else 'continuous'} actions, "
            f"but the model in {model_dir} was trained on {spec.act_kind} actions"
        )
    if not data.discrete_actions and data.act_dim != spec.act_dim:
        raise ValueError(
            f"{dataset_path}: key 'actions': dimension {data.act_dim} does not match the model in "
            f"{model_dir} (trained on {spec.act_dim})"
        )


__all__ = ["train_model", "augment_file"]
