"""A small end-to-end run of the quickstart: every stage, the table and the figure."""

import json

import pytest

from rtaug.collect.dqn import DQNConfig
from rtaug.experiments.quickstart import GENERATORS, QuickstartConfig, run_quickstart
from rtaug.generate.baselines import BackwardMLPConfig
from rtaug.generate.dynamics import DynamicsConfig
from rtaug.generate.generation import GenerationConfig
from rtaug.generate.model import RTConfig
from rtaug.generate.train import VAEConfig

pytestmark = pytest.mark.slow  # every stage of the quickstart: outside the fast subset (-m "not slow")


def test_quickstart_smoke(tmp_path):
    cfg = QuickstartConfig(
        trajectories=6,
        dqn=DQNConfig(total_steps=1500),
        rt=RTConfig(context_steps=8, n_layer=1, n_head=2, d_model=16, batch_size=16, steps=20, rtg_bins=8),
        vae=VAEConfig(steps=20, hidden=(16,), latent_dim=2),
        mlp=BackwardMLPConfig(steps=20, hidden=(16,)),
        dynamics=DynamicsConfig(members=2, steps=20, hidden=(16,)),
        generation=GenerationConfig(max_length=4, candidates=2, alpha_trajectories=20),
    )
    lines = []
    rows = run_quickstart(cfg, out=tmp_path, progress=False, log=lines.append)
    table = json.loads((tmp_path / "table.json").read_text())
    assert [r["generator"] for r in table] == list(GENERATORS)
    for r in table:
        assert {"generator", "transitions", "invalid_rate", "wall_crossings", "mean_length", "mean_return"} <= set(r)
        assert 0.0 <= r["invalid_rate"] <= 1.0
    random_row = table[0]
    assert random_row["invalid_rate"] == 0.0 and random_row["wall_crossings"] == 0  # the true dynamics
    assert table == json.loads(json.dumps(rows))
    png = (tmp_path / "fig4.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert any("invalid %" in line and "truncated %" in line for line in lines)
    for r in table[1:]:  # generated rows say how many trajectories Γ truncated
        assert 0.0 <= r["truncated_rate"] <= 1.0
    # the data and models behind the table are kept, loadable
    from rtaug.data.hdf5 import load_hdf5
    from rtaug.generate.io import load_generator

    assert len(load_hdf5(tmp_path / "boxball.hdf5")) == 1500
    from rtaug.generate.dynamics import load_dynamics

    rt, vae, mlp = load_generator(tmp_path / "models" / "rt")
    assert rt.config.direction == "backward" and mlp is not None
    assert load_dynamics(tmp_path / "models" / "rt", rt.spec) is not None
    ft, _, no_mlp = load_generator(tmp_path / "models" / "ft")
    assert ft.config.direction == "forward" and no_mlp is None
