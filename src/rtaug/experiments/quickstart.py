"""`rtaug quickstart`: RT end to end on BoxBall, and the paper's Fig. 4.

Collect the DQN dataset, train RT (backward), FT (forward), the one-step backward MLP and the
reliability VAE, generate 50 trajectories with each (and 50 random-policy episodes), audit
every generated transition against BoxBall's true dynamics, print the table and draw Fig. 4.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rtaug.collect.dqn import DQNConfig, collect_boxball
from rtaug.envs.audit import audit_boxball_transitions
from rtaug.envs.boxball import GOAL, BoxBallEnv
from rtaug.data.hdf5 import save_hdf5
from rtaug.fileio import atomic_savefig, atomic_write_json
from rtaug.generate.io import save_generator
from rtaug.generate.baselines import BackwardMLPConfig, generate_backward_mlp, train_backward_mlp
from rtaug.generate.dynamics import DynamicsConfig, train_dynamics
from rtaug.generate.reward import RewardConfig, save_reward, train_reward
from rtaug.generate.generation import GenerationConfig, Generated, generate
from rtaug.generate.model import RTConfig
from rtaug.generate.spec import Spec
from rtaug.generate.train import VAEConfig, train_sequence_model, train_vae
from rtaug.ranges import COUNT, SEED, check_ranges, ranged

GENERATORS = ("random", "forward", "backward-mlp", "rt")


@dataclass
class QuickstartConfig:
    seed: int = ranged(SEED, 0)
    trajectories: int = ranged(COUNT, 50)
    dqn: DQNConfig = field(default_factory=DQNConfig)
    # Sized to train in about a minute per model on 2 cores (docs/decisions.md, "Quickstart sizes").
    rt: RTConfig = field(default_factory=lambda: RTConfig(
        context_steps=16, n_layer=2, n_head=4, d_model=64, batch_size=32, steps=4000, lr=1e-3, gamma=0.99,
        rtg_bins=16,
    ))
    vae: VAEConfig = field(default_factory=lambda: VAEConfig(steps=3000, hidden=(64, 64), latent_dim=4))
    mlp: BackwardMLPConfig = field(default_factory=lambda: BackwardMLPConfig(steps=3000, hidden=(128, 128)))
    dynamics: DynamicsConfig = field(default_factory=lambda: DynamicsConfig(steps=3000, hidden=(128, 128)))
    # BoxBall pays on entering the goal cell: a reward of the next state, quick to fit
    reward: RewardConfig = field(default_factory=lambda: RewardConfig(steps=1000, batch_size=256))
    generation: GenerationConfig = field(default_factory=lambda: GenerationConfig(
        num_trajectories=50, max_length=10, candidates=4, kappa=5.0,
    ))

    def __post_init__(self):
        check_ranges(self)


def _audited(obs, act, nxt) -> dict:
    """Transition counts of one generator, audited against the true dynamics."""
    audit = audit_boxball_transitions(obs, act, nxt)
    n = len(obs)
    return {
        "transitions": int(n),
        "invalid_rate": float(1.0 - audit["valid"].mean()) if n else 0.0,
        "wall_crossings": int(audit["wall_crossing"].sum()),
        "off_grid": int(audit["off_grid"].sum()),
        "_audit": audit,
    }


def _stats_generated(data, gen: Generated) -> dict:
    trajs = gen.trajectories(data)
    kept = [t for t in trajs if len(t["actions"])]
    obs = np.concatenate([t["observations"] for t in kept]) if kept else np.zeros((0, 2))
    act = np.concatenate([t["actions"] for t in kept]) if kept else np.zeros((0,), np.int64)
    nxt = np.concatenate([t["next_observations"] for t in kept]) if kept else np.zeros((0, 2))
    returns, goal = [], []
    for t in trajs:
        ret = float(np.sum(t["rewards"]))
        states = [t["observations"], t["next_observations"]]
        if "suffix" in t:
            ret += float(np.sum(t["suffix"]["rewards"]))
            states += [t["suffix"]["observations"], t["suffix"]["next_observations"]]
        returns.append(ret)
        allstates = np.concatenate([s.reshape(-1, 2) for s in states])
        goal.append(bool(np.any(np.all(np.round(allstates) == np.asarray(GOAL), axis=1))))
    n = len(obs)
    return {
        **_audited(obs, act, nxt),
        "mean_length": float(gen.lengths.mean()),
        "mean_return": float(np.mean(returns)),
        "goal_rate": float(np.mean(goal)),
        "mean_reliability": float(gen.reliability[gen.kept].mean()) if n else 0.0,
        "truncated": int(np.sum(gen.lengths < gen.kept.shape[1])),
        "truncated_rate": float(np.mean(gen.lengths < gen.kept.shape[1])),
        "_trajectories": trajs,
    }


def _random_policy(n: int, seed: int) -> dict:
    env = BoxBallEnv()
    rng = np.random.default_rng(seed)
    trajs = []
    for i in range(n):
        obs, _ = env.reset(seed=seed + i)
        o, a, r, nx = [], [], [], []
        done = False
        while not done:
            act = int(rng.integers(0, 4))
            nobs, rew, term, trunc, _ = env.step(act)
            o.append(obs), a.append(act), r.append(rew), nx.append(nobs)
            obs, done = nobs, term or trunc
        trajs.append({"observations": np.array(o, np.float32), "actions": np.array(a), "rewards": np.array(r, np.float32),
                      "next_observations": np.array(nx, np.float32)})
    cat = lambda key: np.concatenate([t[key] for t in trajs])
    return {
        **_audited(cat("observations"), cat("actions"), cat("next_observations")),
        "mean_length": float(np.mean([len(t["actions"]) for t in trajs])),
        "mean_return": float(np.mean([t["rewards"].sum() for t in trajs])),
        "goal_rate": float(np.mean([t["rewards"].sum() > 0 for t in trajs])),
        "_trajectories": trajs,
    }


def format_table(rows: list[dict]) -> str:
    head = (f"{'generator':<14}{'transitions':>12}{'invalid %':>11}{'wall crossings':>16}{'truncated %':>13}"
            f"{'mean length':>13}{'mean return':>13}{'reach goal %':>14}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['generator']:<14}{r['transitions']:>12d}{100 * r['invalid_rate']:>11.2f}{r['wall_crossings']:>16d}"
            + (f"{100 * r['truncated_rate']:>13.1f}" if "truncated_rate" in r else f"{'-':>13}")
            + f"{r['mean_length']:>13.2f}{r['mean_return']:>13.3f}{100 * r['goal_rate']:>14.1f}"
        )
    return "\n".join(lines)


def plot_fig4(results: dict, path: Path) -> None:
    """The four panels of Fig. 4: random policy, forward model, backward model, RT."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rtaug.envs.boxball import render_grid

    titles = {"random": "(a) random policy", "forward": "(b) forward model (FT)",
              "backward-mlp": "(c) one-step backward model", "rt": "(d) RT"}
    fig, axes = plt.subplots(1, 4, figsize=(18, 4.9))
    rng = np.random.default_rng(0)
    for ax, name in zip(axes, GENERATORS):
        render_grid(ax)
        res = results[name]
        valid = res["_audit"]["valid"]
        k = 0
        for t in res["_trajectories"]:
            n = len(t["actions"])
            jitter = rng.uniform(-0.18, 0.18, 2)
            if "suffix" in t and len(t["suffix"]["actions"]):
                sx = np.concatenate([t["suffix"]["observations"], t["suffix"]["next_observations"][-1:]]) + jitter
                ax.plot(sx[:, 0], sx[:, 1], color="0.55", lw=0.8, ls=":", alpha=0.7)
            for i in range(n):
                a, b = t["observations"][i] + jitter, t["next_observations"][i] + jitter
                ok = bool(valid[k + i])
                ax.plot([a[0], b[0]], [a[1], b[1]], color="tab:blue" if ok else "tab:red",
                        lw=1.0 if ok else 1.8, alpha=0.55 if ok else 0.9)
            k += n
        ax.set_title(f"{titles[name]}\ninvalid {100 * res['invalid_rate']:.1f}%, wall crossings {res['wall_crossings']}",
                     fontsize=10)
    fig.suptitle("BoxBall: 50 trajectories per generator (blue: valid step, red: invalid under the true dynamics; "
                 "dotted: real suffix)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)


def run_quickstart(config: QuickstartConfig | None = None, out: str | Path | None = None, progress: bool = True,
                   log=print) -> list[dict]:
    cfg = config or QuickstartConfig()
    timings = {}
    t0 = time.perf_counter()

    def stage(name):
        timings[name] = time.perf_counter() - stage.t
        stage.t = time.perf_counter()
    stage.t = t0

    out_dir = Path(out) if out is not None else Path("runs/quickstart")
    log("[1/5] collecting the BoxBall dataset with an online DQN")
    data = collect_boxball(cfg.dqn, progress=progress)
    save_hdf5(data, out_dir / "boxball.hdf5")
    log(f"      {len(data)} transitions, {data.metadata.get('episodes')} episodes, "
        f"{data.metadata.get('episodes_reaching_goal')} reach the goal")
    stage("collect")

    log("[2/5] training RT (backward), FT (forward), the one-step backward MLP, the reliability VAE, the "
        "dynamics ensemble and the reward model")
    spec = Spec.fit(data, gamma=cfg.rt.gamma, rtg_bins=cfg.rt.rtg_bins)
    rt = train_sequence_model(data, RTConfig(**{**asdict(cfg.rt), "direction": "backward", "seed": cfg.seed}),
                              progress=progress, spec=spec)
    ft = train_sequence_model(data, RTConfig(**{**asdict(cfg.rt), "direction": "forward", "seed": cfg.seed}),
                              progress=progress, spec=spec)
    mlp = train_backward_mlp(data, spec, cfg.mlp, progress=progress)
    vae = train_vae(data, spec, cfg.vae, progress=progress)
    dynamics = train_dynamics(data, spec, DynamicsConfig(**{**asdict(cfg.dynamics), "seed": cfg.seed}),
                              progress=progress)
    reward = train_reward(data, spec, RewardConfig(**{**asdict(cfg.reward), "seed": cfg.seed}), progress=progress)
    # kept so that every later look at these models (`rtaug augment`) uses exactly the ones behind the table
    save_generator(out_dir / "models" / "rt", rt, vae, mlp, dynamics)
    save_generator(out_dir / "models" / "ft", ft, vae, None, dynamics)
    save_reward(out_dir / "models" / "rt", reward)
    save_reward(out_dir / "models" / "ft", reward)
    stage("train")

    log(f"[3/5] generating {cfg.trajectories} trajectories per generator")
    gcfg = GenerationConfig(**{**asdict(cfg.generation), "num_trajectories": cfg.trajectories, "seed": cfg.seed})
    gen_rt = generate(data, rt, vae, gcfg, progress=progress, dynamics=dynamics, reward_model=reward)
    gen_ft = generate(data, ft, vae, gcfg, progress=progress, dynamics=dynamics, reward_model=reward)
    log(f"      α (Γ of real trajectories, {gcfg.reliability} form of {gcfg.dist} DIST): RT {gen_rt.alpha:.4g}, "
        f"FT {gen_ft.alpha:.4g}")
    gen_mlp = generate_backward_mlp(data, mlp, vae, gen_rt.start_rows, gen_rt.lengths, seed=cfg.seed, beta=gcfg.beta)
    stage("generate")

    log("[4/5] auditing every generated transition against the true dynamics")
    results = {
        "random": _random_policy(cfg.trajectories, cfg.seed),
        "forward": _stats_generated(data, gen_ft),
        "backward-mlp": _stats_generated(data, gen_mlp),
        "rt": _stats_generated(data, gen_rt),
    }
    stage("audit")
    rows = [{"generator": g, **{k: v for k, v in results[g].items() if not k.startswith("_")}} for g in GENERATORS]
    log("\n" + format_table(rows) + "\n")

    log("[5/5] drawing Fig. 4")
    plot_fig4(results, out_dir / "fig4.png")
    stage("plot")
    timings["total"] = time.perf_counter() - t0
    record = {"rows": rows, "timings_s": timings, "alpha": {"rt": gen_rt.alpha, "forward": gen_ft.alpha},
              "dataset_transitions": len(data), "generation": gcfg.to_dict()}
    atomic_write_json(out_dir / "table.json", rows)
    atomic_write_json(out_dir / "run.json", record)
    log(f"wrote {out_dir / 'table.json'} and {out_dir / 'fig4.png'} in {timings['total']:.0f} s "
        f"(collect {timings['collect']:.0f} s, train {timings['train']:.0f} s, generate {timings['generate']:.0f} s)")
    return rows
