"""d3rlpy 2.8.1 (PyTorch) at the settings rtaug's learners are timed with: the peer side of the
learner benchmarks.

Runs in the peer environment (torch + d3rlpy, no jax, no rtaug), so it imports neither; the
data reaches it as plain arrays. The configurations are those of rtaug's defaults at the D4RL
network sizes, batch 256, as `benchmarks/throughput.py` times rtaug's side (which takes
`timed` from here: one timing rule for both sides).
"""

from __future__ import annotations

import time

import numpy as np

ALGOS = ("bc", "td3bc", "iql", "cql", "bcq")
BATCH = 256


def timed(fn, seconds: float, min_reps: int = 3) -> float:
    """Median seconds per call of `fn` over at least `min_reps` calls and about `seconds` total."""
    times = []
    start = time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start < seconds:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def quiet_d3rlpy():
    """d3rlpy logs every dataset build through structlog at info level; keep warnings only."""
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def d3rlpy_algo(name: str, batch_size: int = BATCH):
    import d3rlpy
    from d3rlpy.models.encoders import VectorEncoderFactory

    def enc(*hidden):
        return VectorEncoderFactory(hidden_units=list(hidden))

    if name == "bc":
        cfg = d3rlpy.algos.BCConfig(batch_size=batch_size, learning_rate=3e-4, policy_type="deterministic",
                                    encoder_factory=enc(256, 256))
    elif name == "td3bc":
        cfg = d3rlpy.algos.TD3PlusBCConfig(batch_size=batch_size, actor_encoder_factory=enc(256, 256),
                                           critic_encoder_factory=enc(256, 256), alpha=2.5,
                                           update_actor_interval=2)
    elif name == "iql":
        cfg = d3rlpy.algos.IQLConfig(batch_size=batch_size, actor_encoder_factory=enc(256, 256),
                                     critic_encoder_factory=enc(256, 256), value_encoder_factory=enc(256, 256),
                                     expectile=0.7, weight_temp=3.0, max_weight=100.0)
    elif name == "cql":
        # Fixed α = 5 (alpha_learning_rate 0), 10 sampled actions, 256-256-256 networks: rtaug's defaults.
        cfg = d3rlpy.algos.CQLConfig(batch_size=batch_size, actor_encoder_factory=enc(256, 256, 256),
                                     critic_encoder_factory=enc(256, 256, 256), conservative_weight=5.0,
                                     alpha_learning_rate=0.0, n_action_samples=10, actor_learning_rate=1e-4,
                                     critic_learning_rate=3e-4)
    elif name == "bcq":
        cfg = d3rlpy.algos.BCQConfig(batch_size=batch_size, actor_encoder_factory=enc(400, 300),
                                     critic_encoder_factory=enc(400, 300), imitator_encoder_factory=enc(750, 750),
                                     n_action_samples=10, lam=0.75, action_flexibility=0.05)
    else:
        raise ValueError(f"unknown learner {name!r}; known: {', '.join(ALGOS)}")
    return cfg.create(device="cpu:0")


def mdp_dataset(data):
    """A d3rlpy MDPDataset from arrays (attributes or keys observations, actions, rewards,
    terminals, timeouts)."""
    import d3rlpy

    get = (lambda k: data[k]) if isinstance(data, dict) else (lambda k: getattr(data, k))
    return d3rlpy.dataset.MDPDataset(
        observations=np.asarray(get("observations")), actions=np.asarray(get("actions")),
        rewards=np.asarray(get("rewards"))[:, None], terminals=np.asarray(get("terminals")).astype(np.float32),
        timeouts=np.asarray(get("timeouts")).astype(np.float32), action_space=d3rlpy.ActionSpace.CONTINUOUS)


def bench_d3rlpy(name: str, data, seconds: float, n_batches: int = 32, batch_size: int = BATCH) -> dict:
    """Updates/s of d3rlpy's `algo.update(batch)` (what its `fit` loop calls per step), on
    batches sampled from its replay buffer beforehand (their sampling is not timed, in its
    favour), after 10 warm-up updates; median over chunks of 10 updates."""
    dataset = mdp_dataset(data)
    algo = d3rlpy_algo(name, batch_size)
    algo.build_with_dataset(dataset)
    batches = [dataset.sample_transition_batch(batch_size) for _ in range(n_batches)]
    for b in batches[:10]:  # warm-up
        algo.update(b)
    it = {"i": 0}
    reps = 10

    def some_updates():
        for _ in range(reps):
            algo.update(batches[it["i"] % n_batches])
            it["i"] += 1

    sec = timed(some_updates, seconds)
    return {"updates_per_s": reps / sec}


def check_all(algos=ALGOS) -> dict:
    """Create every learner on a tiny dataset and run two updates: the peer environment works."""
    rng = np.random.default_rng(0)
    n, obs_dim, act_dim = 600, 3, 2
    timeouts = np.zeros(n, bool)
    timeouts[99::100] = True
    data = {"observations": rng.normal(size=(n, obs_dim)).astype(np.float32),
            "actions": rng.uniform(-1, 1, (n, act_dim)).astype(np.float32),
            "rewards": rng.normal(size=n).astype(np.float32), "terminals": np.zeros(n, bool), "timeouts": timeouts}
    dataset = mdp_dataset(data)
    out = {}
    for name in algos:
        algo = d3rlpy_algo(name, batch_size=16)
        algo.build_with_dataset(dataset)
        for _ in range(2):
            metrics = algo.update(dataset.sample_transition_batch(16))
        out[name] = sorted(metrics)
    return out
