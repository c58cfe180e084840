"""RT's own mechanisms against the simulator: does DIST see bad steps, does Γ truncate the right
ones, does the tilt raise returns, are generated rewards right? (docs/reliability.md)

    python benchmarks/reliability.py OUT_DIR --task boxball --seed 0 [--trajectories 2000]
    python benchmarks/reliability.py OUT_DIR --task maze2d-medium-sparse --seed 0 [--trajectories 10000]
        [--rows 2000000] [--rt-steps 2000] [--reuse] [--json OUT]
    python benchmarks/reliability.py --report RUN.json [RUN.json ...]     # Markdown tables over seeds

Collects the task's data (BoxBall: the quickstart's DQN; Maze2D: D4RL's protocol), trains RT
(backward) and FT (forward) with the reliability VAE, the dynamics ensemble and the one-step
backward MLP (BoxBall: the quickstart's sizes; Maze2D: the defaults of `rtaug train-model`),
then rolls out `--trajectories` trajectories of L_max = 10 steps with each, untruncated (RT:
M = 4 candidates per start state, as the whole-trajectory tilt draws them), and replays up to
2,000 real trajectories through the same models (what α is measured on). Every
generated step is audited by the simulator (BoxBall: invalid under the true dynamics; Maze2D:
error of the simulator's successor > 0.05), and, post hoc over the same rollouts:

1. each DIST (vae, forward, disagreement) as a detector of a bad step (ROC AUC), and each form
   of Γ × DIST as a detector of "the trajectory so far has a bad step";
2. truncation at α = a quantile of the real Γ: trajectories truncated, length histogram, mean
   error (or invalid rate) of dropped vs kept steps;
3. the generators at equal volume per step: RT (default truncation), RT untruncated, RT-F3 and
   RT-F5 (the first 3 / 5 steps of the same untruncated rollouts: generation does not look
   ahead, so they are exactly what fixed-length generation with RT's context draws), FT, MLP;
4. the tilt: RT is the candidate kept with weight exp(κ·R̄) after the default truncation, RT
   κ = 0 the first candidate; true return of the generated prefix over a sweep of κ, with its
   reliability and length;
5. rewards (Maze2D): r̂ against the task's reward of the generated next state, and the penalty.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from rtaug.data.episodes import reward_to_go
from rtaug.data.hdf5 import load_hdf5, save_hdf5
from rtaug.generate.baselines import BackwardMLPConfig, generate_backward_mlp, train_backward_mlp
from rtaug.generate.dynamics import DynamicsConfig, load_dynamics, train_dynamics
from rtaug.generate.generation import (DIST_KINDS, RELIABILITY_FORMS, GenerationConfig, dist_function,
                                       mean_reward, resolve_reward, rollout, select_starts, tilt_choice,
                                       transitions)
from rtaug.generate.io import load_generator, save_generator
from rtaug.generate.model import RTConfig
from rtaug.generate.reliability import cumulative_reliability, truncate
from rtaug.generate.reward import RewardConfig, load_reward, save_reward, train_reward
from rtaug.generate.spec import Spec
from rtaug.generate.train import VAEConfig, train_sequence_model, train_vae

QUANTILES = (1.0, 0.99, 0.95)
KAPPAS = (0.0, 1.0, 2.0, 5.0, 10.0, 20.0)


def auc(pos, neg) -> float:
    """P(score of a bad case > score of a good one), ties half (Mann-Whitney U)."""
    pos, neg = np.asarray(pos, np.float64), np.asarray(neg, np.float64)
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    allv = np.concatenate([pos, neg])
    _, inv, counts = np.unique(allv, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inv]
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def candidate_dists(dyn, spec) -> dict:
    """Other readings of the forward ensemble's check, tried here before any becomes a DIST
    kind of the library (continuous states only; the library's `forward` is RMS_d(z − μ̄) in
    units of the data's step-change std):

    - forward-state: the same residual in units of the data's state std, RMS_d((s′ − ŝ′) / σ_s),
      so a dimension that barely changes per step (a position) no longer outweighs the rest;
    - forward-nll: the residual in units of the ensemble's own predicted std, RMS_d((z − μ̄) / σ̄),
      the z-score of its Gaussian likelihood (CABI's check read as a likelihood).
    """
    if dyn is None or spec.obs_kind != "continuous":
        return {}
    import jax
    import jax.numpy as jnp

    dstd = jnp.asarray(spec.delta_std, jnp.float32)
    ostd = jnp.asarray(spec.obs_std, jnp.float32)

    def make(kind):
        @jax.jit
        def f(s, a, n):
            mean, log_std = dyn.predict(s, a)
            resid = spec.obs_to_delta(s, n) - jnp.mean(mean, axis=0)
            if kind == "forward-state":
                x = resid * dstd / ostd
            else:
                x = resid / jnp.mean(jnp.exp(log_std), axis=0)
            return jnp.sqrt(jnp.mean(jnp.square(x), axis=-1))

        def run(s, a, n):
            out = [np.asarray(f(jnp.asarray(s[i:i + 65536], jnp.float32), jnp.asarray(a[i:i + 65536], jnp.float32),
                                jnp.asarray(n[i:i + 65536], jnp.float32))) for i in range(0, len(s), 65536)]
            return np.concatenate(out) if out else np.zeros(0, np.float32)
        return run
    return {k: make(k) for k in ("forward-state", "forward-nll")}


def _flat(x):
    return x.reshape((-1,) + x.shape[2:])


def _select(ro, idx):
    """The rollouts `idx` of a rollout dict (its real replay is shared)."""
    out = {}
    for k, v in ro.items():
        if k == "real":
            out[k] = v
        elif isinstance(v, dict):
            out[k] = {kk: vv[idx] for kk, vv in v.items()}
        else:
            out[k] = v[idx]
    return out


def _default_kept(ro, cfg):
    """Steps kept by the configured truncation (DIST, form, α quantile) and predicted ends."""
    g = cumulative_reliability(ro["mass"], ro["dist"][cfg.dist], cfg.reliability, ro["n_win"])
    re = ro["real"]
    real_g = cumulative_reliability(re["mass"], re["dist"][cfg.dist], cfg.reliability, re["n_win"])[re["valid"]]
    return truncate(g, float(np.quantile(real_g, cfg.alpha_quantile)))[1] & ro["alive"]


def roll_out(data, model, cfg, n_traj, how, copies, seed, rtg, bounds):
    """Untruncated rollouts of `n_traj` start states (`how`), `copies` independent trajectories
    each, as `generate` rolls out the whole-trajectory tilt's candidates; and real trajectories
    next to the same kind of start states replayed (teacher-forced) through the same model, what
    α is measured on."""
    c = replace(cfg, candidates=1, num_trajectories=n_traj)
    first = select_starts(data, n_traj, how, np.random.default_rng(seed))
    starts = np.repeat(first, copies)
    s_new, a_new, r_new, _R, done, anchors, mass, n_win = rollout(data, model, c, first, rtg, bounds, False,
                                                                  copies=copies)
    obs, nxt = transitions(model.config.direction, s_new, anchors)
    real_starts = select_starts(data, cfg.alpha_trajectories, how, np.random.default_rng(seed + 1))
    out = rollout(data, model, c, real_starts, rtg, bounds, True, copies=copies)
    fs, fa, _fr, _fR, _fd, fanc, fmass, fwin, fvalid = (x[::copies] for x in out)
    fobs, fnxt = transitions(model.config.direction, fs, fanc)
    ended_before = np.cumsum(done, axis=1) - done
    return {"obs": obs, "act": a_new, "nxt": nxt, "r": r_new, "mass": mass, "n_win": n_win,
            "alive": ended_before == 0, "starts": starts,
            "real": {"obs": fobs, "act": fa, "nxt": fnxt, "mass": fmass, "n_win": fwin, "valid": fvalid}}


def save_rollouts(path, rolls):
    """Every rollout's arrays in one .npz (keys "generator/name", "generator/real/name",
    "generator/dist/kind"), so that later analyses (another DIST, the rewards' misses) reuse
    the rollouts instead of drawing new ones; `load_rollouts` reads it back."""
    flat = {}

    def put(prefix, d):
        for k, v in d.items():
            if isinstance(v, dict):
                put(f"{prefix}/{k}", v)
            else:
                flat[f"{prefix}/{k}"] = np.asarray(v)
    for name, ro in rolls.items():
        put(name, ro)
    tmp = Path(path).with_suffix(".tmp.npz")
    np.savez(tmp, **flat)
    tmp.replace(path)


def load_rollouts(path) -> dict:
    out: dict = {}
    with np.load(path) as z:
        for key in z.files:
            *parents, leaf = key.split("/")
            d = out
            for p in parents:
                d = d.setdefault(p, {})
            d[leaf] = z[key]
    return out


# ---- the task: data, models, audit, true reward ------------------------------------------
class Task:
    def __init__(self, name: str, seed: int, rows: int, rt_steps: int, small: bool = False):
        self.name, self.seed = name, seed
        self.boxball = name == "boxball"
        if self.boxball:
            from rtaug.experiments.quickstart import QuickstartConfig

            q = QuickstartConfig(seed=seed)
            self.rt = replace(q.rt, seed=seed)
            self.vae, self.mlp = replace(q.vae, seed=seed), replace(q.mlp, seed=seed)
            self.dyn = DynamicsConfig(seed=seed, hidden=(128, 128), steps=3000)
            self.gen = replace(q.generation)
            self.reward = RewardConfig(seed=seed)
        else:
            from rtaug.envs.registry import get_task

            self.task = get_task(name)
            self.rt = RTConfig(steps=rt_steps, seed=seed)
            if small:  # the quickstart's transformer: a quarter of the default's cost per update
                self.rt = RTConfig(steps=rt_steps, seed=seed, context_steps=16, n_layer=2, d_model=64,
                                   batch_size=32, lr=1e-3)
            self.vae, self.mlp = VAEConfig(seed=seed), BackwardMLPConfig(seed=seed)
            self.dyn = DynamicsConfig(seed=seed)
            self.gen = GenerationConfig()
            self.reward = RewardConfig(seed=seed)
        self.rows = rows

    def collect(self):
        if self.boxball:
            from rtaug.collect.dqn import DQNConfig, collect_boxball

            return collect_boxball(DQNConfig(seed=self.seed), progress=False)
        from rtaug.collect.waypoint import collect_maze2d

        return collect_maze2d(self.name, steps=self.rows, seed=self.seed, progress=False)

    def audit(self, obs, act, nxt):
        """(bad (N,), error-or-invalid (N,), wall (N,)) of transitions."""
        if self.boxball:
            from rtaug.envs.audit import audit_boxball_transitions

            a = audit_boxball_transitions(obs, act, nxt)
            bad = ~a["valid"]
            return bad, bad.astype(np.float64), a["wall_crossing"]
        from rtaug.envs.maze_audit import audit_maze_transitions

        a = audit_maze_transitions(self.task, obs, act, nxt)
        return a["error"] > 0.05, a["error"], a["wall_hit"]

    def true_reward(self, nxt):
        if self.boxball:
            from rtaug.envs.boxball import GOAL

            return np.all(np.round(nxt) == np.asarray(GOAL), axis=-1).astype(np.float64)
        from rtaug.envs.maze2d import maze_reward

        flat = nxt.reshape(-1, nxt.shape[-1])
        return np.asarray(maze_reward(flat[:, :2], self.task.layout.eval_goal, self.task.reward_type),
                          np.float64).reshape(nxt.shape[:-1])


def _stage(times, name, t0):
    times[name] = round(time.perf_counter() - t0, 1)
    print(f"  [{name}: {times[name]:.1f} s]", flush=True)
    return time.perf_counter()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir", nargs="?")
    ap.add_argument("--report", nargs="+", metavar="JSON", help="print Markdown tables of these runs' JSON")
    ap.add_argument("--task", default="boxball", help="boxball or a maze2d task (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--trajectories", type=int, default=None, help="default: 2000 (boxball), 10000 (maze)")
    ap.add_argument("--rows", type=int, default=2_000_000, help="maze: environment steps to collect")
    ap.add_argument("--rt-steps", type=int, default=2000, help="maze: updates of RT and FT")
    ap.add_argument("--small", action="store_true",
                    help="maze: the quickstart's transformer size (2 layers, d 64, K 16, batch 32, lr 1e-3)")
    ap.add_argument("--reuse", action="store_true",
                    help="keep OUT_DIR's dataset, models and rollouts if present (audit and analysis are redone)")
    ap.add_argument("--report-dist", metavar="DIST", help="with --report: truncation rows of this DIST only")
    ap.add_argument("--json", metavar="OUT")
    args = ap.parse_args(argv)
    if args.report:
        return report([json.loads(Path(p).read_text()) for p in args.report], args.report_dist)
    if args.out_dir is None:
        ap.error("OUT_DIR is required (or --report)")
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    task = Task(args.task, args.seed, args.rows, args.rt_steps, small=args.small)
    n_traj = args.trajectories or (2000 if task.boxball else 10_000)
    times: dict = {}
    t_start = t0 = time.perf_counter()

    data_path = out / "data.hdf5"
    if not (args.reuse and data_path.exists()):
        save_hdf5(task.collect(), data_path)
        t0 = _stage(times, "collect", t0)
    data = load_hdf5(data_path)
    if not (args.reuse and (out / "models" / "ft" / "rt.msgpack").exists()):
        spec = Spec.fit(data, gamma=task.rt.gamma, rtg_bins=task.rt.rtg_bins)
        rt = train_sequence_model(data, replace(task.rt, direction="backward"), progress=False, spec=spec)
        ft = train_sequence_model(data, replace(task.rt, direction="forward"), progress=False, spec=spec)
        vae = train_vae(data, spec, task.vae, progress=False)
        dyn = train_dynamics(data, spec, task.dyn, progress=False)
        mlp = train_backward_mlp(data, spec, task.mlp, progress=False)
        save_generator(out / "models" / "rt", rt, vae, mlp, dyn)
        save_generator(out / "models" / "ft", ft, vae, None, dyn)
        t0 = _stage(times, "train RT, FT, VAE, dynamics, MLP", t0)
    rt, vae, mlp = load_generator(out / "models" / "rt")
    ft, _, _ = load_generator(out / "models" / "ft")
    dyn = load_dynamics(out / "models" / "rt", rt.spec)
    reward_model = load_reward(out / "models" / "rt", rt.spec)
    if reward_model is None:
        reward_model = train_reward(data, rt.spec, task.reward, progress=False)
        save_reward(out / "models" / "rt", reward_model)
        save_reward(out / "models" / "ft", reward_model)
        t0 = _stage(times, f"train the reward model ({reward_model.config.inputs})", t0)

    cfg = replace(task.gen, num_trajectories=n_traj, max_length=10, seed=args.seed, truncation=False,
                  alpha_trajectories=min(n_traj, 2000))
    L = cfg.max_length
    bounds = data.episodes()
    rtg = reward_to_go(data.rewards, bounds, rt.config.gamma)
    dists = {k: dist_function(k, vae, dyn) for k in DIST_KINDS}
    dists.update(candidate_dists(dyn, rt.spec))

    M = cfg.candidates

    def run(model, how, copies=1):
        return roll_out(data, model, cfg, n_traj, how, copies, args.seed, rtg, bounds)

    # the rollouts are what takes long: kept in OUT_DIR, and with --reuse read back (the audit,
    # DIST and everything after are recomputed, so a new DIST or analysis costs no new rollouts)
    keep = ("obs", "act", "nxt", "r", "mass", "n_win", "alive", "starts", "real")
    roll_path = out / "rollouts.npz"
    if args.reuse and roll_path.exists():
        rolls = {name: {k: v for k, v in ro.items() if k in keep} for name, ro in load_rollouts(roll_path).items()}
        if len(rolls["forward"]["obs"]) != n_traj:
            ap.error(f"{roll_path}: holds {len(rolls['forward']['obs'])} trajectories, not --trajectories {n_traj}")
        t0 = _stage(times, "read rollouts", t0)
    else:
        rolls = {"rt-candidates": run(rt, "goal", copies=M), "forward": run(ft, "uniform")}
        t0 = _stage(times, f"roll out RT ({M} candidates per start state), FT (and replay real trajectories)", t0)
        g_mlp = generate_backward_mlp(data, mlp, vae, rolls["rt-candidates"]["starts"][::M], np.full(n_traj, L),
                                      seed=args.seed)
        rolls["backward-mlp"] = {"obs": g_mlp.observations, "act": g_mlp.actions, "nxt": g_mlp.next_observations,
                                 "r": g_mlp.rewards, "alive": np.ones((n_traj, L), bool)}
        save_rollouts(roll_path, rolls)

    # audit every generated step, and DIST of generated and real steps
    for name, ro in rolls.items():
        shape = ro["obs"].shape[:2]
        bad, err, wall = task.audit(_flat(ro["obs"]), _flat(ro["act"]), _flat(ro["nxt"]))
        ro["bad"], ro["err"], ro["wall"] = bad.reshape(shape), err.reshape(shape), wall.reshape(shape)
        ro["dist"] = {k: f(_flat(ro["obs"]), _flat(ro["act"]), _flat(ro["nxt"])).reshape(shape)
                      for k, f in dists.items()}
        if "real" in ro:
            re = ro["real"]
            re["dist"] = {k: np.where(re["valid"], f(_flat(re["obs"]), _flat(re["act"]), _flat(re["nxt"]))
                                      .reshape(re["valid"].shape), 0.0) for k, f in dists.items()}
    # rewards as `generate` writes them (GenerationConfig.reward): the reward model's where it is
    # used; the sequence model's own head values are kept as r_head
    reward_used = resolve_reward(cfg.reward, reward_model)
    for ro in rolls.values():
        ro["r_head"] = ro["r"]
        if reward_used == "model":
            ro["r"] = reward_model.predict(_flat(ro["obs"]), _flat(ro["act"]), _flat(ro["nxt"])).reshape(ro["r"].shape)
    t0 = _stage(times, "audit + DIST", t0)

    res = {"task": args.task, "seed": args.seed, "small": args.small, "trajectories": n_traj, "max_length": L,
           "rows": len(data), "config": {"rt": asdict(rt.config), "generation": asdict(cfg)}}
    # the tilt (GenerationConfig.tilt="trajectory"): of each start state's M candidates keep one
    # with weight exp(κ·R̄), R̄ from the model's rewards of its steps kept by the default truncation;
    # κ = 0 keeps the first (an ancestral sample, what generate draws at κ = 0)
    cands = rolls.pop("rt-candidates")
    kept_cands = _default_kept(cands, cfg)
    r_bar = mean_reward(cands["r"], kept_cands, rt.spec)
    tilt_rng = np.random.default_rng(args.seed + 2)
    rolls["rt"] = _select(cands, tilt_choice(r_bar, M, cfg.kappa, tilt_rng))
    rolls["rt-kappa0"] = _select(cands, np.arange(n_traj) * M)

    # 1. detectors
    det = {}
    for name in ("rt", "forward", "backward-mlp"):
        ro = rolls[name]
        m = ro["alive"]
        det[name] = {"bad_rate": float(ro["bad"][m].mean()),
                     "auc_dist": {k: auc(v[m & ro["bad"]], v[m & ~ro["bad"]]) for k, v in ro["dist"].items()}}
        if "mass" in ro:
            so_far = np.maximum.accumulate(ro["bad"], axis=1)
            det[name]["auc_gamma"] = {}
            for k in dists:
                for form in RELIABILITY_FORMS:
                    g = cumulative_reliability(ro["mass"], ro["dist"][k], form, ro["n_win"])
                    det[name]["auc_gamma"][f"{k}/{form}"] = auc(g[m & so_far], g[m & ~so_far])
    res["detectors"] = det

    # 2. truncation, every DIST × form × quantile
    def trunc_stats(ro, k, form, q):
        g = cumulative_reliability(ro["mass"], ro["dist"][k], form, ro["n_win"])
        re = ro["real"]
        real_g = cumulative_reliability(re["mass"], re["dist"][k], form, re["n_win"])[re["valid"]]
        alpha = float(np.quantile(real_g, q))
        kept = truncate(g, alpha)[1] & ro["alive"]
        dropped = ~kept & ro["alive"]
        # the step where Γ passed α (what truncation judged), and the steps after it, which
        # generation never draws (RT stops there) but the untruncated rollout has
        trigger = dropped & (np.cumsum(dropped, axis=1) == 1)
        after = dropped & ~trigger
        lengths = kept.sum(1)
        return {"alpha": alpha, "kept_steps": int(kept.sum()), "truncated_fraction": float(np.mean(lengths < ro["alive"].sum(1))),
                "mean_length": float(lengths.mean()), "length_hist": np.bincount(lengths, minlength=L + 1).tolist(),
                "err_kept": float(ro["err"][kept].mean()) if kept.any() else float("nan"),
                "err_dropped": float(ro["err"][dropped].mean()) if dropped.any() else float("nan"),
                "err_trigger": float(ro["err"][trigger].mean()) if trigger.any() else float("nan"),
                "err_after": float(ro["err"][after].mean()) if after.any() else float("nan"),
                "bad_kept": float(ro["bad"][kept].mean()) if kept.any() else float("nan"),
                "wall_kept": float(ro["wall"][kept].mean()) if kept.any() else float("nan"),
                "mean_gamma_kept": float(g[kept].mean()) if kept.any() else float("nan"), "_kept": kept}
    res["truncation"] = {}
    kept_default, kept_by = {}, {}
    for name in ("rt", "forward", "rt-kappa0"):
        res["truncation"][name] = {}
        for k in dists:
            for form in RELIABILITY_FORMS:
                for q in QUANTILES:
                    st = trunc_stats(rolls[name], k, form, q)
                    kept = st.pop("_kept")
                    if (k, form, q) == (cfg.dist, cfg.reliability, cfg.alpha_quantile):
                        kept_default[name] = kept
                    if name == "rt" and k == cfg.dist and q in (1.0, 0.99):
                        kept_by[f"{k}/{form}/q{q:g}"] = kept
                    res["truncation"][name][f"{k}/{form}/q{q:g}"] = st
    t0 = _stage(times, "truncation", t0)

    # 3. generators per step
    def gen_stats(ro, mask):
        n = int(mask.sum())
        return {"steps": n, "bad_rate": float(ro["bad"][mask].mean()), "mean_error": float(ro["err"][mask].mean()),
                "median_error": float(np.median(ro["err"][mask])), "wall_rate": float(ro["wall"][mask].mean()),
                "wall_count": int(ro["wall"][mask].sum())}
    u = np.arange(L)[None, :]
    rt_ro = rolls["rt"]
    res["generators"] = {
        "rt": gen_stats(rt_ro, kept_default["rt"]),
        "rt-no-truncation": gen_stats(rt_ro, rt_ro["alive"]),
        "rt-f3": gen_stats(rt_ro, rt_ro["alive"] & (u < 3)),
        "rt-f5": gen_stats(rt_ro, rt_ro["alive"] & (u < 5)),
        "forward": gen_stats(rolls["forward"], rolls["forward"]["alive"]),
        "forward-truncated": gen_stats(rolls["forward"], kept_default["forward"]),
        "backward-mlp": gen_stats(rolls["backward-mlp"], rolls["backward-mlp"]["alive"]),
    }

    res["rt_by_reliability"] = {key: gen_stats(rt_ro, kept) for key, kept in kept_by.items()}

    # 4. the tilt: true return of the generated prefix, κ = default vs 0
    def returns(ro, mask):
        r_true = task.true_reward(ro["nxt"])
        disc = rt.config.gamma ** np.arange(L)[None, :]
        prefix_return = np.sum(np.where(mask, r_true, 0.0), axis=1)
        return {"true_return_prefix": float(prefix_return.mean()),
                "reach_goal_rate": float(np.mean(np.any(mask & (r_true > 0.5), axis=1))) if task.boxball or
                task.task.reward_type == "sparse" else float("nan"),
                "true_reward_per_step": float(r_true[mask].mean()), "bad_rate": float(ro["bad"][mask].mean()),
                "discounted": float(np.mean(np.sum(np.where(mask, r_true * disc, 0.0), axis=1)))}
    res["tilt"] = {"kappa": cfg.kappa, "candidates": M, "default": returns(rt_ro, rt_ro["alive"]),
                   "kappa0": returns(rolls["rt-kappa0"], rolls["rt-kappa0"]["alive"]),
                   "default_truncated": returns(rt_ro, kept_default["rt"]),
                   "kappa0_truncated": returns(rolls["rt-kappa0"], kept_default["rt-kappa0"]),
                   "sweep": {}}
    for kappa in KAPPAS:  # truncated, as generate keeps them
        pick = tilt_choice(r_bar, M, kappa, tilt_rng)
        sel = _select(cands, pick)
        res["tilt"]["sweep"][f"{kappa:g}"] = {**returns(sel, kept_cands[pick]),
                                             "mean_length": float(kept_cands[pick].sum(1).mean())}

    # 5. rewards of RT's kept rows: the sequence model's head and the reward model against the
    # task's reward of the generated next state; the penalty on what is written
    kept = kept_default["rt"]
    r_true = task.true_reward(rt_ro["nxt"])[kept]
    sparse = task.boxball or task.task.reward_type == "sparse"
    d_goal = None
    if not task.boxball:
        d_goal = np.linalg.norm(rt_ro["nxt"][kept][:, :2] - np.asarray(task.task.layout.eval_goal), axis=1)
    step_of = np.broadcast_to(np.arange(L)[None, :], kept.shape)[kept]

    def reward_stats(r_hat):
        miss = np.abs(r_hat - r_true) >= (0.5 if sparse else 0.01)
        out = {"agreement": float(1 - miss.mean()), "mean_abs_error": float(np.mean(np.abs(r_hat - r_true))),
               "mean_rhat": float(r_hat.mean()), "misses": int(miss.sum()),
               "miss_rate_by_step": [float(miss[step_of == u].mean()) for u in range(L)]}
        if sparse:
            out.update(goal_rows=int(np.sum(r_true > 0.5)), goal_rows_rhat_above_half=int(np.sum((r_true > 0.5) & (r_hat > 0.5))))
        if d_goal is not None and miss.any():
            # where the misses lie: the generated next state's distance from the goal (sparse
            # reward radius 0.5)
            out["miss_goal_distance_quantiles"] = np.quantile(d_goal[miss], [0, 0.05, 0.5, 0.95, 1]).tolist()
        return out

    st = trunc_stats(rt_ro, cfg.dist, cfg.reliability, cfg.alpha_quantile)
    g = cumulative_reliability(rt_ro["mass"], rt_ro["dist"][cfg.dist], cfg.reliability, rt_ro["n_win"])[kept]
    penalty = cfg.beta * rt.spec.reward_range * g / st["alpha"]
    r_written = rt_ro["r"][kept]
    res["rewards"] = {
        "written": reward_used, "mean_true": float(r_true.mean()),
        "goal_distance_quantiles": np.quantile(d_goal[r_true > 0.5], [0.05, 0.5, 0.95]).tolist()
        if d_goal is not None and sparse and (r_true > 0.5).any() else None,
        "head": reward_stats(rt_ro["r_head"][kept]),
        "model": reward_stats(r_written) if reward_used == "model" else None,
        "reward_model": {"inputs": reward_model.config.inputs, "fit": reward_model.fit} if reward_model else None,
        "mean_penalty": float(penalty.mean()), "beta": cfg.beta, "reward_scale": rt.spec.reward_range,
        "mean_real_reward": float(data.rewards.mean()),
        "negative_after_penalty": float(np.mean(r_written - penalty < 0)),
    }
    times["total"] = round(time.perf_counter() - t_start, 1)
    res["seconds"] = times
    _print(res)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return res


def _print(res):
    print(f"\n{res['task']} seed {res['seed']}: {res['trajectories']} trajectories x {res['max_length']} steps, "
          f"{res['rows']} real rows")
    print("\nDetectors (ROC AUC): DIST for a bad step; Γ (DIST/form) for 'a bad step so far'")
    for name, d in res["detectors"].items():
        print(f"  {name:<13} bad {100 * d['bad_rate']:.2f}%  DIST " +
              "  ".join(f"{k} {v:.3f}" for k, v in d["auc_dist"].items()))
        for k, v in d.get("auc_gamma", {}).items():
            print(f"      Γ {k:<26} {v:.3f}")
    print("\nTruncation (RT): α quantile, truncated %, mean length, err kept / dropped")
    for key, st in res["truncation"]["rt"].items():
        ratio = st["err_dropped"] / st["err_kept"] if st["err_kept"] else float("nan")
        print(f"  {key:<32} α {st['alpha']:9.4f}  trunc {100 * st['truncated_fraction']:5.1f}%  "
              f"len {st['mean_length']:5.2f}  kept {st['err_kept']:.4f}  dropped {st['err_dropped']:.4f}  ×{ratio:.2f}")
    print("\nGenerators per step: bad %, mean / median error, wall %")
    for name, g in res["generators"].items():
        print(f"  {name:<18} {g['steps']:>7}  bad {100 * g['bad_rate']:6.2f}%  err {g['mean_error']:.4f} / "
              f"{g['median_error']:.4f}  wall {100 * g['wall_rate']:.3f}% ({g['wall_count']})")
    for key, g in res.get("rt_by_reliability", {}).items():
        print(f"  rt {key:<24} {g['steps']:>7}  bad {100 * g['bad_rate']:6.2f}%  err {g['mean_error']:.4f} / "
              f"{g['median_error']:.4f}  wall {100 * g['wall_rate']:.3f}% ({g['wall_count']})")
    print("\nTilt:", json.dumps(res["tilt"], indent=1))
    print("Rewards:", json.dumps(res["rewards"], indent=1))


def _mean(xs):
    xs = [x for x in xs if x is not None and np.isfinite(x)]
    return float(np.mean(xs)) if xs else float("nan")


def _ratio(a, b):
    """a / b, inf where a > 0 = b (BoxBall's kept steps are often all valid), nan where undefined."""
    if b is None or a is None or not np.isfinite(a) or not np.isfinite(b):
        return float("nan")
    return a / b if b else (float("inf") if a > 0 else float("nan"))


def _cells(runs, get, fmt="{:.3f}"):
    vals = [get(r) for r in runs]
    return " / ".join(fmt.format(v) for v in vals)


def report(runs, dist_filter=None):
    """Markdown tables over the seeds of one task (values per seed, separated by /)."""
    runs = sorted(runs, key=lambda r: r["seed"])
    r0 = runs[0]
    seeds = ", ".join(str(r["seed"]) for r in runs)
    print(f"### {r0['task']}: seeds {seeds}, {r0['trajectories']} trajectories × {r0['max_length']} steps, "
          f"{r0['rows']} real rows (values per seed)\n")
    kinds = list(r0["detectors"]["rt"]["auc_dist"])  # the library's DIST kinds, and any candidates
    print("DIST as a detector of a bad step (ROC AUC):\n")
    print("| generator | bad steps % | " + " | ".join(kinds) + " |\n|---|---|" + "---|" * len(kinds))
    for g in ("rt", "forward", "backward-mlp"):
        print(f"| {g} | {_cells(runs, lambda r: 100 * r['detectors'][g]['bad_rate'], '{:.2f}')} | " + " | ".join(
            _cells(runs, lambda r, k=k: r["detectors"][g]["auc_dist"][k]) for k in kinds) + " |")
    print("\nΓ of RT's steps as a detector of 'the trajectory so far has a bad step' (ROC AUC):\n")
    print("| DIST | " + " | ".join(RELIABILITY_FORMS) + " |\n|---|" + "---|" * len(RELIABILITY_FORMS))
    for k in kinds:
        print(f"| {k} | " + " | ".join(_cells(runs, lambda r, f=f: r["detectors"]["rt"]["auc_gamma"][f"{k}/{f}"])
                                       for f in RELIABILITY_FORMS) + " |")
    print("\nTruncation of RT at α = a quantile of Γ on replayed real trajectories: trajectories truncated %, "
          "mean length, mean error (BoxBall: invalid rate) of kept / dropped steps:\n")
    print("| DIST / form / α quantile | truncated % | mean length | kept | dropped | dropped / kept | "
          "the step that passed α / kept | the steps after it / kept |\n|---|---|---|---|---|---|---|---|")
    for key in r0["truncation"]["rt"]:
        if dist_filter and not key.startswith(dist_filter + "/"):
            continue
        t = lambda r: r["truncation"]["rt"][key]  # noqa: E731
        ratio = lambda r: _ratio(t(r)["err_dropped"], t(r)["err_kept"])  # noqa: E731
        print(f"| {key} | {_cells(runs, lambda r: 100 * t(r)['truncated_fraction'], '{:.1f}')} | "
              f"{_cells(runs, lambda r: t(r)['mean_length'], '{:.2f}')} | {_cells(runs, lambda r: t(r)['err_kept'], '{:.4f}')}"
              f" | {_cells(runs, lambda r: t(r)['err_dropped'], '{:.4f}')} | {_cells(runs, ratio, '{:.2f}')} | "
              f"{_cells(runs, lambda r: _ratio(t(r).get('err_trigger', float('nan')), t(r)['err_kept']), '{:.2f}')} | "
              f"{_cells(runs, lambda r: _ratio(t(r).get('err_after', float('nan')), t(r)['err_kept']), '{:.2f}')} |")
    print("\nGenerators per step (BoxBall: bad = invalid under the true dynamics; Maze2D: simulator error > 0.05):\n")
    print("| generator | steps | bad % | mean error | median error | wall % (count) |\n|---|---|---|---|---|---|")
    rows = list(r0["generators"]) + [f"rt {k}" for k in r0.get("rt_by_reliability", {})
                                     if not dist_filter or k.startswith(dist_filter + "/")]
    for g in rows:
        get = (lambda r, g=g: r["rt_by_reliability"][g[3:]]) if g.startswith("rt ") else (lambda r, g=g: r["generators"][g])
        print(f"| {g} | {_cells(runs, lambda r: get(r)['steps'], '{:d}')} | {_cells(runs, lambda r: 100 * get(r)['bad_rate'], '{:.2f}')}"
              f" | {_cells(runs, lambda r: get(r)['mean_error'], '{:.4f}')} | {_cells(runs, lambda r: get(r)['median_error'], '{:.4f}')}"
              f" | {_cells(runs, lambda r: 100 * get(r)['wall_rate'], '{:.3f}')} ({_cells(runs, lambda r: get(r)['wall_count'], '{:d}')}) |")
    print(f"\nThe return tilt (κ = {r0['tilt']['kappa']:g} vs 0), true rewards of the generated prefix recomputed from "
          "its states:\n")
    print("| rollouts | true return of the prefix | reaches the goal % | bad % |\n|---|---|---|---|")
    for key, label in (("default", f"κ = {r0['tilt']['kappa']:g}, untruncated"), ("kappa0", "κ = 0, untruncated"),
                       ("default_truncated", f"κ = {r0['tilt']['kappa']:g}, truncated"),
                       ("kappa0_truncated", "κ = 0, truncated")):
        t = lambda r: r["tilt"][key]  # noqa: E731
        print(f"| {label} | {_cells(runs, lambda r: t(r)['true_return_prefix'], '{:.3f}')} | "
              f"{_cells(runs, lambda r: 100 * t(r)['reach_goal_rate'], '{:.1f}')} | {_cells(runs, lambda r: 100 * t(r)['bad_rate'], '{:.2f}')} |")
    if "sweep" in r0["tilt"]:
        print(f"\nThe whole-trajectory tilt over κ (1 of {r0['tilt']['candidates']} candidates, truncated as generated):\n")
        print("| κ | true return of the prefix | reaches the goal % | true reward per step | bad % | mean length |\n"
              "|---|---|---|---|---|---|")
        for key in r0["tilt"]["sweep"]:
            t = lambda r: r["tilt"]["sweep"][key]  # noqa: E731
            print(f"| {key} | {_cells(runs, lambda r: t(r)['true_return_prefix'], '{:.3f}')} | "
                  f"{_cells(runs, lambda r: 100 * t(r)['reach_goal_rate'], '{:.1f}')} | "
                  f"{_cells(runs, lambda r: t(r)['true_reward_per_step'], '{:.4f}')} | "
                  f"{_cells(runs, lambda r: 100 * t(r)['bad_rate'], '{:.2f}')} | "
                  f"{_cells(runs, lambda r: t(r)['mean_length'], '{:.2f}')} |")
    print("\nRewards of RT's kept steps against the task's reward of the generated next state: the sequence "
          "model's reward head and the reward model (`generate/reward.py`); the penalty on the written rewards:\n")
    w = lambda r: r["rewards"]  # noqa: E731
    print("| r̂ from | agree % | goal rows (r̂ > 0.5) | mean r̂ / true | misses at the first → last step % |\n"
          "|---|---|---|---|---|")
    for src in ("head", "model"):
        if any(w(r).get(src) is None for r in runs):
            continue
        x = lambda r, src=src: w(r)[src]  # noqa: E731
        goal = _cells(runs, lambda r: f"{x(r).get('goal_rows', '-')} ({x(r).get('goal_rows_rhat_above_half', '-')})", "{}")
        by_step = _cells(runs, lambda r: "{:.1f} → {:.1f}".format(100 * x(r)["miss_rate_by_step"][0],
                                                                  100 * x(r)["miss_rate_by_step"][-1]), "{}")
        print(f"| {src} | {_cells(runs, lambda r: 100 * x(r)['agreement'], '{:.2f}')} | {goal} | "
              f"{_cells(runs, lambda r: x(r)['mean_rhat'], '{:.4f}')} vs {_cells(runs, lambda r: w(r)['mean_true'], '{:.4f}')} | "
              f"{by_step} |")
    print("\n| written | β | mean penalty | negative after the penalty % | mean real reward |\n|---|---|---|---|---|")
    print(f"| {_cells(runs, lambda r: w(r)['written'], '{}')} | {_cells(runs, lambda r: w(r)['beta'], '{:g}')} | "
          f"{_cells(runs, lambda r: w(r)['mean_penalty'], '{:.5f}')} | "
          f"{_cells(runs, lambda r: 100 * w(r)['negative_after_penalty'], '{:.1f}')} | "
          f"{_cells(runs, lambda r: w(r)['mean_real_reward'], '{:.4f}')} |")
    print("\nWall time per seed (s): " + _cells(runs, lambda r: r["seconds"]["total"], "{:.0f}"))


if __name__ == "__main__":
    main()
