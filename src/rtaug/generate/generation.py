"""Generation of new trajectories from dataset states (Alg. 1 lines 12-20, Eq. 11, §3.2).

A generated *step* is four tokens. Backward (RT): (s, a, r, R) of the step before the known
state, creating the transition (ŝ, â, r̂) → the state already in the trajectory. Forward (FT):
(a, r, R) of the known state and then the next state ŝ', creating (s, â, r̂) → ŝ'. Both are
one loop over the same model; they differ only in which modality a step starts with.

Everything is batched: trajectories decode together, one token at a time, with keys and values
of earlier tokens kept in a cache (never the whole window recomputed). The return tilt (§3.2,
DESIGN §5) draws M candidates and keeps one with weight exp(κ·R̄): by default M whole
trajectories per start state, scored after truncation by their mean reward (`tilt_choice`);
`tilt="step"` instead draws M candidates of every step, keeps one by its reward-to-go and copies
its cache to the other slots. A trajectory may be longer than the model's window: when the
window is full its last C steps become the next window's context.

Γ and α are computed the same way: α replays real trajectories next to the same kind of start
states through the same model and windows (teacher-forced), and takes a quantile of their Γ.
"""

from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import jax
import jax.numpy as jnp
from rtaug.progress import progress_bar

from rtaug.data import Dataset
from rtaug.data.episodes import reward_to_go
from rtaug.generate.model import A, G, R_, S, RTModel, expected_reward, sample
from rtaug.generate.reliability import cumulative_reliability, pessimistic_reward, truncate
from rtaug.generate.train import TrainedRT, TrainedVAE
from rtaug.nets.transformer import empty_cache, share_prefix
from rtaug.ranges import COUNT, NONNEGATIVE, QUANTILE, SEED, check_ranges, ranged

STEP_ORDER = {"backward": (S, A, R_, G), "forward": (A, R_, G, S)}


RELIABILITY_FORMS = ("paper", "window", "renormalised", "sum")
DIST_KINDS = ("vae", "forward", "disagreement")
MERGES = ("suffix", "prefix")
TILTS = ("trajectory", "step")
REWARDS = ("auto", "model", "mean", "sample")
STARTS = ("auto", "goal", "rewarded", "arrival", "uniform")


@dataclass
class GenerationConfig:
    num_trajectories: int = ranged(COUNT, 50)  # H
    max_length: int = ranged(COUNT, 10)  # L_max: bound on every generated trajectory (may exceed the window)
    # real steps the model sees before it generates, and keeps when its window slides (default:
    # half the window); RT-F3/F5 see the same, only their length differs
    context: int | None = ranged(COUNT, None)
    candidates: int = ranged(COUNT, 4)  # M candidates per trajectory (M = 1 or κ = 0: plain ancestral sampling)
    # κ of the return tilt exp(κ·R̄) (κ = 0: no tilt; a negative κ would favour low returns)
    kappa: float = ranged(NONNEGATIVE, 5.0)
    # what the tilt chooses among: "trajectory" draws M whole trajectories per start state and
    # keeps one with weight exp(κ·R̄), R̄ its kept steps' mean reward on [0, 1]; "step" draws M
    # candidates of every step and keeps one by its reward-to-go (the earlier reading, which
    # cannot raise returns backward: candidates of one step share R_{t+1}, docs/reliability.md)
    tilt: str = "trajectory"
    # generated r̂: "model" (the model directory's reward model, `generate/reward.py`), "mean" (the
    # sequence model's reward head, its expectation), "sample" (a draw from the head), "auto"
    # (the reward model where the directory has one, else the head's mean; docs/decisions.md)
    reward: str = "auto"
    beta: float = ranged(NONNEGATIVE, 0.1)  # β of the α-pessimistic reward r − β·s·Γ/α (Eq. 6), s = the data's reward range
    # "goal" (an episode's state of maximal reward), "rewarded" (the same, drawn only among episodes
    # with a reward above the data's least: an episode that never reached the goal has its end as
    # its "state of maximal reward"), "arrival" (among those episodes, the first state of maximal
    # reward: on a sparse maze where the point enters the goal circle, not where it leaves it),
    # "uniform", or "auto" (goal backward, uniform forward)
    start: str = "auto"
    truncation: bool = True  # U_t (Eq. 4); off for the fixed-length ablations RT-F3 / RT-F5
    fixed_length: int | None = ranged(COUNT, None)  # generate exactly this many steps, no truncation (RT-F3: 3)
    reliability: str = "window"  # the form of Γ (generate/reliability.py, docs/reliability.md); "paper" = Eq. 3 as an average
    dist: str = "forward"  # DIST of a step: "vae" (Eq. 8), "forward" (a forward ensemble's check), "disagreement"
    # α = this quantile of Γ on real trajectories; 1.0 is the paper's maximum, which a long tail of
    # real Γ puts out of reach on Maze2D (0% truncated); 0.99 fires on both tasks (docs/decisions.md).
    # Not 0: α would be the least real Γ, which can be 0, and the penalty divides by α
    alpha_quantile: float = ranged(QUANTILE, 0.99)
    alpha_trajectories: int = ranged(COUNT, 1000)  # real trajectories teacher-forced to measure α
    merge: str = "suffix"  # Eq. 11: "suffix" writes τ̂ + τ_suffix as one episode; "prefix" only τ̂
    batch: int = ranged(COUNT, 256)  # trajectories per jitted call
    seed: int = ranged(SEED, 0)

    def __post_init__(self):
        check_ranges(self)
        if self.start not in STARTS:
            raise ValueError(f"GenerationConfig.start must be one of {', '.join(map(repr, STARTS))}, got {self.start!r}")
        if self.reliability not in RELIABILITY_FORMS:
            raise ValueError(f"GenerationConfig.reliability must be one of {RELIABILITY_FORMS}, got {self.reliability!r}")
        if self.dist not in DIST_KINDS:
            raise ValueError(f"GenerationConfig.dist must be one of {DIST_KINDS}, got {self.dist!r}")
        if self.merge not in MERGES:
            raise ValueError(f"GenerationConfig.merge must be one of {MERGES}, got {self.merge!r}")
        if self.tilt not in TILTS:
            raise ValueError(f"GenerationConfig.tilt must be one of {TILTS}, got {self.tilt!r}")
        if self.reward not in REWARDS:
            raise ValueError(f"GenerationConfig.reward must be one of {REWARDS}, got {self.reward!r}")
        if self.fixed_length is not None:
            self.max_length = int(self.fixed_length)
            self.truncation = False

    def context_steps(self, window: int) -> int:
        """C for a model whose window is `window` steps: the context, leaving ≥ 1 step to generate."""
        c = window // 2 if self.context is None else int(self.context)
        if not 1 <= c < window:
            raise ValueError(f"GenerationConfig.context ({c}) must be between 1 and the model's window "
                             f"context_steps − 1 ({window - 1})")
        return c

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
    # (H, L) bool: the forward model predicted an episode end after this step (its trajectory
    # stops there and the step is written as a terminal); None or all False for backward models.
    terminals: np.ndarray | None = None
    # the reward scale the penalty β·Γ/α is measured in (Eq. 6 with r in the task's units):
    # the data's reward range, so that β is a fraction of it whatever the task's rewards are.
    reward_scale: float = 1.0
    # Γ of the real trajectories that α was measured on (α is its configured quantile)
    real_reliability: np.ndarray | None = None
    # the whole-trajectory tilt: candidates per trajectory and R̄ (mean reward of kept steps on
    # [0, 1]) over all candidates and over the chosen ones; None when nothing was chosen
    tilt: dict | None = None

    def penalised_rewards(self) -> np.ndarray:
        """(H, L): r̂ − β·s·Γ/α (Eq. 6), s = `reward_scale`; only kept steps are meaningful."""
        return pessimistic_reward(self.rewards, self.reliability, self.alpha, self.beta * self.reward_scale)

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


# ---- start states (§3.2, footnote 1) -----------------------------------------------
def start_kind(config: GenerationConfig, direction: str) -> str:
    """The `select_starts` rule a generation uses: the configured one, or for "auto" goal states
    backward and any state forward."""
    if config.start != "auto":
        return config.start
    return "goal" if direction == "backward" else "uniform"


def select_starts(data: Dataset, n: int, how: str, rng: np.random.Generator) -> np.ndarray:
    """Rows to start from. "goal": a uniformly drawn episode's state of maximal reward (ties:
    the latest, so an episode without reward starts from its end); "rewarded": the same among the
    episodes whose best reward exceeds the data's least; "arrival": among those episodes, the
    earliest state of maximal reward, so that a sparse reward's plateau is entered, not left, by
    the steps generated back from it; "uniform": any row."""
    if how == "uniform":
        return rng.integers(0, len(data), n)
    bounds = data.episodes()
    if how in ("rewarded", "arrival"):
        best = np.maximum.reduceat(data.rewards, bounds[:, 0])  # each episode's best reward
        bounds = bounds[best > data.rewards.min()]
        if len(bounds) == 0:
            raise ValueError(f"{data.source}: start {how!r}: no episode has a reward above the data's least")
    eps = bounds[rng.integers(0, len(bounds), n)]
    starts = np.empty(n, np.int64)
    for i, (a, b) in enumerate(eps):
        r = data.rewards[a:b]
        starts[i] = a + (int(np.argmax(r)) if how == "arrival" else len(r) - 1 - int(np.argmax(r[::-1])))
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
    return {
        "s": data.observations[read],
        "a": data.actions[read],
        "r": data.rewards[read],
        "R": rtg[read],
        "valid": slot_valid,
    }


def _forced_steps(data: Dataset, rtg, bounds, start_rows, L: int, direction: str):
    """Real steps next to each start state, as the generator would have drawn them (for α).

    Backward: rows start−1, start−2, … (each leading into the one after it); forward: rows
    start, start+1, …; `valid` (H, L) is False past the episode's edge or a true episode end.
    """
    ep = np.searchsorted(bounds[:, 1], start_rows, side="right")
    u = np.arange(L)[None, :]
    if direction == "backward":
        rows = start_rows[:, None] - 1 - u
        valid = rows >= bounds[ep, 0][:, None]
    else:
        rows = start_rows[:, None] + u
        valid = rows < bounds[ep, 1][:, None]
        ended = np.cumsum(np.where(valid, data.terminals[np.clip(rows, 0, len(data) - 1)], False), axis=1)
        valid &= (ended - data.terminals[np.clip(rows, 0, len(data) - 1)]) == 0  # up to and incl. the end
    rows = np.clip(np.where(valid, rows, start_rows[:, None]), 0, len(data) - 1)
    new_state = data.observations[rows] if direction == "backward" else data.next_observations[rows]
    return {"s": new_state, "a": data.actions[rows], "r": data.rewards[rows], "R": rtg[rows],
            "done": data.terminals[rows] & valid}, valid


def _build_block(trained: TrainedRT, H: int, M: int, C: int, reward_mode: str = "mean", copies: int = 1,
                 segments: int = 2):
    """A jitted function that generates one window's worth of steps (K − C) for H contexts, each
    rolled out `copies` times independently (the whole-trajectory tilt's candidates), each of
    those with M candidates per step (the per-step tilt).

    (context slots, key, forced steps, use_forced, κ) -> per generated step of the H·copies
    trajectories: the chosen candidate's values, the state it is attached to (backward: its
    successor; forward: the state it leaves), the episode end it predicted, and the last layer's
    head-averaged attention of the query at its final token over the window's 4K tokens.
    """
    model: RTModel = trained.model
    spec, params, cfg = trained.spec, trained.params, trained.config
    direction = cfg.direction
    order = STEP_ORDER[direction]
    K = cfg.context_steps
    NG = K - C  # steps generated per window
    P = 4 * C if direction == "backward" else 4 * (C - 1) + 1  # context tokens, the last one pending
    T = 4 * K
    HG = H * copies  # trajectories
    BM = HG * M  # rows decoded at once
    gamma = cfg.gamma
    rtg_lo, rtg_span = spec.rtg_lo, spec.rtg_hi - spec.rtg_lo

    # Every decoded token reads its rows' whole cache, written or not, and decoding is bound by
    # those reads. So the steps run in `segments` scans, each holding only the positions its
    # tokens reach (a row's own positions start at the pending context token, P − 1): the
    # first of two segments reads half the row cache. The last also holds the query after it.
    bounds = sorted({round(NG * i / segments) for i in range(segments + 1)})
    rows_held = [4 * u for u in bounds[1:-1]] + [T - (P - 1)]

    def rep(x):  # one row per context -> one per decoded row
        return jnp.repeat(x, copies * M, axis=0)

    def run(ctx, key, forced_steps, use_forced, kappa):
        # Replaying real steps (for α) and sampling share one compiled program: XLA compiles
        # this loop in tens of seconds, and α must see exactly the model's generation path.
        s, a, r, R, valid = ctx["s"], ctx["a"], ctx["r"], ctx["R"], ctx["valid"]
        n_valid = valid.sum(axis=1)
        step_ctx = jnp.maximum(jnp.arange(C)[None, :] - (C - n_valid)[:, None], 0).astype(jnp.int32)
        token_valid = jnp.repeat(valid, 4, axis=1)[:, :P]
        key_valid = jnp.concatenate([token_valid, jnp.ones((H, T - P), bool)], axis=1)
        if P > 1:
            # the context is read once per context, and its keys and values are one prefix
            # shared by every row that continues it (rows differ only in what they draw after
            # it): decoding reads the cache whole for every token, the prefix once per group
            prefix = empty_cache(cfg.n_layer, H, P - 1, cfg.n_head, cfg.d_model)
            prefix = model.apply(params, s, a, r, R, step_ctx, key_valid, prefix, P - 1, method=RTModel.prefill)
            cache = share_prefix(prefix, BM, P - 1 + rows_held[0])
        else:
            cache = empty_cache(cfg.n_layer, BM, rows_held[0], cfg.n_head, cfg.d_model)
        key_valid = rep(key_valid)
        offset = rep(C - n_valid)  # left padding, in step slots
        pending = rep(R[:, -1] if direction == "backward" else s[:, -1])
        anchor = rep(s[:, -1])
        R_next = rep(R[:, -1])  # reward-to-go of the state the next backward step leads into
        # the state one step back in reading order: what a forward action head is conditioned on
        prev_anchor = rep(s[:, -2] if C >= 2 else s[:, -1])
        prev_valid = rep(valid[:, -2].astype(jnp.float32)) if C >= 2 else jnp.zeros((BM,), jnp.float32)

        def step_of(pos):
            return jnp.maximum(pos // 4 - offset, 0).astype(jnp.int32)

        def one_step(carry, u):
            cache, pending, anchor, prev_anchor, prev_valid, R_next, key = carry
            pos0 = P - 1 + 4 * u
            feed_mod, feed_val = order[-1], pending
            values, attn0, done_logit = {}, None, None
            for j, mod in enumerate(order):
                kw = {"s_anchor": anchor}
                if mod == A:
                    kw["s_own"] = values[S][0] if direction == "backward" else anchor
                    if direction == "forward":
                        kw.update(s_anchor=prev_anchor, anchor_valid=prev_valid)
                elif mod == R_:
                    kw.update(s_own=values[S][0] if direction == "backward" else anchor, a_own=values[A][0])
                elif mod == S and direction == "forward":
                    kw["a_prev"] = values[A][0]  # a forward step's state is reached by the action just drawn
                out, attn, cache = model.apply(
                    params, feed_mod, feed_val, step_of(pos0 + j), key_valid, pos0 + j, cache, mod,
                    method=RTModel.decode, **kw,
                )
                if j == 0:
                    attn0 = attn.mean(axis=1)
                if mod == R_:
                    out, done_logit = out
                key, sub = jax.random.split(key)
                drawn = sample(spec, mod, out, sub, anchor)
                if mod == R_ and reward_mode == "mean":
                    drawn = (expected_reward(spec, out), drawn[1])
                real = rep(forced_steps[MOD_KEY[mod]][:, u]).astype(drawn[0].dtype)
                values[mod] = (jnp.where(use_forced, real, drawn[0]), drawn[1])
                if mod == G and direction == "backward":
                    # Read backward, R_t = r_t + γ·R_{t+1} exactly: the reward-to-go of a
                    # generated step is the return of the whole τ′ from it, real suffix included.
                    values[G] = (values[R_][0] + gamma * R_next, values[G][1])
                feed_mod, feed_val = mod, values[mod][0]
            key, sub = jax.random.split(key)
            if done_logit is not None:
                done = jax.random.bernoulli(sub, jax.nn.sigmoid(done_logit))
            else:
                done = jnp.zeros((BM,), bool)
            done = jnp.where(use_forced, rep(forced_steps["done"][:, u]), done)
            # Return-tilted choice among the M candidates (§3.2, MGDT's P(H|R) ∝ exp(κ·R̄)): the
            # candidates are already draws from P(R), so the weight is the tilt alone.
            r_bar = (values[G][0] - rtg_lo) / rtg_span
            key, sub = jax.random.split(key)
            choice = jax.random.categorical(sub, (kappa * r_bar).reshape(HG, M))
            pick = jnp.arange(HG) * M + choice  # (HG,)
            if M > 1:  # every candidate slot continues from the chosen one (a copy of the cache)
                keep = jnp.repeat(pick, M)
                cache = cache._replace(k=tuple(c[keep] for c in cache.k), v=tuple(c[keep] for c in cache.v))
            chosen = {m: values[m][0][pick] for m in order}
            attn0 = jnp.pad(attn0, ((0, 0), (0, T - attn0.shape[1])))  # positions not yet written: weight 0
            record = (chosen[S], chosen[A], chosen[R_], chosen[G], done[pick], anchor[pick], attn0[pick])
            new_anchor = jnp.repeat(chosen[S], M, axis=0)
            new_prev = jnp.repeat(anchor[pick], M, axis=0)
            new_pending = jnp.repeat(chosen[order[-1]], M, axis=0)
            new_R = jnp.repeat(chosen[G], M, axis=0)
            return (cache, new_pending, new_anchor, new_prev, jnp.ones_like(prev_valid), new_R, key), record

        carry = (cache, pending, anchor, prev_anchor, prev_valid, R_next, key)
        recs = []
        for i in range(len(bounds) - 1):
            if i:  # the next segment's tokens need more positions: grow every row's cache
                c = carry[0]
                grow = [((0, 0), (0, 0), (0, rows_held[i] - rows_held[i - 1]), (0, 0))]
                carry = (c._replace(k=tuple(jnp.pad(x, *grow) for x in c.k), v=tuple(jnp.pad(x, *grow) for x in c.v)),
                         *carry[1:])
            carry, rec = jax.lax.scan(one_step, carry, jnp.arange(bounds[i], bounds[i + 1]))
            recs.append(rec)
        (cache, pending, anchor, _, _, _, key) = carry
        rec = jax.tree_util.tree_map(lambda *x: jnp.concatenate(x), *recs)
        pos = P - 1 + 4 * NG
        _, attn_last, _ = model.apply(
            params, order[-1], pending, step_of(pos), key_valid, pos, cache, order[0], s_anchor=anchor,
            s_own=anchor, method=RTModel.decode,  # only this query's attention is used, not its output
        )
        s_new, a_new, r_new, R_new, done, anchors, attn_first = rec
        # attention rows: the query at step u's final token is fed at the start of step u+1
        attn_rows = jnp.concatenate([attn_first[1:], attn_last.mean(axis=1)[None, ::M]], axis=0)  # (NG, H, T)
        sw = lambda x: jnp.swapaxes(x, 0, 1)
        return tuple(sw(x) for x in (s_new, a_new, r_new, R_new, done, anchors, attn_rows))

    return jax.jit(run)


MOD_KEY = {S: "s", A: "a", R_: "r", G: "R"}


def _token_steps(slot_s, slot_a) -> np.ndarray:
    """(4K,) index of the generated step each token of the window belongs to (−1: real data).

    Backward a step is one slot (s, a, r, R). Forward a step is (a, r, R) of the slot it leaves
    and s of the next slot, so `slot_a` / `slot_s` say which step owns each slot's parts.
    """
    out = np.repeat(np.asarray(slot_a), 4)
    out[0::4] = np.asarray(slot_s)
    return out


_BLOCKS_LOCK = threading.Lock()


def _rollout_windows(trained: TrainedRT, config: GenerationConfig, ctx: dict, key, forced=None, copies: int = 1):
    """Generate (or, with `forced`, replay real steps through the model) in sliding windows.

    Each window holds C context steps and K − C new ones; when it is full, its last C steps
    (generated ones included) become the next window's context, re-read from scratch so that
    step positions stay those of training. Every context is rolled out `copies` times (rows
    h·copies … h·copies + copies − 1). Returns per-trajectory arrays over L = max_length steps,
    the attention mass of each step's query on each earlier generated step (H·copies, L, L) and
    how many steps its window held.
    """
    cfg = trained.config
    direction, K = cfg.direction, cfg.context_steps
    L, C = config.max_length, config.context_steps(K)
    NG = K - C
    H = ctx["s"].shape[0]
    M = config.candidates
    # the head's own reward tokens: a draw for reward="sample", else its expectation (a reward
    # model's values replace the written rewards afterwards, not the tokens the model conditions on)
    head_reward = "sample" if config.reward == "sample" else "mean"
    blocks = trained.__dict__.setdefault("_generators", {})

    def block_for(n_ctx, n_copies):
        cache_key = (n_ctx, M, C, head_reward, n_copies)
        with _BLOCKS_LOCK:  # batches decoding at once build each program once
            if cache_key not in blocks:
                blocks[cache_key] = _build_block(trained, n_ctx, M, C, head_reward, n_copies)
            return blocks[cache_key]
    use_forced = forced is not None
    if forced is None:  # a placeholder of the right shapes, never read
        forced = {"s": ctx["s"][:, :1].repeat(L, 1), "a": ctx["a"][:, :1].repeat(L, 1),
                  "r": ctx["r"][:, :1].repeat(L, 1), "R": ctx["R"][:, :1].repeat(L, 1),
                  "done": np.zeros((H, L), bool)}
    n_blocks = -(-L // NG)
    if n_blocks > 1 and copies > 1:
        # Past the first window every copy has a context of its own, which needs a program for
        # H·copies contexts; running the first window on the copies' contexts too keeps it to
        # one compiled program (compiling is most of a small run's time: 2 s per program at the
        # quickstart size), at the cost of prefilling each context `copies` times. Outputs are
        # the same either way.
        ctx = {k: np.repeat(np.asarray(v), copies, axis=0) for k, v in ctx.items()}
        forced = {k: np.repeat(v, copies, axis=0) for k, v in forced.items()}
        H, copies = H * copies, 1
    slot_s = np.full(C, -1)
    slot_a = np.full(C, -1)
    ctx = {k: np.asarray(v) for k, v in ctx.items()}
    parts, masses, n_window = [], [], []
    for b in range(n_blocks):
        g0 = b * NG
        gen_idx = np.arange(g0, g0 + NG)
        if direction == "backward":
            slot_s = np.concatenate([slot_s, gen_idx])
            slot_a = slot_s
        else:
            slot_s = np.concatenate([slot_s, gen_idx])
            slot_a = np.concatenate([slot_a[:C - 1], gen_idx, [-1]])
        n_valid = np.repeat(ctx["valid"].sum(axis=1), copies)
        block = block_for(len(ctx["s"]), copies)
        key, sub = jax.random.split(key)
        window = {k: np.asarray(v[:, g0:g0 + NG]) if v.shape[1] >= g0 + NG else
                  np.concatenate([v[:, g0:], np.repeat(v[:, -1:], g0 + NG - v.shape[1], 1)], 1)
                  for k, v in forced.items()}
        out = [np.asarray(x) for x in block({k: jnp.asarray(v) for k, v in ctx.items()}, sub,
                                            {k: jnp.asarray(v) for k, v in window.items()},
                                            jnp.asarray(use_forced), jnp.float32(0.0 if use_forced else config.kappa))]
        s_new, a_new, r_new, R_new, done, anchors, attn = out
        tok = _token_steps(slot_s, slot_a)
        onehot = (tok[:, None] == np.arange(n_blocks * NG)[None, :]).astype(np.float32)  # (4K, steps)
        masses.append(attn.astype(np.float32) @ onehot)  # (H, NG, steps)
        n_window.append(n_valid[:, None] + np.arange(1, NG + 1)[None, :])
        parts.append((s_new, a_new, r_new, R_new, done, anchors))
        if b + 1 < n_blocks:  # slide: the window's last C steps are the next context (copies is 1 here)
            if direction == "backward":
                win = {"s": np.concatenate([ctx["s"], s_new], 1), "a": np.concatenate([ctx["a"], a_new], 1),
                       "r": np.concatenate([ctx["r"], r_new], 1), "R": np.concatenate([ctx["R"], R_new], 1)}
            else:
                pad = lambda x: np.concatenate([x, x[:, -1:]], 1)
                win = {"s": np.concatenate([ctx["s"], s_new], 1),
                       "a": pad(np.concatenate([ctx["a"][:, :C - 1], a_new], 1)),
                       "r": pad(np.concatenate([ctx["r"][:, :C - 1], r_new], 1)),
                       "R": pad(np.concatenate([ctx["R"][:, :C - 1], R_new], 1))}
            win["valid"] = np.concatenate([ctx["valid"], np.ones((len(ctx["valid"]), NG), bool)], 1)
            ctx = {k: v[:, K - C:] for k, v in win.items()}
            slot_s, slot_a = slot_s[K - C:], slot_a[K - C:]
            if direction == "forward":
                slot_a = slot_a.copy()
                slot_a[-1] = -1
    cat = [np.concatenate(p, axis=1)[:, :L] for p in zip(*parts)]
    mass = np.concatenate(masses, axis=1)[:, :L, :L]
    return cat, mass, np.concatenate(n_window, axis=1)[:, :L]


def resolve_reward(reward: str, reward_model) -> str:
    """What `GenerationConfig.reward` means for a model directory: "auto" is the reward model
    where there is one, else the sequence model's head ("mean")."""
    if reward == "auto":
        return "model" if reward_model is not None else "mean"
    if reward == "model" and reward_model is None:
        raise ValueError("GenerationConfig.reward='model' needs the model directory's reward model (`rtaug "
                         "train-model` trains it unless --reward-steps 0): use reward='mean' or retrain")
    return reward


def dist_function(dist: str, vae: TrainedVAE, dynamics):
    """DIST of flat transitions (s, a, s′) -> (N,) numpy, by the configured kind."""
    if dist == "vae":
        f = jax.jit(vae.dist)
    else:
        if dynamics is None:
            raise ValueError(f"GenerationConfig.dist={dist!r} needs the model directory's dynamics ensemble "
                             "(`rtaug train-model` trains it; this model has none): use dist='vae' or retrain")
        f = jax.jit(lambda s, a, n: dynamics.dist(s, a, n, kind=dist))

    def run(s, a, n):
        out = [np.asarray(f(jnp.asarray(s[i:i + 65536]), jnp.asarray(a[i:i + 65536]), jnp.asarray(n[i:i + 65536])))
               for i in range(0, len(s), 65536)]
        return np.concatenate(out) if out else np.zeros(0, np.float32)
    return run


def rollout(data, trained, config, start_rows, rtg, bounds, forced: bool, progress_bar=None, copies: int = 1,
            concurrency: int | None = None):
    """Roll out every start row `copies` times, independently (rows i·copies … i·copies +
    copies − 1 start from start_rows[i]), in batches of `config.batch` start rows (forced:
    replay the real steps next to each start row instead of sampling; the copies are then
    identical). Returns per-step arrays over L = max_length: new states, actions, r̂, R̂,
    predicted ends, the states they attach to (see `transitions`), the attention mass (n, L, L)
    and window sizes (n, L) that Γ needs; forced adds `valid` (n, L), False past the episode's
    edge. Truncation is not applied: Γ decides it afterwards.

    concurrency: batches decoded at once, each from a thread of its own (None:
    `default_concurrency()`, one per core this process may use). Every batch has its key before
    any runs, so the outputs do not depend on it."""
    if concurrency is not None and (isinstance(concurrency, bool) or not isinstance(concurrency, int)
                                    or concurrency < 1):
        raise ValueError(f"generation: concurrency must be a positive int (batches decoded at once), got {concurrency!r}")
    direction = trained.config.direction
    C = config.context_steps(trained.config.context_steps)
    n = len(start_rows)
    # one batch size for α's replay and for generation, so both run one compiled program
    H = min(config.batch, max(config.num_trajectories, config.alpha_trajectories, n))
    key = jax.random.PRNGKey(config.seed + (7919 if forced else 0))
    batches = []
    for i in range(0, n, H):
        key, sub = jax.random.split(key)
        batches.append((i, sub))

    def run(batch):
        i, sub = batch
        rows = start_rows[i:i + H]
        pad = H - len(rows)
        rows_p = np.concatenate([rows, np.repeat(rows[-1:], pad)])
        ctx = _context(data, rtg, bounds, rows_p, C, direction)
        f = None
        if forced:
            f, valid = _forced_steps(data, rtg, bounds, rows_p, config.max_length, direction)
            f = {**f, "valid": valid}
        out, mass, n_win = _rollout_windows(trained, config, ctx, sub, copies=copies,
                                    forced=None if f is None else {k: v for k, v in f.items() if k != "valid"})
        extra = [np.repeat(f["valid"], copies, axis=0)] if forced else []
        return [x[: len(rows) * copies] for x in (*out, mass, n_win, *extra)]

    workers = min(default_concurrency() if concurrency is None else concurrency, len(batches))
    parts = []
    with contextlib.ExitStack() as stack:
        if workers > 1 and trained.config.matmul != "xla":
            from rtaug.nets import onednn

            # one core per oneDNN call when several batches decode at once (docs/performance.md)
            stack.enter_context(onednn.threads_per_call(max(1, _usable_cores() // workers)))
        pool = stack.enter_context(ThreadPoolExecutor(workers, "rollout")) if workers > 1 else None
        for (i, _), part in zip(batches, pool.map(run, batches) if pool else map(run, batches)):
            parts.append(part)
            if progress_bar is not None:
                progress_bar.update(min(H, n - i) * copies)
    return [np.concatenate(p) for p in zip(*parts)]


def default_concurrency() -> int:
    """Batches generation decodes at once by default: one per core this process may use. One
    decoding batch gets only 1.35-1.4× out of a second core (its kernels are small, and attention's
    are bound by reading the cache); two batches at once, each on a core, get the rest, and more than
    two gained nothing (docs/performance.md). A process pinned to one core (a sweep's worker)
    decodes one at a time."""
    return _usable_cores()


def _usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def transitions(direction, s_new, anchors):
    """(s, s′) of generated steps: backward the new state leads into its anchor, forward out of it."""
    return (s_new, anchors) if direction == "backward" else (anchors, s_new)


def mean_reward(rewards, kept, spec) -> np.ndarray:
    """R̄ (n,) of trajectories: the mean over all L slots of the reward scaled to [0, 1] by the
    data's reward range, a truncated slot counting as the lowest reward (no data is no return)."""
    span = max(spec.reward_range, 1e-12)
    return np.where(kept, np.clip((rewards - spec.rew_low) / span, 0.0, 1.0), 0.0).mean(axis=1)


def tilt_choice(r_bar, n_cand: int, kappa: float, rng: np.random.Generator) -> np.ndarray:
    """Which of each start state's `n_cand` consecutive candidates to keep: one drawn with weight
    exp(κ·R̄) (§3.2, MGDT's P(H|R) ∝ exp(κ·R̄)). The candidates are draws from the model's P(τ),
    so the kept one is a draw from P(τ)·exp(κ·R̄), self-normalised over M. Returns row indices."""
    logits = kappa * np.asarray(r_bar, np.float64).reshape(-1, n_cand)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    cdf = np.cumsum(p / p.sum(axis=1, keepdims=True), axis=1)
    choice = np.minimum((cdf < rng.random((len(p), 1))).sum(axis=1), n_cand - 1)
    return np.arange(len(p)) * n_cand + choice


def measure_alpha(data: Dataset, trained: TrainedRT, dist_fn, config: GenerationConfig, rtg, bounds, how: str,
                  copies: int = 1, concurrency: int | None = None):
    """α measured the way Γ is (DESIGN §4): real trajectories next to the same kind of start
    states, teacher-forced through the same model, windows and attention, Γ computed by the same
    form; α is the configured quantile of those Γ (1.0: their maximum, the paper's "maximum
    distribution error of the offline dataset"). Returns (α, the real Γ values).

    copies: as generation rolls out each start state (the replay then runs generation's compiled
    program; its copies are identical and one of each is kept). concurrency: as `rollout`'s."""
    rng = np.random.default_rng(config.seed + 1)
    starts = select_starts(data, config.alpha_trajectories, how, rng)
    direction = trained.config.direction
    out = rollout(data, trained, config, starts, rtg, bounds, forced=True, copies=copies, concurrency=concurrency)
    s_new, a_new, _r, _R, _d, anchors, mass, n_win, valid = (x[::copies] for x in out)
    obs, nxt = transitions(direction, s_new, anchors)
    flat = lambda x: x.reshape((-1,) + x.shape[2:])
    dist = dist_fn(flat(obs), flat(a_new), flat(nxt)).reshape(obs.shape[:2])
    # steps past the episode's edge are not real: they add nothing to the real Γ
    dist = np.where(valid, dist, 0.0)
    gamma = cumulative_reliability(mass, dist, config.reliability, n_win)
    real = gamma[valid]
    if real.size == 0:
        raise ValueError("α: no real step lies next to the start states (episodes of one step?); "
                         "cannot measure the data's reliability")
    return float(np.quantile(real, config.alpha_quantile)), real


def generate(
    data: Dataset,
    trained: TrainedRT,
    vae: TrainedVAE,
    config: GenerationConfig,
    start_rows: np.ndarray | None = None,
    progress: bool = True,
    dynamics=None,
    reward_model=None,
    concurrency: int | None = None,
) -> Generated:
    """Generate `config.num_trajectories` trajectories from dataset states with RT (or FT).

    reward_model: a `TrainedReward` (`generate/reward.py`); with `config.reward` "model" (or
    "auto") the written rewards, and the tilt's R̄, are its predictions for the generated
    transitions; the sequence model still conditions on its own reward tokens.

    concurrency: batches decoded at once, each from a thread of its own (None: one per core this
    process may use, `default_concurrency`); it changes the speed, never the result."""
    direction = trained.config.direction
    K = trained.config.context_steps
    config.context_steps(K)  # validates the context against the window
    rng = np.random.default_rng(config.seed)
    how = start_kind(config, direction)
    if start_rows is None:
        start_rows = select_starts(data, config.num_trajectories, how, rng)
    start_rows = np.asarray(start_rows, np.int64)
    bounds = data.episodes()
    rtg = reward_to_go(data.rewards, bounds, trained.config.gamma)
    dist_fn = dist_function(config.dist, vae, dynamics)
    reward_used = resolve_reward(config.reward, reward_model)
    # The whole-trajectory tilt rolls out M independent trajectories per start state (M rows
    # per call, as many as the per-step tilt's M candidates take) and keeps one of them.
    n_cand = config.candidates if config.tilt == "trajectory" and config.kappa != 0 else 1
    run_config = replace(config, candidates=1) if config.tilt == "trajectory" else config
    alpha, real_gamma = measure_alpha(data, trained, dist_fn, run_config, rtg, bounds, how, copies=n_cand,
                                      concurrency=concurrency)

    bar = progress_bar(total=len(start_rows) * n_cand, desc=f"generate ({direction})", progress=progress, unit="traj")
    s_new, a_new, r_new, _R, done, anchors, mass, n_win = rollout(
        data, trained, run_config, start_rows, rtg, bounds, forced=False, progress_bar=bar, copies=n_cand,
        concurrency=concurrency)
    bar.close()
    obs, nxt = transitions(direction, s_new, anchors)
    flat = lambda x: x.reshape((-1,) + x.shape[2:])
    if reward_used == "model":
        r_new = reward_model.predict(flat(obs), flat(a_new), flat(nxt)).reshape(r_new.shape)
    dist = dist_fn(flat(obs), flat(a_new), flat(nxt)).reshape(obs.shape[:2])
    gamma = cumulative_reliability(mass, dist, config.reliability, n_win)
    kept = truncate(gamma, alpha)[1] if config.truncation else np.ones_like(gamma, bool)
    # a predicted episode end is the trajectory's last step
    ended_before = np.cumsum(done, axis=1) - done
    kept &= ended_before == 0
    tilt_stats = None
    if n_cand > 1:
        r_bar = mean_reward(r_new, kept, trained.spec)
        pick = tilt_choice(r_bar, n_cand, config.kappa, np.random.default_rng(config.seed + 2))
        tilt_stats = {"candidates": n_cand, "candidate_mean_reward": float(r_bar.mean()),
                      "chosen_mean_reward": float(r_bar[pick].mean())}
        obs, a_new, r_new, nxt, dist, gamma, kept, done = (
            x[pick] for x in (obs, a_new, r_new, nxt, dist, gamma, kept, done))
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
        alpha=alpha,
        beta=config.beta,
        terminals=done & kept,
        reward_scale=trained.spec.reward_range,
        real_reliability=real_gamma,
        tilt=tilt_stats,
        config={"generator": "rt" if direction == "backward" else "ft", **config.to_dict(),
                "reward_used": reward_used, "alpha": alpha, "reward_scale": trained.spec.reward_range, "rt": trained.config.to_dict()},
    )


def summarize(generated: Generated, data: Dataset | None = None) -> dict:
    """What a generation made: volume, truncation and lengths, Γ against α, generated rewards
    beside the real ones (what `rtaug augment` prints and records)."""
    g = generated
    kept = g.kept
    L = kept.shape[1]
    lengths = g.lengths
    penalised = g.penalised_rewards()[kept]
    out = {
        "trajectories": int(len(lengths)),
        "generated_transitions": int(kept.sum()),
        "max_length": int(L),
        "mean_length": float(lengths.mean()) if len(lengths) else 0.0,
        "length_histogram": np.bincount(lengths, minlength=L + 1).tolist(),
        "truncated_fraction": float(np.mean(lengths < L)) if len(lengths) else 0.0,
        "ended_by_terminal": int(g.terminals.sum()) if g.terminals is not None else 0,
        "alpha": float(g.alpha),
        "gamma_kept": [float(g.reliability[kept].min()), float(g.reliability[kept].max())] if kept.any() else None,
        "gamma_all_max": float(g.reliability.max()) if g.reliability.size else None,
        "real_gamma_max": float(np.max(g.real_reliability)) if g.real_reliability is not None else None,
        "model_reward_mean": float(g.rewards[kept].mean()) if kept.any() else None,
        "penalised_reward_mean": float(penalised.mean()) if kept.any() else None,
        "penalty_mean": float((g.rewards[kept] - penalised).mean()) if kept.any() else None,
        "tilt": g.tilt,
        "reward_source": g.config.get("reward_used"),
    }
    if data is not None:
        out["real_reward_mean"] = float(data.rewards.mean())
    return out


def format_summary(s: dict) -> str:
    hist = ", ".join(f"{n}: {c}" for n, c in enumerate(s["length_histogram"]) if c)
    lines = [
        f"generated {s['generated_transitions']} transitions in {s['trajectories']} trajectories "
        f"(mean length {s['mean_length']:.2f} of at most {s['max_length']})",
        f"  truncated by Γ > α: {100 * s['truncated_fraction']:.1f}% of trajectories"
        + (f"; {s['ended_by_terminal']} ended at a predicted episode end" if s["ended_by_terminal"] else ""),
        f"  lengths: {hist}",
        f"  α = {s['alpha']:.4g} (real trajectories' Γ up to {s['real_gamma_max']:.4g}); "
        + (f"Γ of kept steps {s['gamma_kept'][0]:.4g} .. {s['gamma_kept'][1]:.4g}, of all generated up to "
           f"{s['gamma_all_max']:.4g}" if s["gamma_kept"] else "no step kept"),
    ]
    if s.get("tilt"):
        t = s["tilt"]
        lines.append(f"  return tilt: kept 1 of {t['candidates']} candidate trajectories by exp(κ·R̄); mean R̄ "
                     f"{t['chosen_mean_reward']:.4g} (all candidates {t['candidate_mean_reward']:.4g})")
    if s["model_reward_mean"] is not None:
        source = {"model": "reward model", "mean": "reward head", "sample": "reward head, sampled"}.get(
            s.get("reward_source"), "generated")
        lines.append(f"  rewards ({source}): mean {s['model_reward_mean']:.4g}, after the penalty {s['penalised_reward_mean']:.4g} "
                     f"(mean penalty {s['penalty_mean']:.4g})"
                     + (f"; real rows {s['real_reward_mean']:.4g}" if "real_reward_mean" in s else ""))
    return "\n".join(lines)
