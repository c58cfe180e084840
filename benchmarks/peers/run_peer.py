"""The peer side of `benchmarks/compare.py`, run by the peer environment's python (torch +
d3rlpy; no jax, no rtaug).

    PEER_PYTHON benchmarks/peers/run_peer.py --check     # versions, and every d3rlpy learner
                                                          # created and updated on tiny data
    PEER_PYTHON benchmarks/peers/run_peer.py --serve     # what compare.py starts

With --serve it reads one JSON request per line on standard input and answers each with one
JSON line on standard output, then waits for the next: compare.py keeps this one process (torch
and d3rlpy imported once) and asks it for one timing at a time, so it is idle, blocked on its
input, whenever rtaug is being timed. Anything printed by the libraries goes to standard error.

Requests: {"cmd": "versions"}, {"cmd": "check"}, {"cmd": "d3rlpy", "algo", "data" (an .npz of
observations, actions, rewards, terminals, timeouts), "seconds"}, {"cmd": "torch_rt", "spec",
"config", "batches" (an .npz of windows), "repeats", "compile"}, {"cmd": "params", "spec", "config"},
{"cmd": "loss_check", "spec", "config", "batches", "params" (an .npz of the JAX model's
parameters by path)}, {"cmd": "quit"}. An answer is
{"ok": true, "result": ...} or {"ok": false, "error": "..."}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _setup_torch():
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    return torch


def versions() -> dict:
    from importlib import metadata

    torch = _setup_torch()
    out = {"python": sys.version.split()[0], "platform": platform.platform(), "executable": sys.executable,
           "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
           "torch_interop_threads": torch.get_num_interop_threads(), "cpu_count": os.cpu_count()}
    for pkg in ("d3rlpy", "gymnasium", "gym", "numpy", "scikit-learn", "h5py", "minari", "gymnasium-robotics",
                "mujoco"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    import d3rlpy  # noqa: F401  (the import itself is part of the check)

    return out


def handle(req: dict):
    cmd = req.get("cmd")
    if cmd == "versions":
        return versions()
    if cmd == "check":
        import d3rlpy_side

        d3rlpy_side.quiet_d3rlpy()
        return {"versions": versions(), "updated": d3rlpy_side.check_all(req.get("algos") or d3rlpy_side.ALGOS)}
    if cmd == "d3rlpy":
        import numpy as np

        import d3rlpy_side

        d3rlpy_side.quiet_d3rlpy()
        with np.load(req["data"]) as z:
            data = {k: z[k] for k in z.files}
        return d3rlpy_side.bench_d3rlpy(req["algo"], data, float(req["seconds"]))
    if cmd == "torch_rt":
        import numpy as np

        import torch_rt

        with np.load(req["batches"]) as z:
            arrays = {k: z[k] for k in z.files}
        return torch_rt.bench_torch_rt(req["spec"], req["config"], arrays, int(req["repeats"]),
                                       bool(req.get("compile", True)), int(req.get("warmup_steps", 100)),
                                       int(req.get("total_steps", 10_000)))
    if cmd == "loss_check":
        import numpy as np

        import torch_rt

        with np.load(req["batches"]) as z:
            arrays = {k: z[k] for k in z.files}
        with np.load(req["params"]) as z:
            flat = {k: z[k] for k in z.files}
        return torch_rt.loss_check(req["spec"], req["config"], flat, arrays)
    if cmd == "params":
        import torch_rt

        return {"params": torch_rt.n_params(torch_rt.TorchRT(req["spec"], req["config"]))}
    raise ValueError(f"unknown request {cmd!r}")


def _answers():
    """The real standard output, for answers only; all else printed in this process (by the
    libraries too, C code included) goes to standard error from here on."""
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return answers


def serve(answers) -> int:
    _setup_torch()
    answers.write(json.dumps({"ok": True, "result": "ready"}) + "\n")
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
            if req.get("cmd") == "quit":
                break
            ans = {"ok": True, "result": handle(req)}
        except Exception as e:  # noqa: BLE001  (reported to compare.py, which goes on)
            traceback.print_exc()
            ans = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        answers.write(json.dumps(ans) + "\n")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--serve", action="store_true", help="answer JSON requests on stdin (compare.py)")
    mode.add_argument("--check", action="store_true", help="print versions; create and update each d3rlpy learner")
    mode.add_argument("--versions", action="store_true", help="print versions as JSON")
    args = ap.parse_args(argv)
    answers = _answers()
    if args.serve:
        return serve(answers)
    answers.write(json.dumps(handle({"cmd": "check" if args.check else "versions"})) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
