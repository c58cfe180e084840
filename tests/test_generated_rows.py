"""benchmarks/generated_rows.py: where an augmented file's generated states lie against its real ones."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from rtaug.data import Dataset, save_hdf5

_SPEC = importlib.util.spec_from_file_location(
    "generated_rows", Path(__file__).resolve().parents[1] / "benchmarks" / "generated_rows.py")
generated_rows = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(generated_rows)


def _file(path, generated: bool):
    """Real states on a grid of spacing 2 (nearest other real state: 2 away); generated states
    0.5 off a real one (nearest real state: 0.5); real actions inside the box, generated at its edge."""
    grid = np.stack(np.meshgrid(np.arange(10.0) * 2, np.arange(10.0) * 2), -1).reshape(-1, 2)
    n = len(grid)
    obs = np.concatenate([grid, grid[:20] + [0.5, 0.0]]) if generated else grid
    m = len(obs)
    actions = np.concatenate([np.full((n, 2), 0.5), np.full((m - n, 2), 1.0)])
    save_hdf5(Dataset(observations=obs, actions=actions, rewards=np.zeros(m), terminals=np.zeros(m, bool),
                      timeouts=np.ones(m, bool), next_observations=obs,
                      generated=np.arange(m) >= n if generated else None), path)
    return path


def test_distances_and_saturated_actions(tmp_path):
    out = generated_rows.describe(_file(tmp_path / "aug.hdf5", True), samples=50)
    assert out["real_states"] == 100 and out["generated_rows"] == 20
    assert out["real_to_nearest_other_real"]["median"] == pytest.approx(2.0)
    assert out["generated_to_nearest_real"] == pytest.approx({"median": 0.5, "mean": 0.5, "p90": 0.5})
    assert out["saturated_action_share"]["real"] == 0.0 and out["saturated_action_share"]["generated"] == 1.0
    assert generated_rows.main([str(tmp_path / "aug.hdf5"), "--json", str(tmp_path / "o.json")]) == 0
    assert json.loads((tmp_path / "o.json").read_text())["generated_rows"] == 20


def test_bad_input_is_refused_with_one_line(tmp_path, capsys):
    plain = _file(tmp_path / "plain.hdf5", False)
    before = plain.read_bytes()
    assert generated_rows.main([str(plain)]) == 2
    assert "plain.hdf5: key 'generated': the file marks no generated rows" in capsys.readouterr().err
    assert plain.read_bytes() == before
    assert generated_rows.main([str(tmp_path / "missing.hdf5")]) == 2
    assert "missing.hdf5" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        generated_rows.main([str(plain), "--samples", "0"])
    assert exit_.value.code == 2 and "--samples: must be at least 1, got 0" in capsys.readouterr().err
