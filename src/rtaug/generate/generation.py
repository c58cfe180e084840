"""Generation of new trajectories from dataset states (Alg. 1 lines 12-20, Eq. 11, §3.2).

A generated *step* is four tokens. Backward (RT): (s, a, r, R) of the step before the known
state, creating the transition (ŝ, â, r̂) → the state already in the trajectory. Forward (FT):
(a, r, R) of the known state and then the next state ŝ', creating (s, â, r̂) → ŝ'. Both are
one loop over the same model; they differ only in which modality a step starts with.

Everything is batched: H trajectories × M candidates decode together, one token at a time,
with keys and values of earlier tokens kept in a cache (never the whole window recomputed).
After each step one candidate per trajectory is kept, chosen by P(R)·exp(κ·R̄) (return-tilted
sampling, DESIGN §5), and its cache is copied to the trajectory's other candidate slots.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np
import jax
import jax.numpy as jnp
from tqdm.auto import tqdm

from rtaug.data import Dataset
from rtaug.data.episodes import reward_to_go
from rtaug.generate.model import A, G, R_, S, RTModel, sample
from rtaug.generate.reliability import cumulative_reliability, pessimistic_reward, truncate
from rtaug.generate.train import TrainedRT, TrainedVAE
from rtaug.nets.transformer import empty_cache

STEP_ORDER = {"backward": (S, A, R_, G), "forward": (A, R_, G, S)}


@dataclass
class GenerationConfig:
    num_trajectories: int = 50  # H
    max_length: int = 10  # L_max: bound on every generated trajectory
    candidates: int = 4  # M candidate steps drawn per step (M = 1: plain ancestral sampling)
    kappa: float = 5.0  # κ of the return tilt exp(κ·R̄) (κ = 0: no tilt)
    beta: float = 1.0  # β of the α-pessimistic reward r − β·Γ/α (Eq. 6)
    start: str = "auto"  # "goal" (state of maximal reward), "uniform", or "auto" (goal backward, uniform forward)
    truncation: bool = True  # U_t (Eq. 4); off for the fixed-length ablations RT-F3 / RT-F5
    fixed_length: int | None = None  # generate exactly this many steps, no truncation (RT-F3: 3)
    batch: int = 256  # trajectories per jitted call
    seed: int = 0

    def __post_init__(self):
        if self.start not in ("auto", "goal", "uniform"):
            raise ValueError(f"GenerationConfig.start must be 'auto', 'goal' or 'uniform', got {self.start!r}")
        if self.fixed_length is not None:
            self.max_length = int(self.fixed_length)
            self.truncation = False
        if self.max_length < 1 or self.candidates < 1 or self.num_trajectories < 1:
            raise ValueError("GenerationConfig: max_length, candidates and num_trajectories must be >= 1")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Generated:
    """Generated steps of H trajectories, in generation order (index 0 = next to the start state)."""

    direction: str
    observations: np.ndarray  # (H, L, obs): s of each generated transition
    actions: np.ndarray  # (H, L) or (H, L, act)
    rewards: np.ndarray  # (H, L): the model's r̂, before the penalty
    next_observations: np.ndarray  # (H, L, obs)
    dist: np.ndarray  # (H, L): VAE error of each transition
    reliability: np.ndarray  # (H, L): Γ
    kept: np.ndarray  # (H, L) bool: not truncated
    start_rows: np.ndarray  # (H,): the dataset row each trajectory starts from
    alpha: float
    beta: float
    config: dict = field(default_factory=dict)

    @property
    def lengths(self) -> np.ndarray:
        return self.kept.sum(axis=1)

    def _time_order(self, h: int) -> np.ndarray:
        n = int(self.lengths[h])
        idx = np.arange(n)
        return idx[::-1] if self.direction == "backward" else idx

    def trajectories(self, data: Dataset | None = None) -> list[dict]:
        """Kept steps of each trajectory in time order; with `data`, a backward trajectory is
        followed by the real suffix from its start state (τ' = τ̂ + τ_suffix, Eq. 11)."""
        bounds = data.episodes() if data is not None else None
        out = []
        for h in range(len(self.start_rows)):
            t = self._time_order(h)
            traj = {
                "observations": self.observations[h, t],
                "actions": self.actions[h, t],
                "rewards": self.rewards[h, t],
                "next_observations": self.next_observations[h, t],
                "reliability": self.reliability[h, t],
            }
            if data is not None and self.direction == "backward":
                row = int(self.start_rows[h])
                end = bounds[np.searchsorted(bounds[:, 1], row, side="right"), 1]
                traj["suffix"] = {
                    "observations": data.observations[row:end],
                    "actions": data.actions[row:end],
                    "rewards": data.rewards[row:end],
                    "next_observations": data.next_observations[row:end],
                }
            out.append(traj)
        return out

    def to_dataset(self, metadata: dict | None = None) -> Dataset:
        """D_model: every kept transition, each trajectory a segment in time order ending in a
        timeout, rewards α-pessimistic (Eq. 6), flagged `generated` with its Γ as `reliability`."""
        rows = [(h, t) for h in range(len(self.start_rows)) for t in self._time_order(h)]
        if not rows:
            raise ValueError("no generated transition survived truncation: nothing to write")
        hh, tt = np.array(rows).T
        timeouts = np.zeros(len(rows), bool)
        timeouts[np.cumsum(self.lengths[self.lengths > 0]) - 1] = True
        rewards = pessimistic_reward(self.rewards[hh, tt], self.reliability[hh, tt], self.alpha, self.beta)
        return Dataset(
            observations=self.observations[hh, tt].astype(np.float32),
            actions=self.actions[hh, tt],
            rewards=rewards.astype(np.float32),
            terminals=np.zeros(len(rows), bool),
            timeouts=timeouts,
            next_observations=self.next_observations[hh, tt].astype(np.float32),
            generated=np.ones(len(rows), bool),
            reliability=self.reliability[hh, tt].astype(np.float32),
            metadata=dict(metadata or {}),
        )


# ---- start states (§3.2, footnote 1) -----------------------------------------------
def select_starts(data: Dataset, n: int, how: str, rng: np.random.Generator) -> np.ndarray:
    """Rows to start from. "goal": a uniformly drawn episode's state of maximal reward (ties:
    the latest, so an episode without reward starts from its end); "uniform": any row."""
    if how == "uniform":
        return rng.integers(0, len(data), n)
    bounds = data.episodes()
    eps = bounds[rng.integers(0, len(bounds), n)]
    starts = np.empty(n, np.int64)
    for i, (a, b) in enumerate(eps):
        r = data.rewards[a:b]
        starts[i] = a + (len(r) - 1 - int(np.argmax(r[::-1])))
    return starts


def _context(data: Dataset, rtg, bounds, start_rows, C: int, direction: str):
    """The real context next to each start state, as C left-padded step slots.

    Backward: the suffix from the start state on, read in reverse, so its last slot is the
    start step. Forward: the prefix up to the start state, whose last slot only has s.
    """
    ep = np.searchsorted(bounds[:, 1], start_rows, side="right")
    if direction == "backward":
        n_valid = np.minimum(C, bounds[ep, 1] - start_rows)
    else:
        n_valid = np.minimum(C, start_rows - bounds[ep, 0] + 1)
    k = np.arange(C)[None, :]
    slot_valid = k >= (C - n_valid[:, None])
    src = np.clip(k - (C - n_valid[:, None]), 0, None)  # position in reading order
    back = n_valid[:, None] - 1 - src  # how many rows away from the start state
    read = start_rows[:, None] + back if direction == "backward" else start_rows[:, None] - back
    read = np.where(slot_valid, read, start_rows[:, None])
    step = np.where(slot_valid, src, 0)
    return {
        "s": data.observations[read],
        "a": data.actions[read],
        "r": data.rewards[read],
        "R": rtg[read],
        "step": step.astype(np.int32),
        "valid": slot_valid,
        "n_valid": n_valid,
    }


def _build_generator(trained: TrainedRT, gcfg: GenerationConfig, H: int):
    """A jitted function (context, key) -> per-step values and attention, for H trajectories."""
    model: RTModel = trained.model
    spec, params = trained.spec, trained.params
    direction = trained.config.direction
    order = STEP_ORDER[direction]
    K = trained.config.context_steps
    L, M = gcfg.max_length, gcfg.candidates
    C = K - L
    P = 4 * C if direction == "backward" else 4 * (C - 1) + 1  # context tokens, the last one pending
    T = P + 4 * L
    BM = H * M
    cfg = trained.config
    kappa = gcfg.kappa
    rtg_span = spec.rtg_hi - spec.rtg_lo

    def rep(x):
        return jnp.repeat(x, M, axis=0)

    def run(ctx, key):
        s, a, r, R = rep(ctx["s"]), rep(ctx["a"]), rep(ctx["r"]), rep(ctx["R"])
        step_ctx, valid = rep(ctx["step"]), rep(ctx["valid"])
        offset = C - rep(ctx["n_valid"])  # left padding, in step slots
        token_valid = jnp.repeat(valid, 4, axis=1)[:, :P]
        key_valid = jnp.concatenate([token_valid, jnp.ones((BM, T - P), bool)], axis=1)
        cache = empty_cache(cfg.n_layer, BM, T, cfg.n_head, cfg.d_model)
        if P > 1:
            cache = model.apply(params, s, a, r, R, step_ctx, key_valid, cache, P - 1, method=RTModel.prefill)
        pending = R[:, -1] if direction == "backward" else s[:, -1]
        anchor = s[:, -1]
        # the state one step back in reading order: what the action head of a forward step
        # is conditioned on (a window's first step is its own neighbour, as in training)
        has_prev = rep(ctx["n_valid"]) >= 2
        prev_anchor = jnp.where(has_prev[:, None], s[:, -2] if C >= 2 else s[:, -1], s[:, -1])

        def step_of(pos):
            return jnp.maximum(pos // 4 - offset, 0).astype(jnp.int32)

        def one_step(carry, u):
            cache, pending, anchor, prev_anchor, key = carry
            pos0 = P - 1 + 4 * u
            feed_mod, feed_val = order[-1], pending
            values, attn0 = {}, None
            for j, mod in enumerate(order):
                head_anchor = prev_anchor if (mod == A and direction == "forward") else anchor
                # a forward step's state is reached by the action just drawn at the anchor
                a_prev = values[A][0] if (mod == S and direction == "forward") else None
                out, attn, cache = model.apply(
                    params, feed_mod, feed_val, step_of(pos0 + j), key_valid, pos0 + j, cache, mod, head_anchor,
                    a_prev, method=RTModel.decode,
                )
                if j == 0:
                    attn0 = attn.mean(axis=1)
                key, sub = jax.random.split(key)
                values[mod] = sample(spec, mod, out, sub, anchor)
                feed_mod, feed_val = mod, values[mod][0]
            # return-tilted choice among the M candidates: P(R)·exp(κ·R̄)
            R_val, R_logp = values[G]
            r_bar = (R_val - spec.rtg_lo) / rtg_span
            logits = (R_logp + kappa * r_bar).reshape(H, M)
            key, sub = jax.random.split(key)
            choice = jax.random.categorical(sub, logits)
            pick = jnp.arange(H) * M + choice  # (H,)
            keep = jnp.repeat(pick, M)  # every candidate slot continues from the chosen one
            cache = jax.tree_util.tree_map(lambda c: c[:, keep], cache)
            chosen = {m: values[m][0][pick] for m in order}
            record = (chosen[S], chosen[A], chosen[R_], chosen[G], anchor[pick], attn0[pick])
            new_anchor = jnp.repeat(chosen[S], M, axis=0)
            new_prev = jnp.repeat(anchor[pick], M, axis=0)
            new_pending = jnp.repeat(chosen[order[-1]], M, axis=0)
            return (cache, new_pending, new_anchor, new_prev, key), record

        carry = (cache, pending, anchor, prev_anchor, key)
        (cache, pending, anchor, _, key), rec = jax.lax.scan(one_step, carry, jnp.arange(L))
        pos = P - 1 + 4 * L
        _, attn_last, _ = model.apply(
            params, order[-1], pending, step_of(pos), key_valid, pos, cache, order[0], anchor, method=RTModel.decode
        )
        s_new, a_new, r_new, R_new, anchors, attn_first = rec
        # attention rows: the query at step u's final token is fed at the start of step u+1
        attn_rows = jnp.concatenate([attn_first[1:], attn_last.mean(axis=1)[None, ::M]], axis=0)  # (L, H, T)
        mass = attn_rows[:, :, P:].reshape(L, H, L, 4).sum(-1)  # [u, h, i]: on step i's tokens
        sw = lambda x: jnp.swapaxes(x, 0, 1)
        return sw(s_new), sw(a_new), sw(r_new), sw(R_new), sw(anchors), jnp.transpose(mass, (1, 0, 2))

    return jax.jit(run)


def generate(
    data: Dataset,
    trained: TrainedRT,
    vae: TrainedVAE,
    config: GenerationConfig,
    start_rows: np.ndarray | None = None,
    progress: bool = True,
) -> Generated:
    """Generate `config.num_trajectories` trajectories from dataset states with RT (or FT)."""
    direction = trained.config.direction
    K = trained.config.context_steps
    if config.max_length >= K:
        raise ValueError(
            f"max_length ({config.max_length}) must be smaller than the model's window "
            f"context_steps ({K}): the real context needs at least one step"
        )
    rng = np.random.default_rng(config.seed)
    how = config.start if config.start != "auto" else ("goal" if direction == "backward" else "uniform")
    if start_rows is None:
        start_rows = select_starts(data, config.num_trajectories, how, rng)
    start_rows = np.asarray(start_rows, np.int64)
    n = len(start_rows)
    bounds = data.episodes()
    rtg = reward_to_go(data.rewards, bounds, trained.config.gamma)
    C = K - config.max_length
    H = min(config.batch, n)
    run = _build_generator(trained, config, H)
    key = jax.random.PRNGKey(config.seed)
    parts = []
    bar = tqdm(total=n, desc=f"generate ({direction})", disable=not progress, unit="traj")
    for i in range(0, n, H):
        rows = start_rows[i:i + H]
        pad = H - len(rows)
        rows_p = np.concatenate([rows, np.repeat(rows[-1:], pad)])
        ctx = _context(data, rtg, bounds, rows_p, C, direction)
        ctx = {k: jnp.asarray(v) for k, v in ctx.items()}
        key, sub = jax.random.split(key)
        out = [np.asarray(x)[: len(rows)] for x in run(ctx, sub)]
        parts.append(out)
        bar.update(len(rows))
    bar.close()
    s_new, a_new, r_new, _R, anchors, mass = (np.concatenate(p) for p in zip(*parts))
    if direction == "backward":
        obs, nxt = s_new, anchors
    else:
        obs, nxt = anchors, s_new
    flat = lambda x: x.reshape((-1,) + x.shape[2:])
    dist = np.asarray(vae.dist(jnp.asarray(flat(obs)), jnp.asarray(flat(a_new)), jnp.asarray(flat(nxt)))).reshape(obs.shape[:2])
    gamma = cumulative_reliability(mass, dist)
    if config.truncation:
        _, kept = truncate(gamma, vae.alpha)
    else:
        kept = np.ones_like(gamma, bool)
    return Generated(
        direction=direction,
        observations=obs,
        actions=a_new,
        rewards=r_new,
        next_observations=nxt,
        dist=dist,
        reliability=gamma,
        kept=kept,
        start_rows=start_rows,
        alpha=vae.alpha,
        beta=config.beta,
        config={"generator": "rt" if direction == "backward" else "ft", **config.to_dict(), "rt": trained.config.to_dict()},
    )


def _simulator_state_infos(data: Dataset, model_data: Dataset) -> dict[str, np.ndarray]:
    """`infos/qpos`, `infos/qvel` for generated rows, when the data's observation is the simulator state.

    D4RL-layout files keep the simulator state beside the observation (float64 in ours), and
    the simulator audit restores real rows from it: without these keys on the generated rows
    the concatenation would drop them for the real rows too, and the audit of those would fall
    back to the float32 observations (errors up to 1e-5 instead of 1e-7). A generated row's
    state is its observation. Other infos (goals, other reward types) have no generated value
    and are left out, as before.
    """
    qpos, qvel = data.infos.get("qpos"), data.infos.get("qvel")
    if qpos is None or qvel is None:
        return {}
    qpos, qvel = qpos.reshape(len(data), -1), qvel.reshape(len(data), -1)
    nq = qpos.shape[1]
    if nq + qvel.shape[1] != data.obs_dim:
        return {}
    state = np.concatenate([qpos, qvel], axis=1)
    # D4RL's own maze files repeat an observation after each goal switch while the simulator
    # moved on, so a few disagreeing rows do not mean the observation is something else.
    if np.mean(np.abs(state - data.observations).max(axis=1) < 1e-4) < 0.99:
        return {}
    obs = model_data.observations
    return {"qpos": obs[:, :nq].astype(qpos.dtype), "qvel": obs[:, nq:].astype(qvel.dtype)}


def augment(data: Dataset, generated: Generated) -> Dataset:
    """D = D_env ∪ D_model (Alg. 1 line 20), with the generator's config as provenance."""
    model_data = generated.to_dataset(metadata={"generator": generated.config})
    model_data = replace(model_data, infos=_simulator_state_infos(data, model_data))
    out = data.concat(model_data)
    out.metadata = {**data.metadata, "generator": generated.config, "alpha": generated.alpha}
    return out
