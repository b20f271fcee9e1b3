"""Time per ``optimizer.step()`` for AMGT and its baselines on parameter sets shaped like real models.

The goals of issue 13 are printed after each size's table, as ratios of minima measured side by side in
this one run: AMGT(fused=True) against torch.optim.Adam(fused=True), and AMGT's default path (the
per-tensor loop on CPU, foreach on CUDA) against Adam-foreach.

Parameter sets (float32, shapes only; values random): LeNet-5 (61,706 parameters, the classic LeCun et al.
1998 layout), ResNet-18 (11,689,512) and ResNet-50 (25,557,032), the shapes taken from torchvision's model
definitions (built on the meta device, no weights downloaded).

Method: all optimizers of one size share the same parameter and gradient tensors (each keeps its own
state); they are interleaved (round-robin, order shuffled each round), each warmed up first, and every
step is timed on its own (``time.perf_counter``; on CUDA with ``torch.cuda.synchronize()`` around it).
Reported: the median and minimum step time, their ratios to Adam-foreach and Adam-fused, the
implementation that ran (``impl``), optimizer-state bytes, the bytes a step moves, the machine's copy
bandwidth, and the load average (``os.getloadavg``) before and after.

"Bytes moved" comes in two figures:
- ``min_bytes``: the least a fused step must read and write (parameters, gradients and every state
  tensor read once; parameters and state written once).
- ``issued_bytes`` (eager paths only): the sum, over the aten operators a step issues (recorded with a
  ``TorchDispatchMode``), of the bytes of their tensor inputs and outputs; caches make the true DRAM
  traffic lower, so this is an upper estimate.
``bw_frac`` is ``min_bytes / (fastest step)`` divided by the best measured copy bandwidth: how close a
step gets to the memory-bound floor. The minimum is reported next to the median because on a shared
machine interference only ever adds time.

Example (a quick run):
    python benchmarks/optimizer_step.py --sizes lenet5,resnet18 --rounds 3 --steps 3
The goal run (as recorded in BENCHMARKS.md):
    python benchmarks/optimizer_step.py --sizes resnet18,resnet50 --rounds 15 --steps 2 --threads 1 \
        --optimizers adam-fused,adam-foreach,amgt-fused,amgt-loop,amgt-foreach
Before/after against an older commit's amgt/:
    git archive efea2d0 amgt | tar -x -C /tmp/orig
    python benchmarks/optimizer_step.py --sizes resnet18 --optimizers adam-foreach,amgt-loop,amgt-foreach \
        --baseline-amgt /tmp/orig --rounds 10 --steps 2 --threads 1
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import amgt  # noqa: E402
from amgt import AMGT  # noqa: E402

LENET5_SHAPES = [(6, 1, 5, 5), (6,), (16, 6, 5, 5), (16,), (120, 400), (120,), (84, 120), (84,), (10, 84), (10,)]


SIZES = ("lenet5", "resnet18", "resnet50", "resnet18-dispatch")


def param_shapes(size: str) -> list[tuple[int, ...]]:
    """Parameter shapes of ``lenet5``, ``resnet18`` or ``resnet50`` (torchvision, meta device);
    ``resnet18-dispatch`` is ResNet-18's 62 tensors with one element each, so a step's time is its
    per-tensor dispatch cost (Python and operator launch), not arithmetic."""
    if size == "lenet5":
        return LENET5_SHAPES
    import torchvision

    if size == "resnet18-dispatch":
        return [(1,)] * len(param_shapes("resnet18"))
    if size not in ("resnet18", "resnet50"):
        raise ValueError(f"Unknown size {size!r}; valid: {', '.join(SIZES)}")
    with torch.device("meta"):
        model = getattr(torchvision.models, size)()
    return [tuple(p.shape) for p in model.parameters()]


def load_baseline_amgt(path: str):
    """Import another copy of the ``amgt`` package from ``path`` (e.g. an older commit, exported with
    ``git archive <sha> amgt | tar -x -C DIR``) under a private name, for before/after timings."""
    import importlib.util

    init = Path(path) / "amgt" / "__init__.py"
    if not init.is_file():
        raise FileNotFoundError(f"{init} not found: --baseline-amgt must be a directory holding amgt/")
    spec = importlib.util.spec_from_file_location("amgt_baseline", init,
                                                  submodule_search_locations=[str(init.parent)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["amgt_baseline"] = module
    spec.loader.exec_module(module)
    return module


BASELINE = None  # set by --baseline-amgt


def _optimizers(device: str) -> dict[str, Callable]:
    """name -> factory(params) for every configuration timed."""
    specs: dict[str, Callable] = {
        "adam-foreach": lambda p: torch.optim.Adam(p, lr=1e-6, foreach=True),
        "adam-fused": lambda p: torch.optim.Adam(p, lr=1e-6, fused=True),
        "adam-loop": lambda p: torch.optim.Adam(p, lr=1e-6, foreach=False),
        "adamw-foreach": lambda p: torch.optim.AdamW(p, lr=1e-6, foreach=True),
        "adabelief-foreach": lambda p: amgt.AdaBelief(p, lr=1e-6, foreach=True),
        "sgd-foreach": lambda p: torch.optim.SGD(p, lr=1e-6, momentum=0.9, foreach=True),
        "amgt-fused": lambda p: AMGT(p, lr=1e-6, fused=True),
        "amgt-foreach": lambda p: AMGT(p, lr=1e-6, foreach=True),
        "amgt-loop": lambda p: AMGT(p, lr=1e-6, foreach=False),
        "amgt-no-threshold-foreach": lambda p: AMGT(p, lr=1e-6, tau=0.0, foreach=True),
        "amgt-no-decay-foreach": lambda p: AMGT(p, lr=1e-6, lr_decay=0.0, foreach=True),
        "amgt-no-variance-foreach": lambda p: AMGT(p, lr=1e-6, gamma=0.0, foreach=True),
        "amgt-all-off-foreach": lambda p: AMGT(p, lr=1e-6, gamma=0.0, tau=0.0, lr_decay=0.0, foreach=True),
    }
    if BASELINE is not None:
        specs["baseline-amgt-loop"] = lambda p: BASELINE.AMGT(p, lr=1e-6, foreach=False)
        specs["baseline-amgt-foreach"] = lambda p: BASELINE.AMGT(p, lr=1e-6, foreach=True)
    return specs


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def copy_bandwidth(device: str, mbytes: int = 256, repeats: int = 9) -> tuple[float, float]:
    """(median, best) bandwidth of ``dst.copy_(src)`` in bytes/s, counting the read and the write."""
    n = mbytes * 2**20 // 4
    src = torch.rand(n, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        dst.copy_(src)
        _sync(device)
        times.append(time.perf_counter() - t0)
    return 2 * src.nbytes / statistics.median(times), 2 * src.nbytes / min(times)


_NO_TRAFFIC = {"detach", "alias", "lift_fresh", "_local_scalar_dense", "empty", "empty_like", "empty_strided",
               "view", "_unsafe_view", "slice", "select", "as_strided", "view_as_real", "view_as_complex"}


class _BytesCounter(TorchDispatchMode):
    """Sums the bytes of tensor inputs and outputs of every aten operator dispatched."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.is_view or func.overloadpacket.__name__ in _NO_TRAFFIC:
            return out  # views and metadata ops move no data
        self.ops += 1
        seen = set()

        def count(x):
            if isinstance(x, torch.Tensor) and x.device.type != "meta" and id(x) not in seen:
                seen.add(id(x))
                if x.dim() > 0:
                    self.bytes += x.numel() * x.element_size()
            elif isinstance(x, (list, tuple)):
                for y in x:
                    count(y)

        count(args)
        count(list((kwargs or {}).values()))
        count(out)
        return out


def state_bytes(opt: torch.optim.Optimizer) -> int:
    return sum(v.numel() * v.element_size() for st in opt.state.values() for v in st.values()
               if isinstance(v, torch.Tensor) and v.dim() > 0)


def make_params(size: str, device: str, seed: int = 0) -> list[torch.nn.Parameter]:
    """Random float32 parameters of ``size``'s shapes on ``device``, each with a random gradient."""
    torch.manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(s, device=device) * 0.05) for s in param_shapes(size)]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    return params


def first_steps(size: str, device: str, steps: int = 3) -> list[float]:
    """Seconds of each of the first ``steps`` steps of a new ``AMGT(fused=True)`` (on CPU the first builds
    or loads the kernel, on CUDA the first compiles)."""
    opt = AMGT(make_params(size, device), lr=1e-6, fused=True)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        opt.step()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


def bench_size(size: str, device: str, rounds: int, steps: int, warmup: int, names: list[str],
               bandwidth: float, seed: int = 0) -> list[dict]:
    params = make_params(size, device, seed)
    numel = sum(p.numel() for p in params)
    grad_bytes = sum(p.grad.numel() * p.grad.element_size() for p in params)
    param_bytes = sum(p.numel() * p.element_size() for p in params)

    factories = _optimizers(device)
    opts = {n: factories[n](params) for n in names if n in factories}
    for name, opt in opts.items():
        for _ in range(warmup):
            opt.step()
    _sync(device)

    times: dict[str, list[float]] = {n: [] for n in opts}
    rng = random.Random(seed)
    order = list(opts)
    for _ in range(rounds):
        rng.shuffle(order)
        for name in order:
            opt = opts[name]
            for _ in range(steps):
                _sync(device)
                t0 = time.perf_counter()
                opt.step()
                _sync(device)
                times[name].append(time.perf_counter() - t0)

    rows = []
    for name, opt in opts.items():
        sbytes = state_bytes(opt)
        # fused floor: read params, grads, all state; write params and all state
        min_bytes = 2 * param_bytes + grad_bytes + 2 * sbytes
        issued = None
        if "fused" not in name:  # a fused kernel issues no aten operators to count
            counter = _BytesCounter()
            with counter:
                opt.step()
            issued = counter.bytes
        med = statistics.median(times[name])
        rows.append(dict(size=size, numel=numel, tensors=len(params), optimizer=name, median_s=med,
                         impl=amgt.optimizer_implementation(opt),
                         min_s=min(times[name]),
                         q1_s=statistics.quantiles(times[name], n=4)[0] if len(times[name]) > 1 else med,
                         q3_s=statistics.quantiles(times[name], n=4)[2] if len(times[name]) > 1 else med,
                         samples=len(times[name]), state_bytes=sbytes, min_bytes=min_bytes,
                         issued_bytes=issued, bw_frac=min_bytes / min(times[name]) / bandwidth))
    by = {r["optimizer"]: r for r in rows}
    for r in rows:
        r["x_adam_foreach"] = r["median_s"] / by["adam-foreach"]["median_s"] if "adam-foreach" in by else None
        r["x_adam_fused"] = r["median_s"] / by["adam-fused"]["median_s"] if "adam-fused" in by else None
        r["x_adam_foreach_min"] = r["min_s"] / by["adam-foreach"]["min_s"] if "adam-foreach" in by else None
        r["x_adam_fused_min"] = r["min_s"] / by["adam-fused"]["min_s"] if "adam-fused" in by else None
    del opts, params
    gc.collect()
    return rows


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return dict(nproc=os.cpu_count(), cpu=cpu, torch=torch.__version__, python=platform.python_version(),
                load_before=_load(),
                threads=torch.get_num_threads(),
                cuda=torch.cuda.get_device_name() if torch.cuda.is_available() else None,
                date=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))


def _load() -> str:
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def _fmt_bytes(b) -> str:
    return "n/a" if b is None else f"{b / 2**20:,.1f}"


def markdown(rows: list[dict], info: dict) -> str:
    out = [f"Machine: {info['nproc']} CPUs ({info['cpu']}), torch {info['torch']}, {info['threads']} threads"
           f"{', CUDA ' + info['cuda'] if info['cuda'] else ''}; device {info['device']}; {info['date']}; "
           f"copy bandwidth {info['bandwidth_median'] / 1e9:.2f} GB/s median, {info['bandwidth'] / 1e9:.2f} GB/s best "
           f"(read+write, 256 MiB float32 copy)", ""]
    for size in dict.fromkeys(r["size"] for r in rows):
        sub = [r for r in rows if r["size"] == size]
        out.append(f"**{size}** ({sub[0]['numel']:,} parameters in {sub[0]['tensors']} tensors)")
        out.append("")
        out.append("| optimizer | impl | median ms (IQR) | min ms | × Adam-foreach (median) | × Adam-fused (median) | "
                   "× Adam-foreach (min) | × Adam-fused (min) | state MiB | min MiB moved | issued MiB | "
                   "% of best copy bw (at min) |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in sorted(sub, key=lambda r: r["median_s"]):
            xa = "n/a" if r["x_adam_foreach"] is None else f"{r['x_adam_foreach']:.2f}"
            xf = "n/a" if r["x_adam_fused"] is None else f"{r['x_adam_fused']:.2f}"
            xm = "n/a" if r["x_adam_foreach_min"] is None else f"{r['x_adam_foreach_min']:.2f}"
            xfm = "n/a" if r["x_adam_fused_min"] is None else f"{r['x_adam_fused_min']:.2f}"
            out.append(f"| {r['optimizer']} | {r['impl']} | {r['median_s'] * 1e3:.2f} ({r['q1_s'] * 1e3:.2f}–"
                       f"{r['q3_s'] * 1e3:.2f}) | {r['min_s'] * 1e3:.2f} | {xa} | {xf} | {xm} | {xfm} | "
                       f"{_fmt_bytes(r['state_bytes'])} | "
                       f"{_fmt_bytes(r['min_bytes'])} | {_fmt_bytes(r['issued_bytes'])} | "
                       f"{100 * r['bw_frac']:.0f} |")
        out.append("")
        out += goal_lines(sub, info["device"])
    out.append(f"Load average (1, 5, 15 min): {info['load_before']} before, {info['load_after']} after.")
    return "\n".join(out)


GOALS = (("amgt-fused", "adam-fused", 1.3), ("amgt-default", "adam-foreach", 1.25))


def goal_lines(rows: list[dict], device: str) -> list[str]:
    """Issue 13's goals for one size: ratio of minima (and of medians), with the target."""
    by = {r["optimizer"]: r for r in rows}
    default = "amgt-foreach" if device.startswith("cuda") else "amgt-loop"  # foreach=None's choice
    out = []
    for name, ref, target in GOALS:
        name = default if name == "amgt-default" else name
        if name in by and ref in by:
            a, b = by[name], by[ref]
            ratio = a["min_s"] / b["min_s"]
            out.append(f"- goal {name} ≤ {target}× {ref}: **{ratio:.2f}×** on minima ({a['median_s'] / b['median_s']:.2f}× "
                       f"on medians) — {'met' if ratio <= target else 'not met'}")
    return out + [""] if out else []


def profile_steps(size: str, device: str, name: str, warmup: int, steps: int = 5) -> str:
    """torch.profiler's per-operator table (self CPU time, sorted) for ``steps`` steps of one optimizer."""
    from torch.profiler import profile

    opt = _optimizers(device)[name](make_params(size, device))
    for _ in range(warmup):
        opt.step()
    _sync(device)
    with profile() as prof:
        for _ in range(steps):
            opt.step()
        _sync(device)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="lenet5,resnet18,resnet50", help="comma list of: " + ", ".join(SIZES))
    ap.add_argument("--device", default="auto", help="cpu, cuda or auto (cuda when available)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds over all optimizers")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per optimizer per round")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per optimizer before timing")
    ap.add_argument("--optimizers", default="all", help="comma list of names, or 'all'")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--json", default=None, help="write the rows and machine info here")
    ap.add_argument("--baseline-amgt", default=None, metavar="DIR",
                    help="also time the AMGT found in DIR/amgt (an older version) as baseline-amgt-loop/-foreach")
    ap.add_argument("--profile", action="store_true",
                    help="instead of timing, print torch.profiler's per-operator table for each named optimizer "
                         "and size (5 steps after warm-up): where a step's time goes")
    ap.add_argument("--compile-startup", type=int, default=0, metavar="N",
                    help="instead of timing steps, run N fresh processes one after the other, each timing the first "
                         "3 steps of AMGT(fused=True) per size; the first process builds the CPU kernel into an "
                         "empty cache directory, the later ones load it")
    ap.add_argument("--first-steps", action="store_true", help=argparse.SUPPRESS)  # one such process
    args = ap.parse_args(argv)
    global BASELINE
    if args.baseline_amgt:
        BASELINE = load_baseline_amgt(args.baseline_amgt)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    all_names = list(_optimizers(device))
    names = all_names if args.optimizers == "all" else args.optimizers.split(",")
    unknown = [n for n in names if n not in all_names]
    if unknown:
        ap.error(f"unknown optimizers {unknown}; valid: {', '.join(all_names)}")
    if BASELINE is not None:
        names += [n for n in ("baseline-amgt-loop", "baseline-amgt-foreach") if n not in names]
    if "adam-fused" in names and device == "cpu" and not hasattr(torch, "_fused_adam_"):
        names.remove("adam-fused")

    if args.first_steps:
        for size in args.sizes.split(","):
            times = first_steps(size, device)
            print(f"{size}: first 3 steps " + ", ".join(f"{t:.3f} s" for t in times), flush=True)
        return 0
    if args.compile_startup:
        import subprocess

        import tempfile

        cmd = [sys.executable, str(Path(__file__).resolve()), "--first-steps", "--sizes", args.sizes,
               "--device", device] + (["--threads", str(args.threads)] if args.threads else [])
        with tempfile.TemporaryDirectory() as cache:  # an empty kernel cache: the first process builds
            env = dict(os.environ, AMGT_EXTENSIONS_DIR=cache)
            for i in range(args.compile_startup):
                t0 = time.perf_counter()
                out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout.strip()
                print(f"process {i + 1} ({time.perf_counter() - t0:.1f} s wall): {out}", flush=True)
        return 0
    if args.profile:
        for size in args.sizes.split(","):
            for name in names:
                print(f"## {name}, {size}: torch.profiler, 5 steps ({torch.get_num_threads()} threads)")
                print(profile_steps(size, device, name, args.warmup))
        return 0

    info = machine()
    info["device"] = device
    info["bandwidth_median"], info["bandwidth"] = copy_bandwidth(device)
    info["command"] = " ".join([Path(sys.argv[0]).as_posix()] + (argv if argv is not None else sys.argv[1:]))
    rows = []
    for size in args.sizes.split(","):
        t0 = time.perf_counter()
        rows += bench_size(size, device, args.rounds, args.steps, args.warmup, names, info["bandwidth"])
        print(f"# {size}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    info["load_after"] = _load()
    print(markdown(rows, info))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
