"""benchmarks/peers/learning_curve.py refuses bad input in one line, exit 2, before it imports the
peer learner (so these run without the peer environment) and before writing anything."""

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "learning_curve", Path(__file__).resolve().parents[1] / "benchmarks" / "peers" / "learning_curve.py")
learning_curve = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(learning_curve)


@pytest.mark.parametrize("extra, message", [
    (["--steps", "0"], "--steps must be >= 1, got 0"),
    (["--eval-every", "-5"], "--eval-every must be >= 1, got -5"),
    (["--data-missing"], "{tmp}/none.hdf5: no such file"),
    (["--json", "{tmp}"], "--json {tmp}: is a directory"),
    (["--json", "{tmp}/d.hdf5"], "--json {tmp}/d.hdf5: is the dataset; the curve would be written onto its input"),
    (["--task", "walker3d-medium"], "--task walker3d-medium: "),
    (["--algo", "dt"], "argument --algo: invalid choice: 'dt'"),
])
def test_bad_input_is_refused_in_one_line(extra, message, tmp_path, capsys):
    data = tmp_path / "d.hdf5"
    data.write_bytes(b"the input, left as it was")
    argv = {"data": str(data), "--task": "walker2d-medium", "--algo": "td3bc", "--json": str(tmp_path / "c.json")}
    if extra == ["--data-missing"]:
        argv["data"], extra = str(tmp_path / "none.hdf5"), []
    for flag, value in zip(extra[::2], extra[1::2]):
        argv[flag] = value.replace("{tmp}", str(tmp_path))
    args = [argv.pop("data")] + [x for kv in argv.items() for x in kv]
    with pytest.raises(SystemExit) as exit_:
        learning_curve.main(args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("learning_curve.py: error: ") and message.replace("{tmp}", str(tmp_path)) in err
    assert data.read_bytes() == b"the input, left as it was" and not (tmp_path / "c.json").exists()
