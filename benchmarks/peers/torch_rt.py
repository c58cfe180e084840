"""RT's sequence model in plain PyTorch, the peer of `rtaug.generate.model.RTModel` in the
training benchmark.

A small pre-LayerNorm causal GPT of our own writing (fused q/k/v projection, PyTorch's
`scaled_dot_product_attention` with a causal mask, an MLP of width 4d with tanh-GELU, a final
LayerNorm), wrapped in the same embeddings and output heads as RTModel in its backward reading
(RT proper, paper Eq. 9): one token per modality (s, a, r, R) per step, each embedded by its
own layer plus a step-position and a modality embedding; the state and action heads with their
anchor (and, for continuous states, step-delta) embedding and hidden layer; the reward head's
two layers of width 4d; the categorical reward-to-go head. Continuous modalities are Gaussian
(state as a normalised difference to its anchor), discrete ones categorical (a discrete state
head scores displacements from the anchor, read out per cell), exactly as the JAX model does,
so that one update here is the same work: the negative summed log-likelihood of the window
over the number of real steps, AdamW after clipping the global gradient norm at 1.0, with the
warm-up-then-cosine learning rate.

Only torch and numpy are imported: this runs in the peer environment. The model is fed the
windows rtaug builds (`rtaug.generate.train.training_windows`) and the fitted `Spec` as a dict.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
LN_EPS = 1e-6  # flax.linen.LayerNorm's default (torch's is 1e-5)


def gelu(x):
    return F.gelu(x, approximate="tanh")  # flax.linen.gelu is the tanh approximation


# ----------------------------------------------------------------------------------- the trunk


class CausalSelfAttention(nn.Module):
    def __init__(self, d: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x):
        b, t, d = x.shape
        # (3, B, heads, t, head_dim)
        q, k, v = self.qkv(x).view(b, t, 3, self.n_head, d // self.n_head).permute(2, 0, 3, 1, 4).unbind(0)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class Layer(nn.Module):
    def __init__(self, d: int, n_head: int):
        super().__init__()
        self.norm_attn = nn.LayerNorm(d, eps=LN_EPS)
        self.attn = CausalSelfAttention(d, n_head)
        self.norm_mlp = nn.LayerNorm(d, eps=LN_EPS)
        self.up = nn.Linear(d, 4 * d)
        self.down = nn.Linear(4 * d, d)

    def forward(self, x):
        x = x + self.attn(self.norm_attn(x))
        return x + self.down(gelu(self.up(self.norm_mlp(x))))


class Trunk(nn.Module):
    def __init__(self, n_layer: int, d: int, n_head: int):
        super().__init__()
        self.layers = nn.ModuleList([Layer(d, n_head) for _ in range(n_layer)])
        self.norm_out = nn.LayerNorm(d, eps=LN_EPS)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return self.norm_out(x)


# ------------------------------------------------------------------------------- the RT model


def _const(values, dtype=torch.float32):
    return torch.as_tensor(np.asarray(values), dtype=dtype)


class TorchRT(nn.Module):
    """forward(s, a, r, R, mask, anchor, anchor_valid, done) -> the training loss of the batch."""

    def __init__(self, spec: dict, config: dict):
        super().__init__()
        if config.get("direction", "backward") != "backward":
            raise ValueError("the PyTorch peer implements RT's backward reading only")
        self.spec = spec
        d = int(config["d_model"])
        K = int(config["context_steps"])
        self.discrete_obs = spec["obs_kind"] == "discrete"
        self.discrete_act = spec["act_kind"] == "discrete"
        self.discrete_rew = spec["rew_kind"] == "discrete"
        obs_dim, act_dim = int(spec["obs_dim"]), int(spec["act_dim"])
        nvec = np.asarray(spec.get("obs_nvec") or [], np.int64)
        n_states = int(np.prod(nvec)) if self.discrete_obs else 0

        # constants of the Spec, as buffers (they follow the module, are never trained)
        self.register_buffer("obs_mean", _const(spec["obs_mean"]), persistent=False)
        self.register_buffer("obs_std", _const(spec["obs_std"]), persistent=False)
        self.register_buffer("delta_std", _const(spec["delta_std"]), persistent=False)
        if not self.discrete_act:
            self.register_buffer("act_mean", _const(spec["act_mean"]), persistent=False)
            self.register_buffer("act_std", _const(spec["act_std"]), persistent=False)
        if self.discrete_rew:
            self.register_buffer("rew_values", _const(spec["rew_values"]), persistent=False)
        self.rew_mean, self.rew_std = float(spec["rew_mean"]), float(spec["rew_std"])
        self.rtg_lo, self.rtg_hi, self.rtg_bins = float(spec["rtg_lo"]), float(spec["rtg_hi"]), int(spec["rtg_bins"])
        if self.discrete_obs:
            # row-major cell index of a state, and for each cell its displacement class from an anchor
            cell_strides = np.cumprod(np.concatenate([[1], nvec[::-1][:-1]]))[::-1].copy()
            cells = np.stack(np.unravel_index(np.arange(n_states), tuple(nvec)), axis=-1)
            widths = 2 * nvec - 1
            disp_strides = np.cumprod(np.concatenate([[1], widths[::-1][:-1]]))[::-1].copy()
            self.register_buffer("cell_strides", _const(cell_strides, torch.long), persistent=False)
            self.register_buffer("cells", _const(cells, torch.float32), persistent=False)
            self.register_buffer("disp_offset", _const(nvec - 1, torch.long), persistent=False)
            self.register_buffer("disp_strides", _const(disp_strides, torch.long), persistent=False)

        def state_in():
            return nn.Embedding(n_states, d) if self.discrete_obs else nn.Linear(obs_dim, d)

        def action_in():
            return nn.Embedding(int(spec["num_actions"]), d) if self.discrete_act else nn.Linear(act_dim, d)

        # token embeddings
        if self.discrete_obs:
            self.state_cell_embed = nn.Embedding(n_states, d)
        self.state_embed = nn.Linear(obs_dim, d)
        self.action_embed = action_in()
        self.reward_embed = nn.Linear(1, d)
        self.rtg_embed = nn.Linear(1, d)
        self.step_embed = nn.Embedding(K, d)
        self.modality_embed = nn.Embedding(4, d)
        self.trunk = Trunk(int(config["n_layer"]), d, int(config["n_head"]))
        # output heads
        n_disp = int(np.prod(2 * nvec - 1)) if self.discrete_obs else 0
        self.state_out = nn.Linear(d, n_disp if self.discrete_obs else 2 * obs_dim)
        self.action_out = nn.Linear(d, int(spec["num_actions"]) if self.discrete_act else 2 * act_dim)
        self.reward_head = nn.Linear(d, len(spec["rew_values"]) if self.discrete_rew else 2)
        self.rtg_out = nn.Linear(d, self.rtg_bins)
        self.anchor_embed = state_in()
        if not self.discrete_obs:
            self.step_delta_embed = nn.Linear(obs_dim, d)
        self.reward_state_embed = state_in()
        self.reward_action_embed = action_in()
        self.reward_next_embed = state_in()  # backward: the successor state, known before the step
        self.state_hidden = nn.Linear(d, d)
        self.action_hidden = nn.Linear(d, d)
        self.reward_hidden = nn.Linear(d, 4 * d)
        self.reward_hidden2 = nn.Linear(4 * d, 4 * d)
        self.reward_out = nn.Linear(4 * d, d)

    # ---- encodings of the Spec -------------------------------------------------------
    def obs_norm(self, s):
        return (s - self.obs_mean) / self.obs_std

    def cell(self, s):
        return (torch.round(s).long() * self.cell_strides).sum(-1)

    def state_feature(self, layer, s):
        return layer(self.cell(s) if self.discrete_obs else self.obs_norm(s))

    def action_feature(self, layer, a):
        return layer(a.long() if self.discrete_act else (a - self.act_mean) / self.act_std)

    # ---- log-likelihoods ------------------------------------------------------------
    @staticmethod
    def gaussian_logp(out, z):
        mean, log_std = out.chunk(2, dim=-1)
        log_std = log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
        return (-0.5 * ((z - mean) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    @staticmethod
    def categorical_logp(logits, idx):
        return F.log_softmax(logits, dim=-1).gather(-1, idx.unsqueeze(-1)).squeeze(-1)

    def forward(self, s, a, r, R, mask, anchor, anchor_valid, done=None):
        b, k = mask.shape
        step = torch.arange(k, device=mask.device)
        pos = self.step_embed(step)  # (K, d), broadcast over the batch
        mod = self.modality_embed.weight  # (4, d): modality m's embedding is row m
        e_s = self.state_embed(self.obs_norm(s))
        if self.discrete_obs:
            e_s = e_s + self.state_cell_embed(self.cell(s))
        e_a = self.action_feature(self.action_embed, a)
        e_r = self.reward_embed(((r - self.rew_mean) / self.rew_std).unsqueeze(-1))
        e_R = self.rtg_embed(((R - self.rtg_lo) / (self.rtg_hi - self.rtg_lo)).unsqueeze(-1))
        tokens = torch.stack([e_s, e_a, e_r, e_R], dim=2) + pos[:, None, :] + mod  # (B, K, 4, d)
        h = self.trunk(tokens.reshape(b, 4 * k, -1)).view(b, k, 4, -1)
        valid = anchor_valid.to(h.dtype).unsqueeze(-1)

        # token j is predicted from token j-1: s_t from R_{t-1}, a_t from s_t, r_t from a_t, R_t from r_t
        h_s = torch.cat([torch.zeros_like(h[:, :1, 3]), h[:, :-1, 3]], dim=1)
        e = self.state_feature(self.anchor_embed, anchor) * valid
        out_s = self.state_out(h_s + gelu(self.state_hidden(h_s + e)))
        if self.discrete_obs:
            disp = torch.round(self.cells - anchor.unsqueeze(-2)).long() + self.disp_offset  # (B, K, cells, dims)
            cell_logits = out_s.gather(-1, (disp * self.disp_strides).sum(-1))
            lp_s = self.categorical_logp(cell_logits, self.cell(s))
        else:
            lp_s = self.gaussian_logp(out_s, (s - anchor) / self.delta_std)
        lp_s = torch.cat([torch.zeros_like(lp_s[:, :1]), lp_s[:, 1:]], dim=1)  # step 0's state has no token before it

        h_a = h[:, :, 0]
        e = self.state_feature(self.anchor_embed, anchor)
        if not self.discrete_obs:
            e = e + self.step_delta_embed((s - anchor) / self.delta_std)
        out_a = self.action_out(h_a + gelu(self.action_hidden(h_a + e * valid)))
        lp_a = self.categorical_logp(out_a, a.long()) if self.discrete_act else \
            self.gaussian_logp(out_a, (a - self.act_mean) / self.act_std)

        h_r = h[:, :, 1]
        e = (self.state_feature(self.reward_state_embed, s) + self.action_feature(self.reward_action_embed, a)
             + self.state_feature(self.reward_next_embed, anchor))
        f = h_r + self.reward_out(gelu(self.reward_hidden2(gelu(self.reward_hidden(h_r + e)))))
        out_r = self.reward_head(f)
        if self.discrete_rew:
            lp_r = self.categorical_logp(out_r, (r.unsqueeze(-1) - self.rew_values).abs().argmin(-1))
        else:
            lp_r = self.gaussian_logp(out_r, ((r - self.rew_mean) / self.rew_std).unsqueeze(-1))

        u = (R - self.rtg_lo) / (self.rtg_hi - self.rtg_lo)
        bins = torch.floor(u * self.rtg_bins).clamp(0, self.rtg_bins - 1).long()
        lp_R = self.categorical_logp(self.rtg_out(h[:, :, 2]), bins)

        lp = (lp_s + lp_a + lp_r + lp_R) * mask.to(h.dtype)
        return -lp.sum() / mask.sum().clamp(min=1)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------- the JAX model's weights, here

_TRUNK_NAMES = {"ln1": "norm_attn", "ln2": "norm_mlp", "fc": "up", "fc_out": "down", "attn": "attn"}
_HEAD_NAMES = {"heads_0": "state_out", "heads_1": "action_out", "heads_2": "reward_head", "heads_3": "rtg_out"}


def _torch_name(flax_path: str) -> str:
    """'params/gpt/block1/attn/qkv/kernel' -> 'trunk.layers.1.attn.qkv.weight' (and so on)."""
    parts = flax_path.split("/")
    if parts[0] == "params":
        parts = parts[1:]
    *module, leaf = parts
    if module[0] == "gpt":
        if module[1] == "ln_f":
            module = ["trunk", "norm_out"]
        else:
            module = ["trunk", "layers", module[1].removeprefix("block")] + [_TRUNK_NAMES.get(m, m) for m in module[2:]]
    else:
        module = [_HEAD_NAMES.get(module[0], module[0])] + module[1:]
    return ".".join(module + ["bias" if leaf == "bias" else "weight"])


def load_flax_params(model: nn.Module, flat: dict) -> None:
    """Copy RTModel's parameters (flattened 'a/b/c' paths -> arrays) into `model`, every one of
    them exactly once: a Dense kernel (in, out) becomes a Linear weight (out, in)."""
    own = dict(model.named_parameters())
    seen = set()
    with torch.no_grad():
        for path, value in flat.items():
            name = _torch_name(path)
            if name not in own:
                raise KeyError(f"{path} -> {name}: no such parameter in the PyTorch model")
            value = torch.as_tensor(np.asarray(value, np.float32))
            if path.endswith("/kernel"):
                value = value.T
            if tuple(value.shape) != tuple(own[name].shape):
                raise ValueError(f"{path} {tuple(value.shape)} -> {name} {tuple(own[name].shape)}")
            own[name].copy_(value)
            seen.add(name)
    missing = sorted(set(own) - seen)
    if missing:
        raise KeyError(f"PyTorch parameters the JAX model has no counterpart of: {missing}")


def loss_check(spec: dict, config: dict, flat: dict, arrays: dict) -> dict:
    """The loss and global gradient norm of the first batch with the JAX model's weights."""
    model = TorchRT(spec, config)
    load_flax_params(model, flat)
    batch = to_batches({k: v[:1] for k, v in arrays.items()})[0]
    loss = model(*batch)
    loss.backward()
    grad_norm = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in model.parameters() if p.grad is not None))
    return {"loss": float(loss.detach()), "grad_norm": float(grad_norm), "params": n_params(model)}


# ------------------------------------------------------------------------------- the update


def warmup_cosine(peak_lr: float, warmup: int, total: int, end_fraction: float = 0.1):
    """The learning rate factor of optax.warmup_cosine_decay_schedule(0, lr, warmup, total, lr/10)."""
    total = max(total, 2)
    warmup = max(1, min(warmup, total // 2))

    def factor(step: int) -> float:
        if step < warmup:
            return step / warmup
        t = min(step - warmup, total - warmup) / (total - warmup)
        return end_fraction + (1 - end_fraction) * 0.5 * (1 + math.cos(math.pi * t))

    return factor


def make_optimizer(model, lr, weight_decay, warmup, total):
    try:  # the fused CPU AdamW kernel where this torch has it, else the multi-tensor one
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, fused=True)
        kind = "AdamW(fused=True)"
    except (RuntimeError, TypeError, ValueError):
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, foreach=True)
        kind = "AdamW(foreach=True)"
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(lr, warmup, total))
    return opt, sched, kind


def to_batches(arrays: dict) -> list:
    """npz of windows stacked (chunk, B, ...) in the order of rtaug's `training_windows` -> list of tuples."""
    names = ("s", "a", "r", "R", "mask", "anchor", "anchor_valid", "done")
    chunk = arrays["s"].shape[0]
    out = []
    for i in range(chunk):
        t = []
        for n in names:
            x = np.asarray(arrays[n][i])
            t.append(torch.from_numpy(x.astype(np.float32) if x.dtype.kind in "iuf" else x.astype(bool)).contiguous())
        out.append(tuple(t))
    return out


def _time_chunks(step, batches, repeats: int) -> dict:
    for b in batches:  # warm-up: one chunk
        step(b)
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        for b in batches:
            loss = step(b)
        float(loss)
        rates.append(len(batches) / (time.perf_counter() - t))
    return {"updates_per_s": max(rates), "median_updates_per_s": float(np.median(rates)), "chunks": len(rates)}


def bench_torch_rt(spec: dict, config: dict, arrays: dict, repeats: int, compile_: bool = True,
                   warmup_steps: int = 100, total_steps: int = 10_000) -> dict:
    """Updates/s of one training step (forward, backward, clip, AdamW, schedule), eager and
    under torch.compile; like `rt_throughput.bench_training`: the best of `repeats` timed
    passes over the same `chunk` batches, after one untimed pass."""
    torch.manual_seed(0)
    batches = to_batches(arrays)
    result = {"torch": torch.__version__, "threads": torch.get_num_threads(),
              "attention": "F.scaled_dot_product_attention(is_causal=True)",
              "chunk": len(batches), "repeats": repeats}

    def build():
        model = TorchRT(spec, config)
        opt, sched, kind = make_optimizer(model, float(config["lr"]), float(config["weight_decay"]),
                                          warmup_steps, total_steps)
        return model, opt, sched, kind

    def stepper(model, loss_fn, opt, sched):
        params = list(model.parameters())

        def step(batch):
            loss = loss_fn(*batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, float(config["grad_clip"]))
            opt.step()
            sched.step()
            return loss.detach()

        return step

    model, opt, sched, kind = build()
    result["params"] = n_params(model)
    result["optimizer"] = kind
    result["loss_at_init"] = float(model(*batches[0]).detach())
    try:
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            model(*batches[0]).backward()
        opt.zero_grad(set_to_none=True)
        result["matmul_gflop_per_update"] = counter.get_total_flops() / 1e9  # matmuls/attention only
    except Exception as e:  # noqa: BLE001  (a count is a detail; never fail the timing for it)
        result["matmul_gflop_per_update"] = None
        result["flop_count_error"] = f"{type(e).__name__}: {e}"
    result["eager"] = _time_chunks(stepper(model, model, opt, sched), batches, repeats)

    if compile_:
        try:
            model, opt, sched, _ = build()
            compiled = torch.compile(model)
            t = time.perf_counter()
            step = stepper(model, compiled, opt, sched)
            step(batches[0])  # compiles forward and backward
            result["compile_seconds"] = time.perf_counter() - t
            result["compile"] = _time_chunks(step, batches, repeats)
        except Exception as e:  # noqa: BLE001  (inductor may be unavailable or fail on this CPU)
            msg = f"{type(e).__name__}: {e}".strip().splitlines()
            result["compile"] = {"error": " ".join(msg[:3])[:500]}
    else:
        result["compile"] = {"error": "skipped (--no-compile)"}
    return result
