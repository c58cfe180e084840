"""rtaug next to its peers on this CPU, in one run, one thing timed at a time.

    python benchmarks/compare.py [--json OUT] [--quick] [--parts learners rt_training generation]
                                 [--algos bc td3bc iql cql bcq] [--seconds 10] [--no-compile]
                                 [--peer-env DIR] [--rebuild-peers] [--setup-only]

The peers run in an environment of their own, which this command creates the first time (and
reuses after, when it still imports; --rebuild-peers makes it anew): a venv at --peer-env
(default ~/.cache/rtaug/bench-peers, or $XDG_CACHE_HOME/rtaug/bench-peers) with
torch==2.13.0 installed first (the CPU build), then d3rlpy==2.8.1 with --no-deps and its other
requirements, gymnasium left unpinned (d3rlpy pins gymnasium==1.0.0, which the main environment
does not have to share), then minari, gymnasium-robotics and mujoco at rtaug's own pins (for
docs/interop.md: d3rlpy.datasets.get_minari on rtaug's Minari exports, whose env it recovers with
rtaug's source on PYTHONPATH; a reused environment without them gets them). jax and rtaug are never
installed there, d3rlpy never here. One
process of that environment (benchmarks/peers/run_peer.py) is started and asked for one timing
at a time; it waits, idle, while rtaug is timed, and rtaug waits while it is.

What is timed (all cores on both sides; each side after its compile / warm-up):

  learners      every rtaug learner (JAX) vs d3rlpy's (PyTorch), batch 256, D4RL network sizes,
                100k synthetic halfcheetah-shaped transitions (obs 17, act 6): rtaug as its
                trainer runs (`benchmarks/throughput.py`: bench_rtaug), d3rlpy through
                `algo.update(batch)` on pre-sampled batches (benchmarks/peers/d3rlpy_side.py).
  rt_training   RT's sequence model (`benchmarks/rt_throughput.py`: bench_training) vs the same
                model written in PyTorch (benchmarks/peers/torch_rt.py: same parameters, heads
                and loss, AdamW with clipping and warm-up), eager and under torch.compile, on
                the very same batches of windows: forward, backward and optimizer step per
                update, the best of several passes over a chunk of batches on both sides.
                `default`: 3 layers, d 128, 4 heads, K 20, batch 64 on continuous data (obs 4,
                act 2, Gaussian reward); `quickstart`: 2 layers, d 64, K 16, batch 32 on BoxBall
                (collected by DQN first; discrete states, actions and rewards), the heads of
                that case on both sides. Before timing, the PyTorch model is checked to be the
                same model: the same parameter count and, loaded with the JAX model's weights,
                the same loss and gradient norm on the same batch (else: no ratio, an error).
  generation    RT's sampled rollout at the default size (bench_generation); rtaug only.

GFLOP per update is XLA's cost analysis of the compiled update (rtaug's), and peak_fraction is
the FLOP/s so achieved over the float32 matmul peak (benchmarks/peak.py), measured in this run:
at the start and again after each part (the highest of them is the peak). If any of those falls
more than 20% below the start, the machine was shared during the run and every ratio is
reported as null, with the reason. The load average is recorded before and after. Ratios are
rtaug / peer (above 1: rtaug faster); torch_updates_per_s is the faster of eager and compiled.

--quick: 1 s per learner measurement, 2 passes over 5 batches for RT training, 64 rollouts for
generation, smaller data and matmuls; torch.compile is still tried (on 2 cores it takes minutes;
--no-compile skips it). Its figures are a smoke test, not measurements.

--json OUT writes everything (atomically) as JSON: learners.<name>.{rtaug_updates_per_s,
peer_updates_per_s, ratio, gflop_per_update, peak_fraction} (with --matmul, for cql and bcq also
learners.<name>.matmul.{mode, rtaug_updates_per_s, ratio, peak_fraction}), rt_training.{default,quickstart}.
{updates_per_s, peak_fraction, torch_updates_per_s, ratio, ...} (with --matmul, also
rt_training.<case>.matmul.{mode, updates_per_s, peak_fraction, ratio}), generation.default.steps_per_s
(and generation.default.matmul.{mode, steps_per_s}),
matmul peaks, load averages, versions of both environments. Exit status: 0, 1 if a measurement
failed (recorded in the JSON), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEERS = HERE / "peers"
ALGOS = ("bc", "td3bc", "iql", "cql", "bcq")
PARTS = ("learners", "rt_training", "generation")
TORCH_PIN = "torch==2.13.0"
D3RLPY_PIN = "d3rlpy==2.8.1"
UNPINNED = {"gymnasium"}  # d3rlpy's pins on these are dropped
INTEROP = ("minari", "gymnasium-robotics", "mujoco")  # at rtaug's pins (pyproject.toml): docs/interop.md
MAX_PEAK_DROP = 0.20
SAME_TOLERANCE = 1e-3  # relative: loss and gradient norm of the two RT models on the same weights and batch
MARKER = "rtaug-peers.json"
SETTLE_S = 0.5  # pause between the two sides, for spinning worker threads to go to sleep


def default_peer_env() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "rtaug" / "bench-peers"


# ---------------------------------------------------------------------------------- arguments


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2
        sys.stderr.write(f"compare.py: error: {message} (see --help)\n")
        sys.exit(2)


def parse_args(argv):
    ap = _Parser(prog="compare.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", metavar="OUT", help="write the results as JSON to OUT (temporary file, then rename)")
    ap.add_argument("--parts", nargs="+", choices=PARTS, metavar="PART", default=list(PARTS),
                    help=f"what to time, of {', '.join(PARTS)} (default: all)")
    ap.add_argument("--algos", nargs="+", choices=ALGOS, metavar="ALGO", default=list(ALGOS),
                    help=f"learners to time, of {', '.join(ALGOS)} (default: all)")
    ap.add_argument("--seconds", type=float, default=None,
                    help="timed seconds per learner measurement (default 10, 1 with --quick); RT training "
                         "times max(3, seconds/3) passes over its chunk of 20 updates")
    ap.add_argument("--quick", action="store_true",
                    help="every part briefly, on smaller data: a smoke test, not a measurement")
    ap.add_argument("--matmul", choices=("xla", "onednn", "onednn-bf16"), default="xla",
                    help="also time the learners that have a `matmul` field (cql, bcq), RT training and generation "
                         "with this mode, e.g. onednn-bf16 (AMX; rtaug.nets.onednn), beside their default "
                         "(default: xla, the default only)"),
    ap.add_argument("--no-compile", action="store_true", help="do not try torch.compile")
    ap.add_argument("--peer-env", metavar="DIR", default=None,
                    help=f"the peers' environment (default {default_peer_env()})")
    ap.add_argument("--rebuild-peers", action="store_true", help="delete and recreate the peers' environment")
    ap.add_argument("--setup-only", action="store_true", help="create or check the peers' environment, time nothing")
    args = ap.parse_args(argv)
    if args.seconds is None:
        args.seconds = 1.0 if args.quick else 10.0
    if not (math.isfinite(args.seconds) and args.seconds > 0):
        ap.error(f"--seconds must be a positive number, got {args.seconds}")
    args.parts = [p for p in PARTS if p in args.parts]  # fixed order, no repeats
    args.algos = [a for a in ALGOS if a in args.algos]
    args.peer_env = Path(args.peer_env).expanduser().resolve() if args.peer_env else default_peer_env()
    if args.json and Path(args.json).is_dir():
        ap.error(f"--json {args.json} is a directory; give a file name")
    if args.peer_env.exists() and not args.peer_env.is_dir():
        ap.error(f"--peer-env {args.peer_env} exists and is not a directory")
    return args


# ------------------------------------------------------------------------ the peer environment


class PeerError(RuntimeError):
    pass


def _clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def peer_python(env_dir: Path) -> Path:
    return env_dir / "bin" / "python"


def _peer_json(py: Path, *args, timeout=900) -> dict:
    """Run run_peer.py with args; its last stdout line is JSON."""
    p = subprocess.run([str(py), str(PEERS / "run_peer.py"), *args], check=False, capture_output=True,
                       text=True, timeout=timeout, env=_clean_env())
    if p.returncode != 0:
        tail = " | ".join(p.stderr.strip().splitlines()[-3:])
        raise PeerError(f"{py} run_peer.py {' '.join(args)} failed (exit {p.returncode}): {tail}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def _wanted(info: dict) -> str | None:
    """Why this environment is not the wanted one, or None."""
    want_torch, want_d3 = TORCH_PIN.split("==")[1], D3RLPY_PIN.split("==")[1]
    if str(info.get("torch", "")).split("+")[0] != want_torch:
        return f"torch {info.get('torch')} is not {want_torch}"
    if info.get("d3rlpy") != want_d3:
        return f"d3rlpy {info.get('d3rlpy')} is not {want_d3}"
    return None


def _name(requirement: str) -> str:
    """The package a requirement string is about ("minari[hdf5]==0.5.4" -> "minari")."""
    import re

    return re.split(r"[\s<>=!~\[(;]", requirement.strip(), maxsplit=1)[0]


def interop_pins() -> list[str]:
    """rtaug's requirements (pyproject.toml) on the INTEROP packages, as pinned there."""
    import tomllib

    deps = tomllib.loads((HERE.parent / "pyproject.toml").read_text())["project"]["dependencies"]
    return [d for d in deps if _name(d).lower() in INTEROP]


def _interop_missing(info: dict) -> list[str]:
    """The INTEROP pins the environment (its `versions`) does not meet."""
    return [pin for pin in interop_pins() if info.get(_name(pin)) != pin.rpartition("==")[2]]


def _dependencies(requires: list[str]) -> list[str]:
    """d3rlpy's requirements, its pin on gymnasium dropped, torch pinned to ours, extras left out."""
    out = [TORCH_PIN]
    for req in requires:
        spec, _, marker = req.partition(";")
        if "extra" in marker:
            continue
        name = _name(spec)
        if name.lower() == "torch":
            continue
        if name.lower() in UNPINNED:
            out.append(name)
        else:
            out.append(spec.replace(" ", "") + (f"; {marker.strip()}" if marker.strip() else ""))
    return out


def build_peer_env(env_dir: Path) -> dict:
    if env_dir.exists() and any(env_dir.iterdir()):
        if not (env_dir / "pyvenv.cfg").exists():
            raise PeerError(f"{env_dir} is not empty and not a virtual environment; refusing to replace it")
        shutil.rmtree(env_dir)
    env_dir.parent.mkdir(parents=True, exist_ok=True)
    log_path = env_dir.parent / f"{env_dir.name}-build.log"
    commands = []
    py = peer_python(env_dir)
    with open(log_path, "w") as log:
        def run(cmd):
            cmd = [str(c) for c in cmd]
            commands.append(shlex.join(cmd))
            print("  $ " + shlex.join(cmd), flush=True)
            log.write("$ " + shlex.join(cmd) + "\n")
            log.flush()
            if subprocess.run(cmd, check=False, stdout=log, stderr=subprocess.STDOUT, env=_clean_env()).returncode != 0:
                raise PeerError(f"`{' '.join(cmd)}` failed; see {log_path}")

        print(f"building the peers' environment in {env_dir} (log: {log_path})", flush=True)
        run([sys.executable, "-m", "venv", env_dir])
        run([py, "-m", "pip", "install", TORCH_PIN])
        run([py, "-m", "pip", "install", "--no-deps", D3RLPY_PIN])
        requires = json.loads(subprocess.check_output(
            [str(py), "-c", "import importlib.metadata as m, json; print(json.dumps(m.requires('d3rlpy') or []))"],
            env=_clean_env(), text=True))
        run([py, "-m", "pip", "install", *_dependencies(requires)])
        run([py, "-m", "pip", "install", *interop_pins()])
    check = _peer_json(py, "--check")
    info = check["versions"]
    reason = _wanted(info)
    if reason:
        raise PeerError(f"the new peers' environment is not as wanted: {reason}")
    freeze = subprocess.run([str(py), "-m", "pip", "freeze"], check=False, capture_output=True, text=True,
                            env=_clean_env())
    record = {"built": datetime.now(timezone.utc).isoformat(timespec="seconds"), "commands": commands,
              "versions": info, "d3rlpy_requires": requires, "checked_learners": sorted(check["updated"]),
              "pip_freeze": freeze.stdout.split()}
    (env_dir / MARKER).write_text(json.dumps(record, indent=2))
    print(f"  checked: every d3rlpy learner ({', '.join(sorted(check['updated']))}) created and updated", flush=True)
    return record


def ensure_peer_env(env_dir: Path, rebuild: bool) -> tuple[Path, dict]:
    """The peers' python and what is known of its environment, building it if needed."""
    py = peer_python(env_dir)
    if not rebuild and py.exists():
        try:
            info = _peer_json(py, "--versions", timeout=300)
            reason = _wanted(info)
        except (PeerError, subprocess.TimeoutExpired, ValueError) as e:
            info, reason = None, str(e)
        if reason is None:
            record = {}
            if (env_dir / MARKER).exists():
                record = json.loads((env_dir / MARKER).read_text())
            missing = _interop_missing(info)
            if missing:  # an environment built before they were added: add them, keep the rest
                cmd = [str(py), "-m", "pip", "install", *missing]
                print("  $ " + shlex.join(cmd), flush=True)
                with open(env_dir.parent / f"{env_dir.name}-build.log", "a") as log:
                    log.write("$ " + shlex.join(cmd) + "\n")
                    log.flush()
                    subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT, env=_clean_env())
                record.setdefault("commands", []).append(shlex.join(cmd))
                info = _peer_json(py, "--versions", timeout=300)
                (env_dir / MARKER).write_text(json.dumps({**record, "versions": info}, indent=2))
            record["versions"] = info
            print(f"peers' environment: {env_dir} (reused; torch {info['torch']}, d3rlpy {info['d3rlpy']}, "
                  f"gymnasium {info['gymnasium']})", flush=True)
            return py, record
        print(f"peers' environment {env_dir} cannot be reused ({reason}); rebuilding", flush=True)
    record = build_peer_env(env_dir)
    v = record["versions"]
    print(f"peers' environment: {env_dir} (built; torch {v['torch']}, d3rlpy {v['d3rlpy']}, "
          f"gymnasium {v['gymnasium']})", flush=True)
    return py, record


class Peer:
    """One long-lived run_peer.py --serve process; one request at a time."""

    def __init__(self, py: Path, log_path: Path):
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen([str(py), str(PEERS / "run_peer.py"), "--serve"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, text=True, env=_clean_env())
        self._read()  # "ready": torch imported, threads set

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            raise PeerError(f"the peer process exited (code {code}); its messages: {self.log_path}")
        ans = json.loads(line)
        if not ans["ok"]:
            raise PeerError(f"peer: {ans['error']} (details: {self.log_path})")
        return ans["result"]

    def ask(self, **request):
        if self.proc.poll() is not None:
            raise PeerError(f"the peer process is gone (code {self.proc.returncode}); its messages: {self.log_path}")
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        try:
            return self._read()
        finally:
            time.sleep(SETTLE_S)

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# ------------------------------------------------------------------------------------ helpers


def _num(x):
    """A JSON-safe number: None for NaN/inf/None."""
    return None if x is None or not math.isfinite(float(x)) else float(x)


def _ratio(a, b):
    return a / b if a is not None and b else None


def _fmt(x, spec="9.1f", width=9):
    return f"{x:{spec}}" if x is not None else f"{'-':>{width}}"


def _error_text(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".splitlines()[0][:300]


# -------------------------------------------------------------------------------------- parts


def part_learners(args, peer, tmp: Path, peak: float, errors: list) -> dict:
    import numpy as np

    from throughput import BATCH, bench_rtaug, halfcheetah_shaped, rtaug_flops

    data = halfcheetah_shaped()
    data_path = tmp / "learner_data.npz"
    np.savez(data_path, observations=data.observations, actions=data.actions, rewards=data.rewards,
             terminals=data.terminals, timeouts=data.timeouts)
    print(f"\nlearners: batch {BATCH}, {len(data)} halfcheetah-shaped transitions; rtaug (JAX) then d3rlpy "
          f"(PyTorch), {args.seconds:g} s each", flush=True)
    print(f"{'algo':6} {'rtaug/s':>9} {'d3rlpy/s':>9} {'ratio':>6} {'GFLOP/upd':>9} {'GFLOP/s':>8} {'peak':>6}",
          flush=True)
    out = {}
    for name in args.algos:
        res = {"rtaug_updates_per_s": None, "peer_updates_per_s": None, "ratio": None,
               "gflop_per_update": None, "peak_fraction": None, "peer": "d3rlpy"}
        try:
            one = bench_rtaug(name, data, args.seconds, 1)
            res["rtaug_updates_per_s"] = one["updates_per_s"]
            res["rtaug_chunk"] = one["chunk"]
            flops = rtaug_flops(name, data)
            res["gflop_per_update"] = _num(flops / 1e9)
            res["achieved_gflops"] = _num(flops * one["updates_per_s"] / 1e9)
            res["peak_fraction"] = _num(flops * one["updates_per_s"] / peak)
        except Exception as e:  # noqa: BLE001
            res["rtaug_error"] = _error_text(e)
            errors.append(f"learners.{name} (rtaug): {res['rtaug_error']}")
        if args.matmul != "xla" and res["gflop_per_update"] is not None and _has_matmul(name):
            time.sleep(SETTLE_S)
            try:
                ups = bench_rtaug(name, data, args.seconds, 1, args.matmul)["updates_per_s"]
                res["matmul"] = {"mode": args.matmul, "rtaug_updates_per_s": ups,
                                 "peak_fraction": _num(res["gflop_per_update"] * 1e9 * ups / peak)}
            except Exception as e:  # noqa: BLE001
                res["matmul"] = {"mode": args.matmul, "rtaug_error": _error_text(e)}
                errors.append(f"learners.{name} (rtaug, {args.matmul}): {res['matmul']['rtaug_error']}")
        time.sleep(SETTLE_S)
        if peer is None:
            res["peer_error"] = "no peers' environment"
        else:
            try:
                res["peer_updates_per_s"] = peer.ask(cmd="d3rlpy", algo=name, data=str(data_path),
                                                     seconds=args.seconds)["updates_per_s"]
            except Exception as e:  # noqa: BLE001
                res["peer_error"] = _error_text(e)
                errors.append(f"learners.{name} (d3rlpy): {res['peer_error']}")
        res["ratio"] = _ratio(res["rtaug_updates_per_s"], res["peer_updates_per_s"])
        if "rtaug_updates_per_s" in res.get("matmul", {}):
            res["matmul"]["ratio"] = _ratio(res["matmul"]["rtaug_updates_per_s"], res["peer_updates_per_s"])
        out[name] = res
        pf = res["peak_fraction"]
        print(f"{name:6} {_fmt(res['rtaug_updates_per_s'])} {_fmt(res['peer_updates_per_s'])} "
              f"{_fmt(res['ratio'], '6.2f', 6)} {_fmt(res['gflop_per_update'], '9.3f')} "
              f"{_fmt(res.get('achieved_gflops'), '8.1f', 8)} {_fmt(pf * 100 if pf is not None else None, '5.1f', 5)}%",
              flush=True)
        if "rtaug_updates_per_s" in res.get("matmul", {}):
            m = res["matmul"]
            print(f"  {m['mode']}: {_fmt(m['rtaug_updates_per_s'])} {_fmt(res['peer_updates_per_s'])} "
                  f"{_fmt(m['ratio'], '6.2f', 6)} {'':>9} {'':>8} {_fmt(m['peak_fraction'] * 100, '5.1f', 5)}%",
                  flush=True)
    return out


def _has_matmul(name: str) -> bool:
    from rtaug import algos

    return hasattr(algos.get(name).Config(), "matmul")


def _rt_cases(args):
    """name -> (data, RTConfig, description), as benchmarks/rt_throughput.py sizes them."""
    from rtaug.collect.dqn import DQNConfig, collect_boxball
    from rtaug.experiments.quickstart import QuickstartConfig
    from rtaug.generate.model import RTConfig

    from rt_throughput import synthetic_dataset

    n = 20_000 if args.quick else 50_000
    dqn_steps = 5_000 if args.quick else 20_000
    return {
        "default": (lambda: synthetic_dataset(n=n), RTConfig(),
                    f"continuous synthetic data ({n} rows, obs 4, act 2, Gaussian reward)"),
        "quickstart": (lambda: collect_boxball(DQNConfig(total_steps=dqn_steps), progress=False), QuickstartConfig().rt,
                       f"BoxBall from {dqn_steps} DQN steps (discrete states, actions and rewards)"),
    }


def _windows_for(data, cfg, chunk: int):
    """The init batch and the (chunk, B) batches of windows that `bench_training` draws (rng seed 0)."""
    import numpy as np

    from rtaug.data.episodes import reward_to_go
    from rtaug.generate.spec import Spec
    from rtaug.generate.train import training_windows

    spec = Spec.fit(data, gamma=cfg.gamma, rtg_bins=cfg.rtg_bins)
    bounds = data.episodes()
    rtg = reward_to_go(data.rewards, bounds, cfg.gamma)
    rng = np.random.default_rng(0)
    K, B = cfg.context_steps, cfg.batch_size
    first = training_windows(data, rtg, bounds, rng.integers(0, len(data), (B,)), K, cfg.direction)
    batches = training_windows(data, rtg, bounds, rng.integers(0, len(data), (chunk, B)), K, cfg.direction)
    return spec, first, batches


def jax_reference(spec, cfg, first, batches) -> dict:
    """RTModel's parameters (seed 0) by path, their count, and the loss and global gradient norm
    of the first batch: the PyTorch model loads the same weights and must agree."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    from rtaug.generate.model import RTModel

    model = RTModel(spec, cfg)
    params = jax.jit(model.init)(jax.random.PRNGKey(0), *first)
    b0 = tuple(np.asarray(x)[0] for x in batches)

    def loss_fn(p, b):  # as bench_training's
        return -model.apply(p, *b).sum() / jnp.maximum(b[4].sum(), 1)

    loss, grads = jax.jit(jax.value_and_grad(loss_fn))(params, b0)
    flat = {"/".join(str(getattr(k, "key", k)) for k in path): np.asarray(x)
            for path, x in jax.tree_util.tree_flatten_with_path(params)[0]}
    return {"params": int(sum(x.size for x in flat.values())), "loss": float(loss),
            "grad_norm": float(optax.global_norm(grads)), "flat": flat}


def part_rt_training(args, peer, tmp: Path, peak: float, errors: list, datasets: dict) -> dict:
    import numpy as np

    from rt_throughput import bench_training

    chunk = 5 if args.quick else 20
    repeats = 2 if args.quick else max(3, math.ceil(args.seconds / 3))
    print(f"\nRT training: rtaug (JAX) then PyTorch (eager{'' if args.no_compile else ', torch.compile'}), "
          f"best of {repeats} passes over {chunk} batches each", flush=True)
    out = {}
    for case, (make_data, cfg, description) in _rt_cases(args).items():
        res = {"updates_per_s": None, "peak_fraction": None, "torch_updates_per_s": None, "ratio": None,
               "data": description,
               "shape": {k: getattr(cfg, k) for k in ("n_layer", "d_model", "n_head", "context_steps", "batch_size",
                                                      "rtg_bins", "direction")},
               "tokens_per_update": cfg.batch_size * 4 * cfg.context_steps, "chunk": chunk, "repeats": repeats}
        out[case] = res
        try:
            if case not in datasets:
                datasets[case] = make_data()
            data = datasets[case]
            spec, first, batches = _windows_for(data, cfg, chunk)
            names = ("s", "a", "r", "R", "mask", "anchor", "anchor_valid", "done")
            path = tmp / f"rt_{case}.npz"
            np.savez(path, **{n: np.asarray(x) for n, x in zip(names, batches, strict=True)})
            ref = jax_reference(spec, cfg, first, batches)
            params_path = tmp / f"rt_{case}_params.npz"
            np.savez(params_path, **ref.pop("flat"))
            res["params"] = {"jax": ref["params"], "torch": None}
            res["same_weights_check"] = {"jax_loss": ref["loss"], "jax_grad_norm": ref["grad_norm"]}
        except Exception as e:  # noqa: BLE001
            res["error"] = _error_text(e)
            errors.append(f"rt_training.{case}: {res['error']}")
            continue
        print(f"{case}: {description}; {cfg.n_layer} layers, d {cfg.d_model}, {cfg.n_head} heads, "
              f"K {cfg.context_steps}, batch {cfg.batch_size}", flush=True)
        same = False
        if peer is not None:
            try:
                chk = peer.ask(cmd="loss_check", spec=spec.to_dict(), config=cfg.to_dict(), batches=str(path),
                               params=str(params_path))
                res["params"]["torch"] = chk["params"]
                check = res["same_weights_check"]
                check.update(torch_loss=chk["loss"], torch_grad_norm=chk["grad_norm"])
                check["loss_rel_diff"] = abs(chk["loss"] - ref["loss"]) / max(abs(ref["loss"]), 1e-12)
                check["grad_norm_rel_diff"] = abs(chk["grad_norm"] - ref["grad_norm"]) / max(ref["grad_norm"], 1e-12)
                check["agree"] = max(check["loss_rel_diff"], check["grad_norm_rel_diff"]) <= SAME_TOLERANCE
                same = chk["params"] == ref["params"] and check["agree"]
                print(f"  parameters: JAX {ref['params']}, PyTorch {chk['params']}; with the JAX weights, loss "
                      f"{ref['loss']:.6g} vs {chk['loss']:.6g}, gradient norm {ref['grad_norm']:.6g} vs "
                      f"{chk['grad_norm']:.6g}" + ("" if same else "  <- DIFFERENT: no ratio"), flush=True)
                if not same:
                    res["ratio_null_reason"] = "the PyTorch model is not the same model (parameters or loss differ)"
                    errors.append(f"rt_training.{case}: {res['ratio_null_reason']}")
            except Exception as e:  # noqa: BLE001
                res["torch_error"] = _error_text(e)
                errors.append(f"rt_training.{case} (torch): {res['torch_error']}")
        try:
            tr = bench_training(data, cfg, chunk=chunk, repeats=repeats)
            res["updates_per_s"] = tr["updates_per_s"]
            res["tokens_per_s"] = tr.get("tokens_per_s")
            res["gflop_per_update"] = _num(tr["flops_per_update"] / 1e9)
            res["achieved_gflops"] = _num(tr["achieved_flops"] / 1e9)
            res["peak_fraction"] = _num(tr["achieved_flops"] / peak)
            if tr.get("params") is not None and tr["params"] != res["params"]["jax"]:
                res["params"]["jax_bench_training"] = tr["params"]
        except Exception as e:  # noqa: BLE001
            res["rtaug_error"] = _error_text(e)
            errors.append(f"rt_training.{case} (rtaug): {res['rtaug_error']}")
        if args.matmul != "xla":
            res["matmul"] = _rt_training_matmul(args.matmul, data, cfg, chunk, repeats, peak, case, errors)
        time.sleep(SETTLE_S)
        if peer is not None and "torch_error" not in res:
            try:
                t = peer.ask(cmd="torch_rt", spec=spec.to_dict(), config=cfg.to_dict(), batches=str(path),
                             repeats=repeats, compile=not args.no_compile, warmup_steps=100, total_steps=10_000)
                eager = t["eager"]["updates_per_s"]
                comp = t["compile"].get("updates_per_s")
                res["torch_eager_updates_per_s"] = eager
                res["torch_compile_updates_per_s"] = comp
                res["torch_compile_error"] = t["compile"].get("error")
                res["torch_compile_seconds"] = t.get("compile_seconds")
                res["torch_updates_per_s"] = max(x for x in (eager, comp) if x is not None)
                res["torch_best_is"] = "compile" if comp is not None and comp > eager else "eager"
                res["torch_matmul_gflop_per_update"] = t.get("matmul_gflop_per_update")
                res["torch_details"] = {k: t[k] for k in ("torch", "threads", "attention", "optimizer", "loss_at_init")}
            except Exception as e:  # noqa: BLE001
                res["torch_error"] = _error_text(e)
                errors.append(f"rt_training.{case} (torch): {res['torch_error']}")
        if same:
            res["ratio"] = _ratio(res["updates_per_s"], res["torch_updates_per_s"])
            res["ratio_eager"] = _ratio(res["updates_per_s"], res.get("torch_eager_updates_per_s"))
            res["ratio_compile"] = _ratio(res["updates_per_s"], res.get("torch_compile_updates_per_s"))
            if "updates_per_s" in res.get("matmul", {}):  # the same model: only its matmuls are computed otherwise
                res["matmul"]["ratio"] = _ratio(res["matmul"]["updates_per_s"], res["torch_updates_per_s"])
        pf = res["peak_fraction"]
        print(f"  rtaug {_fmt(res['updates_per_s'], '.1f', 1)} updates/s "
              f"({_fmt(res.get('gflop_per_update'), '.3f', 1)} GFLOP/update, "
              f"{_fmt(pf * 100 if pf is not None else None, '.1f', 1)}% of the start peak); PyTorch eager "
              f"{_fmt(res.get('torch_eager_updates_per_s'), '.1f', 1)}, compiled "
              f"{_fmt(res.get('torch_compile_updates_per_s'), '.1f', 1)} updates/s; ratio "
              f"{_fmt(res['ratio'], '.2f', 1)}", flush=True)
        if res.get("torch_compile_error"):
            print(f"  torch.compile: {res['torch_compile_error'][:200]}", flush=True)
        if "updates_per_s" in res.get("matmul", {}):
            m = res["matmul"]
            print(f"  rtaug with matmul {m['mode']}: {m['updates_per_s']:.1f} updates/s "
                  f"({m['peak_fraction'] * 100:.1f}% of the float32 peak); ratio to PyTorch "
                  f"{_fmt(m.get('ratio'), '.2f', 1)}", flush=True)
    return out


def _rt_training_matmul(mode: str, data, cfg, chunk: int, repeats: int, peak: float, case: str, errors: list) -> dict:
    """RT training with RTConfig.matmul = mode; its FLOPs are the XLA model's (bench_training)."""
    from dataclasses import replace

    from rt_throughput import bench_training

    time.sleep(SETTLE_S)
    try:
        tr = bench_training(data, replace(cfg, matmul=mode), chunk=chunk, repeats=repeats)
        return {"mode": mode, "updates_per_s": tr["updates_per_s"],
                "peak_fraction": _num(tr["achieved_flops"] / peak)}
    except Exception as e:  # noqa: BLE001
        errors.append(f"rt_training.{case} (rtaug, {mode}): {_error_text(e)}")
        return {"mode": mode, "rtaug_error": _error_text(e)}


def part_generation(args, errors: list, datasets: dict) -> dict:
    from dataclasses import replace

    from rtaug.generate.generation import GenerationConfig
    from rtaug.generate.model import RTConfig

    from rt_throughput import bench_generation, synthetic_dataset

    H, batch, repeats = (256, 64, 2) if args.quick else (1024, 256, 3)
    cfg, gcfg = RTConfig(), GenerationConfig(max_length=10, candidates=4)
    print(f"\ngeneration (rtaug only): default size, {H} trajectories (batches of {batch}) x {gcfg.candidates} "
          f"candidates x {gcfg.max_length} steps, best of {repeats}", flush=True)
    res = {"steps_per_s": None}
    try:
        data = datasets["default"] if "default" in datasets else synthetic_dataset(n=20_000 if args.quick else 50_000)
        ge = bench_generation(data, cfg, gcfg, H=H, batch=batch, repeats=repeats)
        res.update(ge)
        res["steps_per_s"] = ge["generated_steps_per_s"]
        print(f"  {res['steps_per_s']:.0f} generated steps/s ({ge['seconds']:.2f} s per rollout of {H}, "
              f"{ge['concurrency']} batches at once)", flush=True)
    except Exception as e:  # noqa: BLE001
        res["error"] = _error_text(e)
        errors.append(f"generation.default: {res['error']}")
        print(f"  failed: {res['error']}", flush=True)
    if args.matmul != "xla" and "error" not in res:
        time.sleep(SETTLE_S)
        try:
            ge = bench_generation(data, replace(cfg, matmul=args.matmul), gcfg, H=H, batch=batch, repeats=repeats)
            res["matmul"] = {"mode": args.matmul, "steps_per_s": ge["generated_steps_per_s"]}
            print(f"  with matmul {args.matmul}: {ge['generated_steps_per_s']:.0f} generated steps/s", flush=True)
        except Exception as e:  # noqa: BLE001
            res["matmul"] = {"mode": args.matmul, "error": _error_text(e)}
            errors.append(f"generation.default ({args.matmul}): {res['matmul']['error']}")
    return {"default": res}


# --------------------------------------------------------------------------------------- main


def _null_ratios(results: dict, reason: str):
    for res in results.get("learners", {}).values():
        res["ratio"] = None
        res["ratio_null_reason"] = reason
    for res in results.get("rt_training", {}).values():
        for k in ("ratio", "ratio_eager", "ratio_compile"):
            if k in res:
                res[k] = None
        res["ratio_null_reason"] = reason
    for part in ("learners", "rt_training"):  # and the ratios of the --matmul timings beside them
        for res in results.get(part, {}).values():
            if "ratio" in res.get("matmul", {}):
                res["matmul"]["ratio"] = None


def summary_table(results: dict) -> str:
    lines = [f"{'':22} {'rtaug/s':>9} {'peer/s':>9} {'ratio':>6} {'GFLOP/upd':>9} {'peak':>6}"]
    for name, r in results.get("learners", {}).items():
        pf = r.get("peak_fraction")
        lines.append(f"{'learner ' + name:22} {_fmt(r['rtaug_updates_per_s'])} {_fmt(r['peer_updates_per_s'])} "
                     f"{_fmt(r['ratio'], '6.2f', 6)} {_fmt(r['gflop_per_update'], '9.3f')} "
                     f"{_fmt(pf * 100 if pf is not None else None, '5.1f', 5)}%")
    for name, r in results.get("rt_training", {}).items():
        pf = r.get("peak_fraction")
        lines.append(f"{'RT training ' + name:22} {_fmt(r['updates_per_s'])} {_fmt(r['torch_updates_per_s'])} "
                     f"{_fmt(r['ratio'], '6.2f', 6)} {_fmt(r.get('gflop_per_update'), '9.3f')} "
                     f"{_fmt(pf * 100 if pf is not None else None, '5.1f', 5)}%")
    g = results.get("generation", {}).get("default")
    if g:
        lines.append(f"{'RT generation default':22} {_fmt(g['steps_per_s'], '9.0f')} steps/s (rtaug only)")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    command = " ".join(["python", "benchmarks/compare.py", *(sys.argv[1:] if argv is None else argv)])
    need_peers = args.setup_only or any(p in args.parts for p in ("learners", "rt_training"))
    errors: list[str] = []
    results: dict = {"command": command, "quick": args.quick, "seconds": args.seconds,
                     "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if args.quick:
        results["note"] = "--quick: a smoke test on small runs, not a measurement"

    py, peer_record = None, None
    if need_peers:
        try:
            py, peer_record = ensure_peer_env(args.peer_env, args.rebuild_peers)
        except (PeerError, subprocess.SubprocessError, OSError, ValueError) as e:
            errors.append(f"peers' environment: {_error_text(e)}")
            print(f"compare.py: the peers' environment could not be set up: {_error_text(e)}", file=sys.stderr)
            if args.setup_only:
                return 1
        if args.setup_only:
            print(json.dumps(peer_record["versions"], indent=2))
            return 0

    sys.path.insert(0, str(HERE))
    import jax

    from peak import matmul_peak

    peak_sizes = (1024, 2048) if args.quick else (1024, 2048, 4096)
    peer = None
    with tempfile.TemporaryDirectory(prefix="rtaug-compare-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            if py is not None:
                try:
                    peer = Peer(py, args.peer_env.parent / f"{args.peer_env.name}-last-run.log")
                except (PeerError, OSError, ValueError) as e:
                    errors.append(f"peer process: {_error_text(e)}")
                    print(f"compare.py: the peer process did not start: {_error_text(e)}", file=sys.stderr)
            results["load_average_before"] = list(os.getloadavg())
            peaks = [("start", matmul_peak(sizes=peak_sizes))]
            peak = peaks[0][1]
            print(f"\nfloat32 matmul peak at the start: {peak / 1e9:.1f} GFLOP/s ({os.cpu_count()} cores); "
                  f"load average {results['load_average_before'][0]:.2f}", flush=True)
            datasets: dict = {}
            for part in args.parts:
                if part == "learners":
                    results["learners"] = part_learners(args, peer, tmp, peak, errors)
                elif part == "rt_training":
                    results["rt_training"] = part_rt_training(args, peer, tmp, peak, errors, datasets)
                else:
                    results["generation"] = part_generation(args, errors, datasets)
                peaks.append((f"after {part}", matmul_peak(sizes=peak_sizes)))
                print(f"float32 matmul peak after {part}: {peaks[-1][1] / 1e9:.1f} GFLOP/s", flush=True)
            results["load_average_after"] = list(os.getloadavg())
        finally:
            if peer is not None:
                peer.close()

    lowest = min(p for _, p in peaks)
    drop = 1 - lowest / peak
    results["matmul_peak_gflops"] = {"start": peak / 1e9, "end": peaks[-1][1] / 1e9,
                                     "checkpoints": [{"at": at, "gflops": p / 1e9} for at, p in peaks],
                                     "largest_drop": drop, "max_drop_allowed": MAX_PEAK_DROP,
                                     "sizes": list(peak_sizes)}
    best = max(p for _, p in peaks)
    results["matmul_peak_gflops"]["best"] = best / 1e9
    results["matmul_peak_gflops"]["lowest_over_best"] = lowest / best
    for section in ("learners", "rt_training"):  # fractions of the highest peak measured
        for res in results.get(section, {}).values():
            if res.get("achieved_gflops") is not None:
                res["peak_fraction"] = res["achieved_gflops"] * 1e9 / best
    results["ratios_valid"] = drop <= MAX_PEAK_DROP
    results["ratio_null_reason"] = None
    if drop > MAX_PEAK_DROP:
        at = min(peaks, key=lambda x: x[1])[0]
        reason = (f"the matmul peak fell {drop:.0%} below its start ({peak / 1e9:.1f} -> {lowest / 1e9:.1f} GFLOP/s, "
                  f"{at}): the machine was shared during the run, so no ratio is reported")
        results["ratio_null_reason"] = reason
        _null_ratios(results, reason)
    results["machine"] = {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                          "python": sys.version.split()[0], "jax": jax.__version__,
                          "jax_backend": jax.devices()[0].platform}
    for pkg in ("flax", "optax", "numpy", "rtaug"):
        try:
            from importlib import metadata

            results["machine"][pkg] = metadata.version(pkg)
        except Exception:  # noqa: BLE001
            results["machine"][pkg] = None
    if peer_record is not None:
        results["peers"] = {"env": str(args.peer_env), **peer_record}
    results["errors"] = errors
    results["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")

    print("\n" + ("SMOKE TEST (--quick): not a measurement\n" if args.quick else "") + summary_table(results))
    la, lb = results["load_average_before"], results["load_average_after"]
    print("float32 matmul peak, GFLOP/s: " + ", ".join(f"{at} {p / 1e9:.1f}" for at, p in peaks)
          + f" (largest drop from the start {drop:.0%}, allowed {MAX_PEAK_DROP:.0%}; fractions of {best / 1e9:.1f})")
    print(f"load average (1 min) {la[0]:.2f} before, {lb[0]:.2f} after, on {os.cpu_count()} cores")
    if results["ratio_null_reason"]:
        print(f"ratios withheld: {results['ratio_null_reason']}")
    for e in errors:
        print(f"error: {e}")
    if args.json:
        from rtaug.fileio import atomic_write_json

        atomic_write_json(args.json, results)
        print(f"wrote {args.json}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
