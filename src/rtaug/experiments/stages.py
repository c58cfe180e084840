"""Pipeline stages over files (DESIGN §1): each reads its inputs from disk and writes its output
to disk, so any stage can run alone and a user can inspect what passes between them."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtaug.data.hdf5 import load_hdf5
from rtaug.fileio import atomic_write_json, replacing_dir
from rtaug.generate.baselines import BackwardMLPConfig, generate_backward_mlp_config, train_backward_mlp
from rtaug.generate.dynamics import CONFIG_FILE as DYNAMICS_FILE, DynamicsConfig, load_dynamics, train_dynamics
from rtaug.generate.generation import (GenerationConfig, format_summary, generate, select_starts, start_kind,
                                      summarize)
from rtaug.generate.io import load_generator, read_config, save_generator
from rtaug.generate.merge import MERGES, write_augmented
from rtaug.generate.model import RTConfig
from rtaug.generate.reward import CONFIG_FILE as REWARD_FILE, RewardConfig, load_reward, save_reward, train_reward
from rtaug.generate.spec import Spec
from rtaug.generate.train import VAEConfig, train_sequence_model, train_vae


def _warn(line: str) -> None:
    print(line, file=sys.stderr)  # a warning is not the stage's output (and sys.stderr as it is now)


def collect(task: str, out_path, steps: int | None = None, seed: int = 0, timeouts: str | None = None,
            progress: bool = True, log=print, **recipe):
    """`rtaug collect`: a task's dataset by its recipe (`Task.collect`: BoxBall, an online DQN's
    experience, 20k steps; maze2d-*, D4RL's noisy waypoint controller; hopper-* etc., a SAC run),
    written as D4RL-layout HDF5. `timeouts` (maze2d) replaces the recipe's episode marking; `recipe`
    holds the task's other settings (locomotion: sac_dir, recipe and SAC fields)."""
    from rtaug.data.hdf5 import save_hdf5
    from rtaug.envs.registry import get_task

    task = get_task(task)  # an unknown task is a clear error before any work
    if timeouts is not None:
        recipe["timeouts"] = timeouts
    data = task.collect(steps=steps, seed=seed, progress=progress, **recipe)
    save_hdf5(data, out_path)
    reached = data.metadata.get("episodes_reaching_goal")
    log(f"wrote {out_path}: {len(data)} transitions, {len(data.episodes())} episodes"
        + (f", {reached} reach the goal" if reached is not None else "") + f" ({task.name}, seed {seed})")
    return data


def audit_file(path, task: str, json_out=None, progress: bool = True, real_rows: int | None = None) -> dict:
    """`rtaug audit`: every transition of a file against the task's true dynamics (with
    `real_rows`: the generated transitions and that many real ones, drawn at random)."""
    from rtaug.envs.registry import get_task

    return get_task(task).audit_file(path, json_out=json_out, progress=progress, real_rows=real_rows)


def describe_file(path, task: str | None = None, json_out=None) -> dict:
    """`rtaug describe`: what a dataset file holds (`rtaug.data.stats.dataset_stats`), and, for a
    task (`task`, else the one the file records), the data's own score: the mean episode return
    normalised by the task's measured references and by D4RL's published ones, with D4RL's
    published size of the same dataset where there is one. Also written to `json_out`."""
    from rtaug.data.stats import dataset_stats
    from rtaug.envs.registry import TASKS, TaskError, get_task

    if task is not None:
        get_task(task)  # an unknown name is refused before the file is read
    data = load_hdf5(path)
    stats = dataset_stats(data)
    out = {"file": str(path), "recorded_task": data.recorded_task, "task": None, "fingerprint": data.fingerprint(),
           **stats, "normalized": None, "normalized_d4rl": None, "d4rl_size": None}
    t = TASKS.get(task or data.recorded_task)
    if t is not None:
        out["task"] = t.name
        size = getattr(t, "d4rl_size", None)
        out["d4rl_size"] = None if size is None else {"episodes": size[0], "steps": size[1]}
    if t is not None and stats["episode_return"] is not None:
        returns = np.array([stats["episode_return"][k] for k in ("mean", "min", "max")])
        for key, normalize in (("normalized", t.normalize), ("normalized_d4rl", t.normalize_d4rl)):
            try:
                out[key] = dict(zip(("mean", "min", "max"), map(float, normalize(returns)), strict=True))
            except TaskError:  # references not measured yet, or none published: the figure is absent
                pass
    if json_out is not None:
        atomic_write_json(json_out, out)
    return out


def format_description(d: dict) -> str:
    """`describe_file`'s figures as the lines `rtaug describe` prints."""
    def spread(x, fmt):
        return " ".join(f"{k} {x[k]:{fmt}}" for k in ("mean", "std", "min", "max") if k in x)

    task = f"task {d['task']}" if d["task"] else "no task (give --task for its scores)"
    lines = [f"{d['file']} ({task}; fingerprint {d['fingerprint'][:12]})",
             f"  rows {d['rows']:,} in {d['episodes']:,} episodes ({d['terminals']:,} terminals, "
             f"{d['timeouts']:,} timeouts; {d['unfinished_rows']:,} rows after the last episode's end)"]
    if d["episode_length"] is not None:
        lines.append(f"  episode length  {spread(d['episode_length'], '.1f')}")
        lines.append(f"  episode return  {spread(d['episode_return'], '.2f')}")
    for key, what in (("normalized", "normalized (this simulator's references)"),
                      ("normalized_d4rl", "D4RL-normalized (D4RL's references)")):
        if d[key] is not None:
            lines.append(f"  {what}: {spread(d[key], '.1f')}")
        elif d["task"] and d["episode_length"] is not None:
            lines.append(f"  {what}: – (no references for {d['task']})")
    if d["d4rl_size"] is not None:
        lines.append(f"  D4RL's file of this dataset: {d['d4rl_size']['episodes']:,} episodes, "
                     f"{d['d4rl_size']['steps']:,} steps")
    if d["generated_rows"] is not None:
        gamma = "" if d["generated_reliability"] is None else f", mean Γ {d['generated_reliability']:.3f}"
        lines.append(f"  generated rows {d['generated_rows']:,} ({100 * d['generated_rows'] / max(d['rows'], 1):.1f}%)"
                     f"{gamma}")
    return "\n".join(lines)


def train_model(
    dataset_path,
    out_dir,
    rt_config: RTConfig,
    vae_config: VAEConfig,
    mlp_config: BackwardMLPConfig | None = None,
    progress: bool = True,
    log=print,
    dynamics_config: DynamicsConfig | None = None,
    reward_config: RewardConfig | None = None,
) -> Path:
    """Train the sequence model, the reliability VAE, the dynamics ensemble (DIST, unless
    `dynamics_config` is None) and the reward model (the reward written on generated steps,
    unless `reward_config` is None), and optionally the MLP baseline, on a dataset file; write
    them to `out_dir` (with `train_seconds.json`: each part's wall time)."""
    data = load_hdf5(dataset_path)
    spec = Spec.fit(data, gamma=rt_config.gamma, rtg_bins=rt_config.rtg_bins)
    log(f"{dataset_path}: {len(data)} transitions, {len(data.episodes())} episodes; "
        f"states {spec.obs_kind} ({spec.obs_dim}), actions {spec.act_kind}, rewards {spec.rew_kind}")
    seconds = {}

    def timed(part: str, fn, *args, **kwargs):
        # a line per part, so a run without progress bars (a sweep's worker) still shows where it is
        t0 = time.perf_counter()
        log(f"training the {part} ...")
        out = fn(*args, **kwargs)
        seconds[part] = time.perf_counter() - t0  # unrounded: the parts add up to at most the whole
        log(f"trained the {part} in {seconds[part]:.0f} s")
        return out

    rt = timed("sequence model", train_sequence_model, data, rt_config, progress=progress, spec=spec)
    vae = timed("reliability VAE", train_vae, data, spec, vae_config, progress=progress)
    dynamics = (timed("dynamics ensemble", train_dynamics, data, spec, dynamics_config, progress=progress)
                if dynamics_config else None)
    mlp = timed("backward MLP", train_backward_mlp, data, spec, mlp_config, progress=progress) if mlp_config else None
    reward = None
    if reward_config is not None:
        reward = timed("reward model", train_reward, data, spec, reward_config, progress=progress)
        log(f"reward model r({'s′' if reward.config.inputs == 'next_state' else 's, a, s′'}): held-out fit "
            + ", ".join(f"{k} {v:.4g}" for k, v in reward.fit.items() if k != "held_out_rows"))
    out = save_generator(out_dir, rt, vae, mlp, dynamics)
    if reward is not None:
        save_reward(out, reward)
    atomic_write_json(out / "train_seconds.json", seconds)
    log(f"wrote {out} (final loss {rt.history[-1]['loss']:.4f}, α = {vae.alpha:.4g})")
    return out


def check_model_parts(model_dir, config: GenerationConfig, generator: str = "sequence") -> None:
    """ValueError naming the flag when the generation asks for a part of the model directory
    that `rtaug train-model` did not train, or the model's matmul cannot run here (the
    directory's files say; nothing is loaded)."""
    d = Path(model_dir)
    if config.reward == "model" and not (d / REWARD_FILE).exists():
        raise ValueError(f"--reward model: {d} has no reward model ({REWARD_FILE}); retrain it with `rtaug "
                         "train-model` (without --reward-steps 0), or pass --reward mean")
    if config.dist != "vae" and not (d / DYNAMICS_FILE).exists():
        raise ValueError(f"--dist {config.dist}: {d} has no dynamics ensemble ({DYNAMICS_FILE}); retrain "
                         "it with `rtaug train-model`, or pass --dist vae")
    matmul = read_config(d / "rt.json", RTConfig, "sequence model")[0].matmul if generator == "sequence" else "xla"
    if matmul != "xla":  # a model generates with the matmul it was trained with (rt.json)
        from rtaug.nets import onednn

        usable, why = onednn.available()
        if not usable:
            raise ValueError(f"--model {d}: its sequence model computes with matmul {matmul} (rt.json), "
                             f"which is not usable here: {why}")
    if generator == "backward-mlp" and not (d / "backward_mlp.json").exists():
        raise ValueError(f"--generator backward-mlp: {d} has no backward MLP (backward_mlp.json); train one with "
                         "`rtaug train-model --backward-mlp`")


@dataclass
class ModelRequest:
    """What `rtaug train-model` makes: a model directory `out` from the dataset file, with the
    parts whose configs are given (None: that part is not trained)."""

    dataset: str
    out: str
    sequence: RTConfig
    vae: VAEConfig
    backward_mlp: BackwardMLPConfig | None = None
    dynamics: DynamicsConfig | None = None
    reward: RewardConfig | None = None
    progress: bool = True


def write_model(req: ModelRequest, log=print) -> Path:
    """`train_model` into `req.out` as a whole: built in a temporary sibling and renamed at the
    end, so a failed or killed run leaves an existing model as it was, and a finished one leaves
    no file of an earlier model beside the new one's."""
    with replacing_dir(req.out) as tmp:
        # the log names the directory the user asked for, not its temporary twin
        train_model(req.dataset, tmp, req.sequence, req.vae, req.backward_mlp, progress=req.progress,
                    log=lambda line: log(line.replace(str(tmp), str(req.out))),
                    dynamics_config=req.dynamics, reward_config=req.reward)
    return Path(req.out)


def augment_file(dataset_path, model_dir, out_path, config: GenerationConfig, progress: bool = True, log=print,
                 generator: str = "sequence", merge: str | None = None, samples_per_start: int = 1,
                 warn=_warn) -> dict:
    """Generate with a trained model from a dataset's states and write D_env ∪ D_model.

    generator: "sequence" = the directory's sequence model (RT or FT, as trained); "backward-mlp"
    = its one-step backward MLP baseline (`train_model` with an MLP config).
    merge: how generated trajectories join the real data (`rtaug.generate.merge`): "suffix" (Eq. 11,
    τ̂ + τ_suffix as one episode) or "prefix" (only τ̂); None = `config.merge` if the config has
    one, else "suffix". The output file is the input file verbatim followed by the merged rows
    (`write_augmented`); returns its path.
    samples_per_start: draw `config.num_trajectories` start states (as the generator would) and
    generate this many trajectories from each (Fig. 2's 50 trajectories sampled 10 times).
    A model trained on data of other spaces is refused; on other data of the same spaces, `warn`
    says so (one line) and generation goes on: its normalisation and α's data are the other's.
    """
    if generator not in ("sequence", "backward-mlp"):
        raise ValueError(f"generator must be 'sequence' or 'backward-mlp', got {generator!r}")
    if merge is None:
        merge = getattr(config, "merge", "suffix")
    if merge not in MERGES:
        raise ValueError(f"merge must be one of {', '.join(repr(m) for m in MERGES)}, got {merge!r}")
    check_model_parts(model_dir, config, generator)
    data = load_hdf5(dataset_path)
    rt, vae, mlp = load_generator(model_dir)
    rt.spec.check_fits(data, model_dir)
    if rt.spec.trained_on(data) is False:
        trained = rt.spec.dataset
        of = f" of {trained['task']}" if trained.get("task") else ""
        warn(f"warning: {model_dir} was trained on other data ({trained.get('source')}: {trained.get('rows')} rows"
             f"{of}), not {dataset_path}: its normalisation and reward bins are those data's")
    dynamics = load_dynamics(model_dir, rt.spec)
    reward_model = load_reward(model_dir, rt.spec)
    config.context_steps(rt.config.context_steps)  # the context must fit the model's window
    start_rows = None
    if samples_per_start > 1:
        direction = "backward" if generator == "backward-mlp" else rt.config.direction
        once = select_starts(data, config.num_trajectories, start_kind(config, direction),
                             np.random.default_rng(config.seed))
        start_rows = np.repeat(once, samples_per_start)
    if generator == "backward-mlp":
        gen = generate_backward_mlp_config(data, mlp, vae, config, start_rows=start_rows, dynamics=dynamics,
                                           reward_model=reward_model)
    else:
        gen = generate(data, rt, vae, config, start_rows=start_rows, progress=progress, dynamics=dynamics,
                       reward_model=reward_model)
    summary = summarize(gen, data)
    gen.config = {**gen.config, "summary": summary}
    log(format_summary(summary))
    if summary["truncated_fraction"] == 0 and config.truncation:
        log(f"warning: truncation never fired (no generated Γ above α = {gen.alpha:.4g}); the kept data is "
            "fixed-length generation at --max-length")
    written = write_augmented(dataset_path, data, gen, out_path, merge=merge)
    log(f"wrote {out_path}: {written.input_rows} input rows + {written.generated_rows} generated "
        f"+ {written.copied_rows} real rows copied into merged episodes (merge={merge}; "
        f"{len(gen.lengths)} trajectories, mean length {gen.lengths.mean():.2f}, "
        f"{int(np.sum(gen.lengths < gen.kept.shape[1]))} truncated by Γ > α = {gen.alpha:.4g})")
    return {**summary, "merge": merge, "input_rows": int(written.input_rows),
            "generated_rows": int(written.generated_rows), "copied_rows": int(written.copied_rows)}


__all__ = ["ModelRequest", "audit_file", "augment_file", "check_model_parts", "collect", "train_model", "write_model"]
