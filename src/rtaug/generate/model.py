"""RT's sequence model: a causal transformer over (s, a, r, R) tokens (paper Eq. 1-2, 9-10).

One token per modality per step, as in Decision Transformer (DESIGN §3). Each token's
modality is predicted from the token before it: s_t from the last token of the previous
step, a_t from s_t's, r_t from a_t's, R_t from r_t's. The sum of those log-probabilities is
exactly Eq. 1 (forward windows) or Eq. 9 (reversed windows); the direction is only the
order in which the windows are read, so backward RT and forward FT are one class.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import jax
import jax.numpy as jnp
import flax.linen as nn

from rtaug.generate.spec import Spec
from rtaug.nets import onednn
from rtaug.nets.mlp import dense_layer
from rtaug.nets.transformer import GPT
from rtaug.ranges import COUNT, FRACTION, NONNEGATIVE, POSITIVE, SEED, Range, check_ranges, ranged

S, A, R_, G = 0, 1, 2, 3  # modalities in step order: state, action, reward, reward-to-go
MODALITIES = ("state", "action", "reward", "reward_to_go")
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
WINDOW = Range(2, note="a window holds at least one step of context and one generated step")


@dataclass
class RTConfig:
    direction: str = "backward"  # "backward" = RT (Eq. 9-10), "forward" = FT (Eq. 1-2)
    context_steps: int = ranged(WINDOW, 20)  # K: steps per training window (4K tokens)
    n_layer: int = ranged(COUNT, 3)
    n_head: int = ranged(COUNT, 4)
    d_model: int = ranged(COUNT, 128)
    gamma: float = ranged(FRACTION, 0.99)  # discount of the reward-to-go R_t
    rtg_bins: int = ranged(COUNT, 32)  # B: bins of the categorical reward-to-go head
    batch_size: int = ranged(COUNT, 64)
    steps: int = ranged(COUNT, 2000)
    lr: float = ranged(POSITIVE, 3e-4)
    weight_decay: float = ranged(NONNEGATIVE, 1e-4)
    warmup: int = ranged(NONNEGATIVE, 100)
    grad_clip: float = ranged(POSITIVE, 1.0)
    seed: int = ranged(SEED, 0)
    # "xla", or the transformer's and hidden layers' matmuls through oneDNN: "onednn-bf16" takes
    # this CPU's AMX (bfloat16 products, float32 sums; rtaug.nets.onednn, docs/performance.md).
    # The embeddings and output heads (a few columns each) stay XLA's; while decoding, attention's
    # products go through oneDNN too, in float32.
    matmul: str = "xla"

    def __post_init__(self):
        check_ranges(self)
        if self.direction not in ("backward", "forward"):
            raise ValueError(f"RTConfig.direction must be 'backward' or 'forward', got {self.direction!r}")
        if self.matmul not in onednn.MODES:
            raise ValueError(f"RTConfig.matmul must be one of {', '.join(onednn.MODES)}, got {self.matmul!r}")
        if self.d_model % self.n_head:
            raise ValueError(f"RTConfig.d_model ({self.d_model}) must be a multiple of n_head ({self.n_head})")

    def to_dict(self) -> dict:
        return onednn.recorded(asdict(self))


class RTModel(nn.Module):
    spec: Spec
    config: RTConfig

    def setup(self):
        c, sp = self.config, self.spec
        d = c.d_model
        if sp.obs_kind == "discrete":
            self.state_cell_embed = nn.Embed(sp.n_states, d)
        self.state_embed = nn.Dense(d)
        if sp.act_kind == "discrete":
            self.action_embed = nn.Embed(sp.num_actions, d)
        else:
            self.action_embed = nn.Dense(d)
        self.reward_embed = nn.Dense(d)
        self.rtg_embed = nn.Dense(d)
        self.step_embed = nn.Embed(c.context_steps, d)
        self.modality_embed = nn.Embed(4, d)
        self.gpt = GPT(c.n_layer, c.n_head, c.matmul)
        wide = dense_layer(c.matmul)  # the d- and 4d-wide hidden layers below
        state_out = sp.n_displacements if sp.obs_kind == "discrete" else 2 * sp.obs_dim
        action_out = sp.num_actions if sp.act_kind == "discrete" else 2 * sp.act_dim
        reward_out = sp.n_rewards if sp.rew_kind == "discrete" else 2
        self.heads = [nn.Dense(state_out), nn.Dense(action_out), nn.Dense(reward_out), nn.Dense(sp.rtg_bins)]
        # The state and action heads also see the neighbouring state itself (the one a step
        # away in reading order), not only what attention carried of it: which moves exist
        # from a cell (a wall, an edge), and which action joins two states, are properties of
        # that state, and the heads should not have to fetch it.
        self.anchor_embed = self._state_in()
        if sp.obs_kind == "continuous":
            # Continuous states: the head that completes a transition also sees the transition's
            # other two parts directly. Backward, that is the action, and it sees its own state as
            # a normalised difference to the successor; forward, the state, and it sees the action
            # that led to it. On Maze2D each is a near-linear function of those inputs, yet read
            # from separate tokens through attention it came out so coarse that generated
            # velocities missed the simulator's by up to a whole step's change (docs/maze2d.md,
            # "RT-generated data through the audit"). Discrete states keep the heads above.
            self.step_delta_embed = nn.Dense(d)
            if c.direction == "forward":
                self.prev_action_embed = self._action_in()
        # The reward head sees the transition it scores. A maze's reward is a function of the
        # state after the step; read backward that state is the anchor, known before the step
        # is drawn, yet through attention alone the head missed the goal region on 97% of
        # generated goal rows (docs/reliability.md). Forward, the next state is not drawn yet,
        # so the head sees the state and the action, which determine it. It is a two-layer MLP of
        # width 4d: with one layer of width d the goal's edge stayed blurred (real goal rows:
        # P(r = 1) 0.83 on maze2d-medium-sparse at the quickstart size; 0.94 with this head,
        # docs/decisions.md).
        self.reward_state_embed = self._state_in()
        self.reward_action_embed = self._action_in()
        if c.direction == "backward":
            self.reward_next_embed = self._state_in()
        self.state_hidden = wide(d)
        self.action_hidden = wide(d)
        self.reward_hidden = wide(4 * d)
        self.reward_hidden2 = wide(4 * d)
        self.reward_out = wide(d)
        if self.predicts_ends:
            self.done_head = nn.Dense(1)

    @property
    def predicts_ends(self) -> bool:
        """A forward model on data with true episode ends predicts them (with the reward)."""
        return self.config.direction == "forward" and self.spec.has_terminals

    def _state_in(self):
        return nn.Embed(self.spec.n_states, self.config.d_model) if self.spec.obs_kind == "discrete" \
            else nn.Dense(self.config.d_model)

    def _action_in(self):
        return nn.Embed(self.spec.num_actions, self.config.d_model) if self.spec.act_kind == "discrete" \
            else nn.Dense(self.config.d_model)

    def _s(self, layer, s):
        sp = self.spec
        return layer(sp.obs_to_index(s) if sp.obs_kind == "discrete" else sp.obs_input(s))

    def _a(self, layer, a):
        sp = self.spec
        return layer(a.astype(jnp.int32) if sp.act_kind == "discrete" else sp.act_input(a))

    # ---- embedding ----------------------------------------------------------------
    def embed(self, modality: int, value, step):
        """value in data units, shape (B, t, ...); step: (B, t) position of its step in the window."""
        sp = self.spec
        if modality == S:
            x = self.state_embed(sp.obs_input(value))
            if sp.obs_kind == "discrete":
                x = x + self.state_cell_embed(sp.obs_to_index(value))
        elif modality == A:
            if sp.act_kind == "discrete":
                x = self.action_embed(value.astype(jnp.int32))
            else:
                x = self.action_embed(sp.act_input(value))
        elif modality == R_:
            x = self.reward_embed(sp.rew_input(value))
        else:
            x = self.rtg_embed(sp.rtg_input(value))
        return x + self.step_embed(step) + self.modality_embed(jnp.full(step.shape, modality))

    def trunk(self, x, key_valid=None, start=0, cache=None):
        return self.gpt(x, key_valid, start, cache)

    def head(self, modality: int, h, s_anchor=None, s_own=None, a_prev=None, a_own=None, anchor_valid=None):
        """Output of `modality`'s head.

        s_anchor: the neighbouring state in reading order (backward: the successor; forward: the
        state before), with `anchor_valid` (..., ) False where there is none (a forward window's
        first step at an episode start). The action head also needs `s_own` (its step's state)
        with continuous states, a forward model's state head `a_prev` (the action taken at
        s_anchor), the reward head `s_own` and `a_own`. The reward head returns (reward output,
        episode-end logit or None).
        """
        sp = self.spec
        if modality in (S, A):
            e = self._s(self.anchor_embed, s_anchor)
            if sp.obs_kind == "continuous":
                if modality == A:
                    e = e + self.step_delta_embed(sp.obs_to_delta(s_anchor, s_own))
                elif self.config.direction == "forward":
                    e = e + self._a(self.prev_action_embed, a_prev)
            if anchor_valid is not None:
                e = e * anchor_valid[..., None]
            h = h + nn.gelu((self.state_hidden if modality == S else self.action_hidden)(h + e))
        elif modality == R_:
            e = self._s(self.reward_state_embed, s_own) + self._a(self.reward_action_embed, a_own)
            if self.config.direction == "backward":
                e = e + self._s(self.reward_next_embed, s_anchor)
            f = nn.gelu(self.reward_hidden(h + e))
            f = h + self.reward_out(nn.gelu(self.reward_hidden2(f)))
            return self.heads[R_](f), (self.done_head(f)[..., 0] if self.predicts_ends else None)
        return self.heads[modality](h)

    # ---- incremental decoding ------------------------------------------------------
    def prefill(self, s, a, r, R, step, key_valid, cache, n_tokens: int):
        """Write the first n_tokens context tokens (steps of 4 tokens, left-padded) into the cache."""
        b, c = step.shape
        tokens = jnp.stack(
            [self.embed(S, s, step), self.embed(A, a, step), self.embed(R_, r, step), self.embed(G, R, step)],
            axis=2,
        ).reshape(b, 4 * c, -1)[:, :n_tokens]
        _, _, cache = self.trunk(tokens, key_valid, 0, cache)
        return cache

    def decode(self, modality_in: int, value, step, key_valid, start, cache, modality_out: int, s_anchor=None,
               s_own=None, a_prev=None, a_own=None, anchor_valid=None):
        """Feed one token at position `start`; return the next token's head output, the last
        layer's attention of this token's query (B, heads, T), and the updated cache."""
        x = self.embed(modality_in, value[:, None], step[:, None])
        h, attn, cache = self.trunk(x, key_valid, start, cache)
        out = self.head(modality_out, h[:, 0], s_anchor, s_own, a_prev, a_own, anchor_valid)
        return out, attn[:, :, 0], cache

    # ---- teacher forcing (Eq. 1 / Eq. 9) ------------------------------------------
    def __call__(self, s, a, r, R, mask, anchor=None, anchor_valid=None, done=None):
        """Per-step log-likelihood of a batch of windows (already in the model's reading order).

        s (B,K,obs), a (B,K[,act]), r (B,K), R (B,K), mask (B,K) True on real steps (a prefix).
        anchor (B,K,obs): each step's neighbouring state in reading order (backward: its
        successor, `next_observations` of its row, so a window's first step has one too;
        forward: the state of the row before), anchor_valid (B,K) False where there is none;
        default: the previous step in the window, none for step 0. done (B,K): the row is an
        episode's true end (used by a forward model that predicts ends).
        Returns log P per modality, (4, B, K), with the episode-end term added to the reward's;
        the state of step 0 has no token before it and gets log P = 0.
        """
        b, k = mask.shape
        step = jnp.broadcast_to(jnp.arange(k), (b, k))
        tokens = jnp.stack(
            [self.embed(S, s, step), self.embed(A, a, step), self.embed(R_, r, step), self.embed(G, R, step)],
            axis=2,
        ).reshape(b, 4 * k, -1)
        h, _, _ = self.trunk(tokens)
        h = h.reshape(b, k, 4, -1)
        if anchor is None:
            anchor = jnp.concatenate([s[:, :1], s[:, :-1]], axis=1)
            anchor_valid = jnp.broadcast_to(jnp.arange(k) > 0, (b, k))
        anchor_valid = anchor_valid.astype(jnp.float32)
        # token j is predicted from token j-1: s_t from R_{t-1}, a_t from s_t, r_t from a_t, R_t from r_t
        h_prev_R = jnp.concatenate([jnp.zeros_like(h[:, :1, 3]), h[:, :-1, 3]], axis=1)
        a_prev = jnp.concatenate([a[:, :1], a[:, :-1]], axis=1)  # step 0's state is not scored
        lp_s = log_prob(self.spec, S, self.head(S, h_prev_R, anchor, a_prev=a_prev, anchor_valid=anchor_valid),
                        s, anchor)
        lp_s = lp_s.at[:, 0].set(0.0)
        lp_a = log_prob(self.spec, A, self.head(A, h[:, :, 0], anchor, s, anchor_valid=anchor_valid), a)
        rew_out, done_logit = self.head(R_, h[:, :, 1], anchor, s, a_own=a)
        lp_r = log_prob(self.spec, R_, rew_out, r)
        if done_logit is not None and done is not None:
            d = done.astype(jnp.float32)
            lp_r = lp_r + d * jax.nn.log_sigmoid(done_logit) + (1 - d) * jax.nn.log_sigmoid(-done_logit)
        lp_R = log_prob(self.spec, G, self.head(G, h[:, :, 2]), R)
        return jnp.stack([lp_s, lp_a, lp_r, lp_R]) * mask[None]


# ---- output distributions ---------------------------------------------------------
def _gaussian_logp(out, z):
    mean, log_std = jnp.split(out, 2, axis=-1)
    log_std = jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)
    return jnp.sum(-0.5 * ((z - mean) / jnp.exp(log_std)) ** 2 - log_std - 0.5 * jnp.log(2 * jnp.pi), axis=-1)


def _gaussian_sample(out, key):
    mean, log_std = jnp.split(out, 2, axis=-1)
    log_std = jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)
    return mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)


def _categorical_logp(logits, idx):
    return jnp.take_along_axis(jax.nn.log_softmax(logits), idx[..., None], axis=-1)[..., 0]


def log_prob(spec: Spec, modality: int, out, value, s_anchor=None):
    """log P(value | head output) in the model's own parametrisation of that modality."""
    if modality == S:
        if spec.obs_kind == "discrete":
            return _categorical_logp(spec.cell_logits(out, s_anchor), spec.obs_to_index(value))
        return _gaussian_logp(out, spec.obs_to_delta(s_anchor, value))
    if modality == A:
        if spec.act_kind == "discrete":
            return _categorical_logp(out, value.astype(jnp.int32))
        return _gaussian_logp(out, spec.act_input(value))
    if modality == R_:
        if spec.rew_kind == "discrete":
            return _categorical_logp(out, spec.rew_to_index(value))
        return _gaussian_logp(out, ((value - spec.rew_mean) / spec.rew_std)[..., None])
    return _categorical_logp(out, spec.rtg_to_bin(value))


def sample(spec: Spec, modality: int, out, key, s_anchor=None):
    """Draw a value (in data units) from a head's output; returns (value, log P(value))."""
    if modality == S:
        if spec.obs_kind == "discrete":
            logits = spec.cell_logits(out, s_anchor)
            idx = jax.random.categorical(key, logits)
            return spec.index_to_obs(idx), _categorical_logp(logits, idx)
        z = _gaussian_sample(out, key)
        return spec.delta_to_obs(s_anchor, z), _gaussian_logp(out, z)
    if modality == A:
        if spec.act_kind == "discrete":
            idx = jax.random.categorical(key, out)
            return idx, _categorical_logp(out, idx)
        z = _gaussian_sample(out, key)
        return spec.act_from_normalized(z), _gaussian_logp(out, z)
    if modality == R_:
        if spec.rew_kind == "discrete":
            idx = jax.random.categorical(key, out)
            return spec.index_to_rew(idx), _categorical_logp(out, idx)
        z = _gaussian_sample(out, key)
        return z[..., 0] * spec.rew_std + spec.rew_mean, _gaussian_logp(out, z)
    idx = jax.random.categorical(key, out)
    return spec.bin_centres()[idx], _categorical_logp(out, idx)


def expected_reward(spec: Spec, out):
    """The reward head's mean, in data units: E[r] under its categorical or Gaussian output.

    Generation writes this rather than a draw (GenerationConfig.reward): a task's reward is
    almost always a function of the transition, and a draw adds the head's uncertainty as noise
    (on maze2d-medium-sparse a draw is wrong on a goal row as often as P(r = 1) falls short of 1).
    """
    if spec.rew_kind == "discrete":
        return jax.nn.softmax(out, axis=-1) @ jnp.asarray(spec.rew_values, jnp.float32)
    return out[..., 0] * spec.rew_std + spec.rew_mean
