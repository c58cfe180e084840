"""Matmuls through oneDNN, optionally in bfloat16: AMX tiles from JAX on CPUs that have them.

XLA's CPU backend in jaxlib 0.10 computes bfloat16 matmuls no faster than float32 on this
machine under every library flag it has, while oneDNN runs them 8.6x faster on the same core
(docs/performance.md, "bf16"). This module reaches oneDNN through an XLA FFI custom call: a
small C++ handler (onednn_matmul.cc) compiled on first use against the `onednn` extra's
headers and library, cached under ~/.cache/rtaug/onednn ($XDG_CACHE_HOME), and registered with JAX.

`matmul(a, b, bf16=True)` is a float32 matmul whose products oneDNN may round to bfloat16
(float32 sums; oneDNN's fpmath_mode bf16), with its own gradient (two more matmuls of the same
kind, the transposes read in place). Under `jax.vmap` the handler receives a leading batch axis
of size 1 for unbatched operands and broadcasts it, so an ensemble (nn.vmap) costs one call per
matmul.

Needs: `pip install "rtaug[onednn]"` (oneDNN's CPU build with GNU OpenMP and its headers) and a
C++17 compiler (`c++`, or $CXX). `available()` says whether both are there, and why not.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp

SOURCE = Path(__file__).with_name("onednn_matmul.cc")
TARGET = "rtaug_onednn_matmul"
MODES = ("xla", "onednn", "onednn-bf16")  # what a config's `matmul` field may name


def recorded(record: dict) -> dict:
    """A config's record (run.json, a checkpoint, a stage key) with `matmul` left out at its
    default "xla": it changes how a result is computed, not what it is meant to be, so what was
    recorded before the field existed still matches the same run (a resume, a cached stage)."""
    return {k: v for k, v in record.items() if not (k == "matmul" and v == "xla")}


class OnednnUnavailable(RuntimeError):
    """oneDNN or a C++ compiler is missing; the message says which and how to get it."""


def _prefixes() -> list[Path]:
    # pip puts a wheel's data files (oneDNN's lib/ and include/) under the environment's prefix.
    seen = []
    for p in (sysconfig.get_path("data"), sys.prefix, sys.base_prefix, os.environ.get("ONEDNN_ROOT")):
        if p and Path(p) not in seen:
            seen.append(Path(p))
    return seen


def _find() -> tuple[Path, Path, str]:
    """(include dir, lib dir, compiler) or OnednnUnavailable."""
    include = lib = None
    for prefix in _prefixes():
        if include is None and (prefix / "include" / "oneapi" / "dnnl" / "dnnl.hpp").is_file():
            include = prefix / "include"
        if lib is None and any((prefix / "lib").glob("libdnnl.so*")):
            lib = prefix / "lib"
    hint = 'pip install "rtaug[onednn]" (onednn-cpu-gomp and onednn-devel-cpu-gomp)'
    if lib is None:
        raise OnednnUnavailable(f"oneDNN's library (libdnnl.so) is not under {', '.join(map(str, _prefixes()))}: {hint}")
    if include is None:
        raise OnednnUnavailable(f"oneDNN's headers (oneapi/dnnl/dnnl.hpp) are not installed: {hint}")
    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if not cxx:
        raise OnednnUnavailable("no C++ compiler (c++ or $CXX) to build rtaug's oneDNN matmul")
    return include, lib, cxx


@functools.cache
def _library() -> ctypes.CDLL:
    include, lib, cxx = _find()
    source = SOURCE.read_bytes()
    tag = hashlib.sha256(source + jax.__version__.encode() + str(lib).encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rtaug" / "onednn" / tag
    so = cache / "librtaug_onednn.so"
    if not so.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        # Built into a temporary name and renamed: concurrent workers never load a half-written file.
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=cache)
        os.close(fd)
        cmd = [cxx, "-O2", "-std=c++17", "-shared", "-fPIC", "-fopenmp", f"-I{include}",
               f"-I{jax.ffi.include_dir()}", str(SOURCE), f"-L{lib}", "-ldnnl", f"-Wl,-rpath,{lib}", "-o", tmp]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            Path(tmp).unlink(missing_ok=True)
            raise OnednnUnavailable(f"building {SOURCE.name} failed ({' '.join(cmd)}):\n{done.stderr[-2000:]}")
        os.replace(tmp, so)
    handle = ctypes.cdll.LoadLibrary(str(so))
    handle.RtaugOnednnSetThreadsPerCall.argtypes = [ctypes.c_int]
    jax.ffi.register_ffi_target(TARGET, jax.ffi.pycapsule(handle.RtaugOnednnMatmul), platform="cpu")
    return handle


def available() -> tuple[bool, str]:
    """(True, "") when the matmul can be built and loaded here, else (False, why)."""
    try:
        _library()
    except OnednnUnavailable as exc:
        return False, str(exc)
    return True, ""


def _call(a, b, transpose_a: bool, transpose_b: bool, bf16: bool):
    _library()
    m = a.shape[-1] if transpose_a else a.shape[-2]
    n = b.shape[-2] if transpose_b else b.shape[-1]
    batch = jnp.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    out = jax.ShapeDtypeStruct(batch + (m, n), jnp.float32)
    # expand_dims: an operand vmap does not batch arrives with a size-1 axis, which the handler
    # broadcasts, instead of being copied once per batch member.
    return jax.ffi.ffi_call(TARGET, out, vmap_method="expand_dims")(
        a, b, transpose_a=transpose_a, transpose_b=transpose_b, bf16=bf16)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _matmul(a, b, bf16):
    return _call(a, b, False, False, bf16)


def _fwd(a, b, bf16):
    return _call(a, b, False, False, bf16), (a, b)


def _bwd(bf16, res, g):
    a, b = res
    return _call(g, b, False, True, bf16), _call(a, g, True, False, bf16)


_matmul.defvjp(_fwd, _bwd)


def matmul(x, w, *, bf16: bool = True):
    """x @ w for x of shape (..., k) and a 2-D w (k, n), in float32 or with bfloat16 products."""
    if w.ndim != 2:
        raise ValueError(f"onednn.matmul: w must be 2-D (k, n), got shape {w.shape}")
    lead = x.shape[:-1]
    x2 = x.reshape(-1, x.shape[-1]).astype(jnp.float32)
    return _matmul(x2, w.astype(jnp.float32), bf16).reshape(lead + (w.shape[-1],))


def batched_matmul(a, b, *, transpose_b: bool = False):
    """a @ b (or a @ bᵀ with `transpose_b`, read in place) over equal leading batch axes, in
    float32 (no bfloat16 rounding), without a gradient: attention's products while a model
    decodes, which oneDNN computes faster than XLA's batched dot (docs/performance.md)."""
    if a.ndim != b.ndim or not 3 <= a.ndim <= 4:
        raise ValueError(f"onednn.batched_matmul: operands of rank 3-4 and equal rank, got {a.shape} and {b.shape}")
    return _call(a.astype(jnp.float32), b.astype(jnp.float32), False, transpose_b, False)


@contextlib.contextmanager
def threads_per_call(n: int):
    """Inside, each oneDNN call uses at most `n` threads (it otherwise uses one per core the
    calling thread may run on). For callers that run several jitted programs at once from threads
    of their own (generation's concurrent batches): one thread per call then, instead of every
    call's OpenMP team contending for every core. Results do not depend on it (tested). The
    setting is the process's, not the calling thread's, so callers must not nest or overlap it."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"onednn.threads_per_call: n must be a positive int, got {n!r}")
    lib = _library()
    lib.RtaugOnednnSetThreadsPerCall(n)
    try:
        yield
    finally:
        lib.RtaugOnednnSetThreadsPerCall(0)


__all__ = ["MODES", "OnednnUnavailable", "available", "batched_matmul", "matmul", "recorded", "threads_per_call"]
