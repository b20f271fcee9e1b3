"""``AMGT(fused=True)``: one multi-tensor kernel per (device, dtype) group.

- CPU: the C++ kernel in ``_fused_cpu.cpp`` (two passes over memory per tensor, see there), compiled on
  first use with the system C++ compiler (``$CXX``, else ``c++``/``g++``/``clang++``) into
  ``$AMGT_EXTENSIONS_DIR`` (default ``~/.cache/amgt/extensions``), keyed by a hash of the source, the
  compiler and this CPU's instruction set, and loaded with ``ctypes``. It includes no torch header, so a
  build takes about a second (``torch.utils.cpp_extension.load_inline`` took 29 s here for an empty
  function: it compiles torch's and pybind11's headers).
- CUDA: ``torch.compile`` of the capturable multi-tensor step (``_capturable.py``), one compiled
  function per hyperparameter set; Inductor generates the kernels (Triton).

Without a compiler (or when the build or ``torch.compile`` fails) ``fused=True`` warns once and runs the
foreach path, which computes the same update.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import Tensor

from ._diagnostics import Diagnostics

__all__ = ["fused_amgt", "cpu_kernel", "fused_backend"]

_SOURCE = Path(__file__).with_name("_fused_cpu.cpp")
_FLAGS = ["-O3", "-march=native", "-std=c++17", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math",
          "-fopenmp", "-shared", "-fPIC"]
_ABI_VERSION = 1
_HYPER = ("lr", "beta1", "beta2", "eps", "weight_decay", "gamma", "tau", "lr_decay", "decoupled_weight_decay",
          "maximize", "relative")  # the order of the kernel's h[] (_fused_cpu.cpp)
_REAL = {torch.complex64: torch.float32, torch.complex128: torch.float64}  # view_as_real's dtype
_CPU = torch.device("cpu")


def _warn_once(reason: str) -> None:
    _warned(reason)


@functools.lru_cache(maxsize=None)
def _warned(reason: str) -> None:
    warnings.warn(f"AMGT(fused=True): {reason}; using the foreach path instead (same update, slower)",
                  RuntimeWarning, stacklevel=4)


def _compiler() -> Optional[str]:
    for name in filter(None, (os.environ.get("CXX"), "c++", "g++", "clang++")):
        path = shutil.which(name)
        if path:
            return path
    return None


def _cpu_signature() -> str:
    """This CPU's instruction-set flags (the build uses -march=native, so a cache shared between
    machines must not hand one CPU's build to another)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def extensions_dir() -> Path:
    return Path(os.environ.get("AMGT_EXTENSIONS_DIR") or Path.home() / ".cache" / "amgt" / "extensions")


@functools.lru_cache(maxsize=1)
def cpu_kernel() -> Optional[ctypes.CDLL]:
    """The compiled CPU kernel (built on first call, then cached on disk), or None (warned once) when no
    compiler exists or the build fails."""
    cxx = _compiler()
    if cxx is None:
        _warn_once("no C++ compiler found (set $CXX or install g++)")
        return None
    try:
        source = _SOURCE.read_bytes()
    except OSError as exc:  # an installation that left the .cpp out of the package
        _warn_once(f"the kernel source {_SOURCE} is missing ({exc})")
        return None
    try:
        version = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        _warn_once(f"the C++ compiler {cxx} does not run ({exc})")
        return None
    key = hashlib.sha256(b"\0".join([source, cxx.encode(), version.encode(), " ".join(_FLAGS).encode(),
                                     _cpu_signature().encode()])).hexdigest()[:16]
    out = extensions_dir() / f"amgt_fused_cpu_{key}.so"
    if not out.exists():
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
                part = Path(tmp) / out.name
                res = subprocess.run([cxx, *_FLAGS, str(_SOURCE), "-o", str(part)], capture_output=True,
                                     text=True, timeout=300)
                if res.returncode != 0:
                    tail = (res.stderr or res.stdout).strip().splitlines()[-3:]
                    _warn_once(f"building {_SOURCE.name} with {cxx} failed: {' | '.join(tail)}")
                    return None
                os.replace(part, out)  # atomic: concurrent first uses never load half a file
        except (OSError, subprocess.SubprocessError) as exc:
            _warn_once(f"building {_SOURCE.name} failed ({exc})")
            return None
    try:
        lib = ctypes.CDLL(str(out))
        if lib.amgt_fused_abi_version() != _ABI_VERSION:
            raise OSError("ABI version mismatch")
    except (OSError, AttributeError) as exc:
        _warn_once(f"loading {out} failed ({exc})")
        return None
    for fn in (lib.amgt_fused_step_f32, lib.amgt_fused_step_f64):
        fn.restype = None
        fn.argtypes = [ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                       ctypes.c_int]
    return lib


def fused_backend(device: torch.device) -> str:
    """Which fused implementation serves ``device``: ``"cpu-kernel"``, ``"cuda-compile"`` or ``"none"``."""
    return {"cpu": "cpu-kernel", "cuda": "cuda-compile"}.get(device.type, "none")


def _layout(t: Tensor) -> Optional[tuple[int, ...]]:
    """The strides of ``t``'s dimensions longer than 1 if ``t`` covers its memory densely without overlap
    (any dimension order: contiguous, channels_last, transposed), else None."""
    if t.is_contiguous():
        return tuple(s for s, n in zip(t.stride(), t.shape) if n > 1)
    dims = sorted((s, n) for s, n in zip(t.stride(), t.shape) if n > 1)
    expected = 1
    for s, n in dims:
        if s != expected:
            return None
        expected *= n
    return tuple(s for s, n in zip(t.stride(), t.shape) if n > 1)


class _CpuBatch:
    """The tensors of one kernel call, with work copies where a tensor's dtype or memory layout differs
    from its state's (16-bit parameters, a gradient in another layout, a non-dense parameter)."""

    def __init__(self) -> None:
        self.ptrs: list[int] = []
        self.numel: list[int] = []
        self.keep: list[Tensor] = []  # keeps work copies alive during the call
        self.write_back: list[tuple[Tensor, Tensor]] = []  # (original, work copy) to copy back after

    def add(self, p: Tensor, g: Tensor, m: Tensor, v: Tensor, r: Optional[Tensor], step: Tensor) -> None:
        if torch.is_complex(p):
            p, g, m, v = (torch.view_as_real(x) for x in (p, g, m, v))
            r = None if r is None else torch.view_as_real(r)
        if (p.dtype == g.dtype == m.dtype and p.is_contiguous() and g.is_contiguous() and m.is_contiguous()
                and v.is_contiguous() and (r is None or r.is_contiguous())):  # the common case, checked cheaply
            self.ptrs += [p.data_ptr(), g.data_ptr(), m.data_ptr(), v.data_ptr(), 0 if r is None else r.data_ptr(),
                          step.data_ptr()]
            self.numel.append(m.numel())
            return
        ref = _layout(m)
        if ref is None or _layout(v) != ref or (r is not None and _layout(r) != ref):
            ref = None  # state in a layout the kernel cannot walk: work on contiguous copies of everything
        state = []
        for x in (m, v, r):
            if x is not None and ref is None:
                w = x.contiguous()
                if w is not x:
                    self.write_back.append((x, w))
                x = w
            state.append(x)
        m, v, r = state
        if p.dtype != m.dtype or _layout(p) != _layout(m):
            w = torch.empty_like(m).copy_(p)
            self.write_back.append((p, w))
            p = w
        if g.dtype != m.dtype or _layout(g) != _layout(m):
            g = torch.empty_like(m).copy_(g)
        self.keep += [p, g, m, v]
        self.ptrs += [p.data_ptr(), g.data_ptr(), m.data_ptr(), v.data_ptr(), 0 if r is None else r.data_ptr(),
                      step.data_ptr()]
        self.numel.append(m.numel())


def _cpu_fused(lib, params, grads, exp_avgs, exp_avg_sqs, residuals, state_steps, *, hyper: dict,
               diagnostics: Optional[Diagnostics]) -> None:
    batches: dict[torch.dtype, _CpuBatch] = {}
    for i, p in enumerate(params):
        step = state_steps[i]
        if step.dtype != torch.float32 or step.device.type != "cpu":
            raise RuntimeError("AMGT(fused=True) on CPU needs float32 CPU step counters (as AMGT creates them)")
        dtype = exp_avgs[i].dtype
        dtype = _REAL.get(dtype, dtype)
        batch = batches.get(dtype)
        if batch is None:
            batch = batches[dtype] = _CpuBatch()
        batch.add(p, grads[i], exp_avgs[i], exp_avg_sqs[i], residuals[i],
                                                   state_steps[i])
    h = (ctypes.c_double * len(_HYPER))(*(float(hyper[k]) for k in _HYPER))
    acc = diagnostics.accumulator(_CPU) if diagnostics is not None else torch.zeros(5, dtype=torch.float64)
    threads = torch.get_num_threads()
    for dtype, b in batches.items():
        fn = {torch.float32: lib.amgt_fused_step_f32, torch.float64: lib.amgt_fused_step_f64}.get(dtype)
        if fn is None:
            raise RuntimeError(f"AMGT(fused=True) supports float16/bfloat16/float32/float64 parameters, not {dtype}")
        ptrs = (ctypes.c_void_p * len(b.ptrs))(*b.ptrs)
        numel = (ctypes.c_int64 * len(b.numel))(*b.numel)
        fn(len(b.numel), ptrs, numel, h, acc.data_ptr(), threads)
        for orig, work in b.write_back:
            orig.copy_(work)


_CUDA_STEPS: dict[tuple, Optional[Callable]] = {}  # hyperparameters -> compiled step (None: compiling failed)


def _cuda_compiled(static: tuple) -> Optional[Callable]:
    if static not in _CUDA_STEPS:
        from ._capturable import capturable_amgt

        _CUDA_STEPS[static] = torch.compile(functools.partial(capturable_amgt, **dict(static)), fullgraph=True)
    return _CUDA_STEPS[static]


def fused_amgt(params, grads, exp_avgs, exp_avg_sqs, residuals, state_steps, *, lr, beta1, beta2, eps,
               weight_decay, decoupled_weight_decay, gamma, tau, lr_decay, variance, maximize, diagnostics,
               fallback: Callable) -> str:
    """Run the fused step for each device of ``params``; returns the implementation that ran
    (``"fused"``, or ``"foreach"`` after a fallback). ``fallback(indices)`` runs the foreach path on the
    tensors at ``indices``."""
    hyper = dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay, gamma=gamma, tau=tau,
                 lr_decay=lr_decay, decoupled_weight_decay=decoupled_weight_decay, maximize=maximize,
                 relative=variance == "relative")
    all_lists = (params, grads, exp_avgs, exp_avg_sqs, residuals, state_steps)
    by_device: dict[torch.device, list[int]] = {}
    for i, p in enumerate(params):
        by_device.setdefault(p.device, []).append(i)
    ran = "fused"
    for device, idx in by_device.items():
        lists = all_lists if len(by_device) == 1 else [[x[i] for i in idx] for x in all_lists]
        backend = fused_backend(device)
        if backend == "cpu-kernel" and (lib := cpu_kernel()) is not None:
            _cpu_fused(lib, *lists, hyper=hyper, diagnostics=diagnostics)
            continue
        if backend == "cuda-compile":
            static = tuple(sorted((k, v) for k, v in hyper.items() if k != "relative")) + (("variance", variance),)
            step = _cuda_compiled(static)
            if step is not None:
                try:
                    step(*lists, diagnostics=diagnostics)
                    continue
                except Exception as exc:  # Inductor/Triton missing or failing (raised while compiling)
                    _CUDA_STEPS[static] = None
                    _warn_once(f"torch.compile of the CUDA step failed ({type(exc).__name__}: {exc})")
        elif backend == "none":
            _warn_once(f"no fused kernel for device type {device.type!r} (cpu and cuda have one)")
        fallback(idx)
        ran = "foreach"
    return ran
