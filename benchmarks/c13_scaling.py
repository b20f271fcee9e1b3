"""Claim C13's scaling check: multiplying f by a constant c leaves the iterates of α_k = 1/(μk) unchanged
(μ scales by c, the gradient by c), but scales the exponent of the claimed bound ‖x_k − x*‖ ≤ C·k^(−μ/2).

A computation, not a speed benchmark (exact, float64, no randomness in the deterministic case). For each of
the paper's quadratics 4.10.1 and 4.10.2 and c in ``--scales``: the largest difference between the iterates of f
and of c·f (``workers.quadratic.gradient_descent`` with α_k = 1/(μ_c k)), the fitted log-log slope of
‖x_k − x*‖ (``workers.quadratic.inverse_k_rates``, deterministic and with gradient noise scaled by c) and the
bound's exponent −μ_c/2. A bound whose exponent grows with c while the iterates do not change cannot hold for
every c: the claimed rate is not a property of the iterates.

    PYTHONPATH=. python benchmarks/c13_scaling.py --scales 1,10,100
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from workers.quadratic import gradient_descent, inverse_k_rates, paper_quadratic  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", default="1,10,100", help="comma-separated constants c > 0")
    ap.add_argument("--steps", type=int, default=10_000)
    args = ap.parse_args(argv)
    scales = [float(c) for c in args.scales.split(",")]
    print("quadratic  c      max |x_k(c·f) − x_k(f)|  slope (deterministic)  slope (noisy)  bound exponent −μ_c/2")
    for name in ("4.10.1", "4.10.2"):
        q = paper_quadratic(name)
        x0 = q.minimizer + 1.0
        base = gradient_descent(q, x0, lambda k: 1.0 / (q.mu * k), args.steps)
        for c in scales:
            qc = replace(q, hessian=c * q.hessian)
            dist = gradient_descent(qc, x0, lambda k: 1.0 / (qc.mu * k), args.steps)
            det = inverse_k_rates(qc, steps=args.steps)
            noisy = inverse_k_rates(qc, steps=args.steps, noise_std=c * 1.0, repeats=20, seed=0)
            diff = float(np.max(np.abs(dist - base)))
            print(f"{name:9}  {c:<6g} {diff:<24.3g} {det['fitted_slope']:<22.3f} {noisy['fitted_slope']:<14.3f} "
                  f"{det['paper_slope']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
