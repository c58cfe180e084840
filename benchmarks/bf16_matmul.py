"""Does bfloat16 make a matmul faster on this CPU, under XLA and under PyTorch's oneDNN?

Issue 11 asks whether bf16 matmuls would lift the compute-bound learners (CQL, BCQ). This CPU has
AVX-512 BF16 and AMX tiles (`lscpu`: avx512_bf16, amx_bf16, amx_tile). The script times one
(rows × width) @ (width × width) matmul, float32 against bfloat16, on one pinned core, in a fresh
process per XLA flag set (XLA reads its flags once, at start), and the same matmul in PyTorch when
a Python with torch is given (`--torch-python`, default: compare.py's peer environment if it
exists; keep torch out of rtaug's own environment). Each figure is GFLOP/s, the best of `--rounds`.

    python benchmarks/bf16_matmul.py [--torch-python ~/.cache/rtaug/bench-peers/bin/python]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

# XLA CPU flag sets that might route a dot to a library with bf16 / AMX kernels (jaxlib 0.10.2
# knows each of them; an unknown flag aborts the process).
FLAG_SETS = [
    "",
    "--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_fusion_type=dot",
    "--xla_cpu_use_xnnpack=true --xla_cpu_experimental_xnn_fusion_type=dot",
    "--xla_cpu_experimental_ynn_fusion_type=dot",
    "--xla_cpu_use_thunk_runtime=false",
]

TIMER = """
import os, sys, time
os.sched_setaffinity(0, {{{core}}})
rows, width, repeats, rounds = {rows}, {width}, {repeats}, {rounds}
flops = 2 * rows * width * width * repeats

def gflops(mm, a, b, sync):
    # best of `rounds` timings of `repeats` products, after one warm-up (compilation) call
    sync(mm(a, b))
    best = 0.0
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(repeats):
            r = mm(a, b)
        sync(r)
        best = max(best, flops / (time.perf_counter() - t))
    return best / 1e9

out = []
if "{lib}" in ("jax", "onednn"):
    import jax, jax.numpy as jnp
    ready = lambda r: r.block_until_ready()
    if "{lib}" == "jax":
        mm = jax.jit(lambda a, b: a @ b)
        for name in ("float32", "bfloat16"):
            out.append(gflops(mm, jnp.ones((rows, width), name), jnp.ones((width, width), name), ready))
    else:
        # rtaug's own route to oneDNN from JAX (rtaug.nets.onednn): float32 operands both times, the
        # second with bfloat16 products (fpmath_mode bf16), as `matmul=onednn-bf16` runs the learners
        from rtaug.nets import onednn
        for bf16 in (False, True):
            mm = jax.jit(lambda a, b, bf16=bf16: onednn.matmul(a, b, bf16=bf16))
            out.append(gflops(mm, jnp.ones((rows, width)), jnp.ones((width, width)), ready))
else:
    import torch
    torch.set_num_threads(1)
    for name in (torch.float32, torch.bfloat16):
        out.append(gflops(lambda a, b: a @ b, torch.ones(rows, width, dtype=name),
                          torch.ones(width, width, dtype=name), lambda r: None))
print(" ".join(f"{{x:.1f}}" for x in out))
"""


def default_torch_python() -> str | None:
    env = Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "rtaug" / "bench-peers"
    py = env / "bin" / "python"
    return str(py) if py.is_file() else None


def time_in_process(python: str, lib: str, args, flags: str = "") -> tuple[float, float]:
    code = TIMER.format(core=args.core, rows=args.rows, width=args.width, repeats=args.repeats,
                        rounds=args.rounds, lib=lib)
    env = {**os.environ, "XLA_FLAGS": flags}
    p = subprocess.run([python, "-c", code], env=env, capture_output=True, text=True, check=False)
    if p.returncode:
        raise RuntimeError(f"{lib} with XLA_FLAGS={flags!r}: {(p.stderr.strip().splitlines() or ['failed'])[-1]}")
    fp32, bf16 = map(float, p.stdout.split())
    return fp32, bf16


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=8192, help="rows of the left operand (a critic's B·31 is 7,936)")
    ap.add_argument("--width", type=int, default=256, help="hidden width (the learners' 256)")
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--core", type=int, default=0, help="the core every timing is pinned to")
    ap.add_argument("--torch-python", default=default_torch_python(),
                    help="a Python with torch (default: compare.py's peer environment, if built)")
    args = ap.parse_args(argv)
    if args.torch_python is not None and not Path(args.torch_python).is_file():
        ap.error(f"--torch-python {args.torch_python}: no such file")
    print(f"load average before: {os.getloadavg()[0]:.2f}; one core ({args.core}); "
          f"({args.rows} x {args.width}) @ ({args.width} x {args.width}), GFLOP/s, best of {args.rounds}")
    print(f"{'library / XLA_FLAGS':<88} {'float32':>8} {'bfloat16':>9} {'ratio':>6}")
    rows = [("jax " + (f or "(none)"), *time_in_process(sys.executable, "jax", args, f)) for f in FLAG_SETS]
    from rtaug.nets import onednn

    usable, why = onednn.available()
    if usable:
        rows.append(("jax + rtaug.nets.onednn (XLA FFI custom call), float32 operands", *time_in_process(
            sys.executable, "onednn", args)))
    else:
        print(f"(no rtaug.nets.onednn row: {why})")
    if args.torch_python:
        rows.append(("torch (oneDNN), 1 thread", *time_in_process(args.torch_python, "torch", args)))
    for name, fp32, bf16 in rows:
        print(f"{name:<88} {fp32:>8.1f} {bf16:>9.1f} {bf16 / fp32:>6.2f}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
