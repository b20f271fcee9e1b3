r"""The convex quadratics of the paper's "Numerical Application" (4.10.1, 4.10.2), a general quadratic, the
Rosenbrock function (non-convex, claim C14), as benchmarks; and the quadratic study's facts (C11–C13).

Every number in :func:`study_facts` is computed here (autograd Hessians, ``numpy.linalg.eigvalsh``,
iterated gradient descent, least-squares fits); the paper's statements (``amgt-spec.md``, "Known errors in
the paper") are placed beside them, never substituted for them.

Gradient descent on :math:`f(x) = \tfrac12 (x-x^*)^\top H (x-x^*) + f^*` with a fixed step η maps the error
:math:`e_k = x_k - x^*` to :math:`(I - \eta H) e_k`, so its contraction factor (spectral radius) is
:math:`\rho(\eta) = \max_i |1 - \eta \lambda_i|`: it converges iff :math:`0 < \eta < 2/\lambda_{max}`, and
ρ is smallest, :math:`(\kappa-1)/(\kappa+1)`, at :math:`\eta^* = 2/(\lambda_{min}+\lambda_{max})`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from torch import nn

import amgt

from ._registry import register_benchmark

__all__ = [
    "Quadratic",
    "FunctionProblem",
    "paper_quadratic",
    "general_quadratic",
    "rosenbrock",
    "gd_contraction",
    "gradient_descent",
    "run_optimizer",
    "fit_loglog_slope",
    "inverse_k_rates",
    "study_facts",
    "PAPER",
]


# ---------------------------------------------------------------- the functions
def _f_4101(x: torch.Tensor) -> torch.Tensor:
    """Paper Application 4.10.1: f(x, y) = 2x² + 2y² − 2xy + 2."""
    return 2 * x[0] ** 2 + 2 * x[1] ** 2 - 2 * x[0] * x[1] + 2


def _f_4102(x: torch.Tensor) -> torch.Tensor:
    """Paper Application 4.10.2: f(x, y) = x² + 2y² − 2xy + 2."""
    return x[0] ** 2 + 2 * x[1] ** 2 - 2 * x[0] * x[1] + 2


@dataclass(frozen=True)
class Quadratic:
    """f(x) = ½ (x − x*)ᵀ H (x − x*) + f*, with H symmetric positive definite (d × d, float64).

    Attributes:
        hessian: H, numpy (d, d). minimizer: x*, (d,). f_star: f(x*). name: label.
    """

    hessian: np.ndarray
    minimizer: np.ndarray
    f_star: float
    name: str = "quadratic"

    @property
    def dim(self) -> int:
        return int(self.hessian.shape[0])

    @property
    def eigenvalues(self) -> np.ndarray:
        """Eigenvalues of H, ascending (``numpy.linalg.eigvalsh``)."""
        return np.linalg.eigvalsh(self.hessian)

    @property
    def mu(self) -> float:
        """Strong-convexity constant μ = λmin."""
        return float(self.eigenvalues[0])

    @property
    def L(self) -> float:
        """Gradient Lipschitz constant L = λmax."""
        return float(self.eigenvalues[-1])

    @property
    def condition_number(self) -> float:
        return self.L / self.mu

    def value(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.as_tensor(self.hessian, dtype=x.dtype, device=x.device)
        e = x - torch.as_tensor(self.minimizer, dtype=x.dtype, device=x.device)
        return 0.5 * e @ (h @ e) + self.f_star

    def facts(self) -> dict[str, Any]:
        """Spectrum, condition number, GD stability limit 2/λmax, optimal fixed step 2/(λmin+λmax) and
        its contraction (κ−1)/(κ+1)."""
        lam = self.eigenvalues
        opt = 2.0 / (lam[0] + lam[-1])
        return {
            "hessian": self.hessian.tolist(),
            "eigenvalues": lam.tolist(),
            "mu": self.mu,
            "L": self.L,
            "condition_number": self.condition_number,
            "minimizer": self.minimizer.tolist(),
            "f_star": self.f_star,
            "gd_stability_limit": 2.0 / lam[-1],
            "gd_optimal_step": opt,
            "gd_optimal_contraction": gd_contraction(lam, opt),
        }


def _from_callable(fn: Callable[[torch.Tensor], torch.Tensor], dim: int, name: str) -> Quadratic:
    """Recover H, x*, f* of a quadratic given as a function: H by autograd at 0 (exact for a quadratic),
    x* by solving ∇f(x*) = H x* + ∇f(0) = 0, f* = f(x*)."""
    zero = torch.zeros(dim, dtype=torch.float64)
    h = torch.autograd.functional.hessian(fn, zero).numpy()
    g0 = torch.autograd.functional.jacobian(fn, zero).numpy()
    if not np.allclose(h, h.T):
        raise ValueError(f"{name}: Hessian is not symmetric")
    x_star = np.linalg.solve(h, -g0)
    f_star = float(fn(torch.as_tensor(x_star)))
    return Quadratic(h, x_star, f_star, name)


def paper_quadratic(name: str) -> Quadratic:
    """The paper's quadratic ``"4.10.1"`` or ``"4.10.2"``, its facts computed from the formula."""
    fns = {"4.10.1": _f_4101, "4.10.2": _f_4102}
    if name not in fns:
        raise ValueError(f"Unknown paper quadratic {name!r} (allowed: {', '.join(fns)})")
    return _from_callable(fns[name], 2, f"quadratic-{name}")


def general_quadratic(eigenvalues: Optional[Sequence[float]] = None, *, condition_number: Optional[float] = None,
                      dim: int = 10, mu: float = 1.0, rotate: bool = True, problem_seed: int = 0) -> Quadratic:
    """A quadratic with minimizer 0 and f* = 0 and the given spectrum.

    Either ``eigenvalues`` (all > 0), or ``condition_number`` κ ≥ 1 with ``dim`` eigenvalues log-spaced in
    [μ, κμ]. With ``rotate``, H = Q diag(λ) Qᵀ for a random orthogonal Q (QR of a Gaussian matrix drawn
    with ``problem_seed``); otherwise H is diagonal.

    Raises:
        ValueError: neither/both spectrum arguments, a non-positive eigenvalue, κ < 1, dim < 1.
    """
    if (eigenvalues is None) == (condition_number is None):
        raise ValueError("general quadratic: give exactly one of 'eigenvalues' or 'condition_number'")
    if eigenvalues is not None:
        lam = np.asarray(eigenvalues, dtype=np.float64).ravel()
        if lam.size < 1 or not np.all(np.isfinite(lam)) or np.any(lam <= 0):
            raise ValueError(f"Invalid eigenvalues: {list(eigenvalues)!r} (allowed: one or more numbers > 0)")
    else:
        if not (isinstance(condition_number, (int, float)) and condition_number >= 1):
            raise ValueError(f"Invalid condition_number: {condition_number!r} (allowed: a number ≥ 1)")
        if not (isinstance(dim, int) and dim >= 1):
            raise ValueError(f"Invalid dim: {dim!r} (allowed: an integer ≥ 1)")
        if not mu > 0:
            raise ValueError(f"Invalid mu: {mu!r} (allowed: > 0)")
        lam = mu * np.logspace(0.0, math.log10(condition_number), dim) if dim > 1 else np.array([mu * condition_number])
        if dim > 1:
            lam[0], lam[-1] = mu, mu * condition_number
    d = lam.size
    if rotate and d > 1:
        rng = np.random.default_rng(problem_seed)
        q, r = np.linalg.qr(rng.standard_normal((d, d)))
        q = q * np.sign(np.diag(r))
        h = (q * lam) @ q.T
        h = 0.5 * (h + h.T)
    else:
        h = np.diag(lam)
    return Quadratic(h, np.zeros(d), 0.0, "quadratic")


def rosenbrock(x: torch.Tensor, a: float = 1.0, b: float = 100.0) -> torch.Tensor:
    """Rosenbrock's function Σ_i (a − x_i)² + b (x_{i+1} − x_i²)² (non-convex; minimum 0 at (a, a², …) =
    (1, …, 1) for a = 1)."""
    return ((a - x[:-1]) ** 2).sum() + (b * (x[1:] - x[:-1] ** 2) ** 2).sum()


# ---------------------------------------------------------------- gradient descent facts
def gd_contraction(eigenvalues: Sequence[float], lr: float) -> float:
    """ρ(η) = max_i |1 − η λ_i|: the per-step contraction of ‖x_k − x*‖ under gradient descent with step η
    (the spectral radius of I − ηH); GD converges from every start iff ρ < 1."""
    lam = np.asarray(eigenvalues, dtype=np.float64)
    return float(np.max(np.abs(1.0 - lr * lam)))


def gradient_descent(q: Quadratic, x0: Sequence[float], lrs: Sequence[float] | Callable[[int], float],
                     steps: int) -> np.ndarray:
    """Iterate x_{k+1} = x_k − α_k ∇f(x_k) (in float64), α_k from a list or a function of k = 1, 2, ….

    Returns:
        Distances ‖x_k − x*‖ for k = 0..steps, shape (steps + 1,); inf once the iterate overflows.
    """
    x = np.asarray(x0, dtype=np.float64) - q.minimizer
    out = np.empty(steps + 1)
    out[0] = np.linalg.norm(x)
    with np.errstate(over="ignore", invalid="ignore"):
        for k in range(1, steps + 1):
            a = lrs(k) if callable(lrs) else lrs
            x = x - a * (q.hessian @ x)
            out[k] = np.linalg.norm(x)
    out[~np.isfinite(out)] = np.inf
    return out


def _iterations_to(dist: np.ndarray, tol: float) -> Optional[int]:
    hit = np.nonzero(dist <= tol)[0]
    return int(hit[0]) if hit.size else None


def run_optimizer(q: Quadratic, name: str, x0: Sequence[float], steps: int, **hparams: Any) -> np.ndarray:
    """Run ``amgt.build_optimizer(name, ...)`` on the quadratic (float64) from x0 for ``steps`` steps.

    Returns:
        Distances ‖x_k − x*‖, k = 0..steps, shape (steps + 1,).
    """
    x = torch.tensor(np.asarray(x0, dtype=np.float64), requires_grad=True)
    opt = amgt.build_optimizer(name, [x], **hparams)
    x_star = torch.as_tensor(q.minimizer)
    out = [float(torch.linalg.vector_norm(x.detach() - x_star))]
    for _ in range(steps):
        opt.zero_grad()
        q.value(x).backward()
        opt.step()
        out.append(float(torch.linalg.vector_norm(x.detach() - x_star)))
    return np.asarray(out)


def fit_loglog_slope(k: np.ndarray, dist: np.ndarray) -> float:
    """Least-squares slope of log ‖x_k − x*‖ against log k (``numpy.polyfit`` of degree 1); points with a
    zero or non-finite distance are dropped; NaN when fewer than 2 remain."""
    k, dist = np.asarray(k, dtype=np.float64), np.asarray(dist, dtype=np.float64)
    ok = np.isfinite(dist) & (dist > 0) & (k > 0)
    if ok.sum() < 2:
        return math.nan
    return float(np.polyfit(np.log(k[ok]), np.log(dist[ok]), 1)[0])


def inverse_k_rates(q: Quadratic, *, steps: int = 10_000, noise_std: float = 0.0, repeats: int = 1,
                    seed: int = 0, fit_from: Optional[int] = None) -> dict[str, Any]:
    """Gradient descent with the proofs' step α_k = 1/(μk) (claim C13), run in H's eigenbasis (the same
    iterates rotated, so that the λmin component is annihilated exactly at k = 1 as in exact arithmetic).

    Each coordinate obeys e_{k+1} = (1 − λ_i/(μk)) e_k − ξ_k/(μk), ξ_k ~ N(0, noise_std²) when noisy (the
    stochastic-gradient case). The start is x0 = x* + (1, …, 1) in the eigenbasis. With noise, the root
    mean square over ``repeats`` runs is used.

    Returns:
        ``fitted_slope`` of log ‖x_k − x*‖ vs log k over k in [fit_from, steps] (default steps/100),
        ``paper_slope`` −μ/2, ``last_ratio`` ‖x_K − x*‖/‖x_{K−1} − x*‖ (→ 1 means sublinear: linear
        convergence needs a ratio bounded below 1), and the final distance.
    """
    lam = q.eigenvalues
    mu = lam[0]
    rng = np.random.default_rng(seed)
    e = np.ones((repeats, lam.size))
    sq = np.empty(steps + 1)
    sq[0] = np.mean(np.sum(e**2, axis=1))
    for k in range(1, steps + 1):
        a = 1.0 / (mu * k)
        e = e - a * lam * e
        if noise_std > 0:
            e = e - a * noise_std * rng.standard_normal(e.shape)
        sq[k] = np.mean(np.sum(e**2, axis=1))
    dist = np.sqrt(sq)
    fit_from = fit_from or max(1, steps // 100)
    ks = np.arange(steps + 1)
    sel = ks >= fit_from
    return {
        "steps": steps,
        "noise_std": noise_std,
        "repeats": repeats,
        "fit_range": [int(fit_from), int(steps)],
        "mu": float(mu),
        "fitted_slope": fit_loglog_slope(ks[sel], dist[sel]),
        "paper_slope": -float(mu) / 2.0,
        "last_ratio": float(dist[-1] / dist[-2]) if dist[-2] > 0 else math.nan,
        "final_distance": float(dist[-1]),
        "exact_zero_at_step": _first_zero(dist),  # x* reached exactly (finite termination), else None
    }


# ---------------------------------------------------------------- what the paper states (amgt-spec.md)
PAPER = {
    "4.10.1": {
        "eigenvalues": [2.0, 6.0],
        "stability_limit": 1.0 / 3.0,  # "converges iff η < 1/3"
        "fastest_step_in_table_4_4": 0.3,
        "table_4_4": {0.01: "very slow convergence", 0.1: "moderate convergence", 0.3: "fastest convergence",
                      0.4: "oscillatory/divergent", 1.0: "likely diverges"},
        "start": [1.0, 1.0],
    },
    "4.10.2": {
        "hessian": [[2.0, 2.0], [-2.0, 4.0]],
        "eigenvalues": [1.17, 4.83],
        "alpha_opt": 0.33,
        "rapid_convergence_steps": [0.3, 0.4],  # "using α = 0.3 to 0.40 would yield rapid convergence"
        "start": [2.0, 2.0],
    },
    "C13": {"rate": "linear", "bound_exponent": "-mu/2"},
}


GENERIC_START = [1.0, 0.0]  # excites both eigen-directions of 4.10.1 and 4.10.2 (the paper's starts do not all)


def _observed_rate(dist: np.ndarray, tol: float) -> float:
    """Geometric-mean per-step factor ‖x_k − x*‖/‖x_0 − x*‖)^(1/k) over the first k ≤ 20 steps (stopping
    before the distance falls under ``tol``/1e3 or reaches 0)."""
    k = 0
    for i in range(1, min(20, dist.size - 1) + 1):
        if not np.isfinite(dist[i]) or dist[i] <= tol * 1e-3:
            break
        k = i
    if k == 0:
        return 0.0 if dist.size > 1 and dist[1] == 0 else math.nan
    return float((dist[k] / dist[0]) ** (1.0 / k))


def _gd_table(q: Quadratic, x0, lrs, steps: int, tol: float) -> list[dict[str, Any]]:
    rows = []
    lam = q.eigenvalues
    for lr in lrs:
        dist = gradient_descent(q, x0, lr, steps)
        generic = gradient_descent(q, GENERIC_START, lr, steps)
        rho = gd_contraction(lam, lr)
        rows.append({
            "lr": lr,
            "contraction": rho,                      # worst case over starts: max |1 − ηλ|
            "converges": bool(rho < 1.0),            # from every start
            "iterations_to_tol": _iterations_to(dist, tol),          # from the paper's start
            "observed_rate_from_start": _observed_rate(dist, tol),   # from the paper's start
            "final_distance": float(dist[-1]),
            "iterations_to_tol_generic_start": _iterations_to(generic, tol),
            "final_distance_generic_start": float(generic[-1]),
        })
    return rows


def _first_zero(dist: np.ndarray) -> Optional[int]:
    hit = np.nonzero(dist == 0.0)[0]
    return int(hit[0]) if hit.size else None


def study_facts(*, steps: int = 200, tol: float = 1e-6, adaptive_lr: float = 0.1,
                c13_steps: int = 10_000, c13_noise_std: float = 1.0, c13_repeats: int = 200,
                c13_amgt_steps: int = 2_000) -> dict[str, Any]:
    """The quadratic study's computed facts (claims C11–C13), JSON-serialisable, with the paper's values beside.

    Args:
        steps: iterations of each method on 4.10.1 / 4.10.2. tol: ‖x − x*‖ counted as converged.
        adaptive_lr: lr of Adam and AMGT in the method comparison.
        c13_steps, c13_noise_std, c13_repeats: the 1/(μk) gradient-descent rate fits (deterministic and
            noisy). c13_amgt_steps: steps of AMGT with η_t = 1/(μt) (lr = 1/μ, lr_decay = 1) for its fit.

    Returns:
        {"4.10.1": {...}, "4.10.2": {...}, "C13": {...}, "settings": {...}}; keys explained in
        ``docs/workers.md``. ``None`` stands for "never" (e.g. tolerance not reached).
    """
    out: dict[str, Any] = {"settings": {"steps": steps, "tol": tol, "adaptive_lr": adaptive_lr,
                                        "c13_steps": c13_steps, "c13_noise_std": c13_noise_std,
                                        "c13_repeats": c13_repeats, "c13_amgt_steps": c13_amgt_steps,
                                        "generic_start": GENERIC_START}}
    for name in ("4.10.1", "4.10.2"):
        q = paper_quadratic(name)
        paper = PAPER[name]
        x0 = paper["start"]
        facts = q.facts()
        facts["start"] = x0
        facts["start_is_eigenvector"] = bool(np.linalg.matrix_rank(
            np.column_stack([q.hessian @ (np.asarray(x0) - q.minimizer), np.asarray(x0) - q.minimizer])) == 1)
        paper_steps = list(paper["table_4_4"]) + [0.5] if name == "4.10.1" else [0.001, 0.1, 0.3, 0.4, 1.0]
        lrs = sorted(float(v) for v in set(paper_steps) | {facts["gd_optimal_step"]})
        table = _gd_table(q, x0, lrs, steps, tol)
        facts["gd"] = table
        conv = [r for r in table if r["converges"]]
        best = min(r["contraction"] for r in conv)
        facts["fastest_steps_by_contraction"] = [r["lr"] for r in conv if abs(r["contraction"] - best) < 1e-12]
        in_paper = [r for r in conv if r["lr"] in paper_steps]
        best_paper = min(r["contraction"] for r in in_paper)
        facts["fastest_paper_steps_by_contraction"] = [
            r["lr"] for r in in_paper if abs(r["contraction"] - best_paper) < 1e-12]
        methods = {}
        for label, start in (("start", x0), ("generic_start", GENERIC_START)):
            runs = {
                "gd_optimal_step": gradient_descent(q, start, facts["gd_optimal_step"], steps),
                "gd_inverse_mu_k": gradient_descent(q, start, lambda k: 1.0 / (q.mu * k), steps),
                "adam": run_optimizer(q, "adam", start, steps, lr=adaptive_lr),
                "amgt": run_optimizer(q, "amgt", start, steps, lr=adaptive_lr),
                "amgt_inverse_mu_k": run_optimizer(q, "amgt", start, steps, lr=1.0 / q.mu, lr_decay=1.0),
            }
            methods[label] = {m: {"iterations_to_tol": _iterations_to(d, tol), "final_distance": float(d[-1])}
                              for m, d in runs.items()}
        facts["methods"] = methods
        facts["paper"] = {k: v for k, v in paper.items() if k != "table_4_4"}
        if "table_4_4" in paper:
            facts["paper"]["table_4_4"] = {str(k): v for k, v in paper["table_4_4"].items()}
        if name == "4.10.2":
            written = np.asarray(paper["hessian"])
            facts["paper"]["eigenvalues_of_written_hessian"] = [
                [float(z.real), float(z.imag)] for z in np.linalg.eigvals(written)]
            facts["rapid_convergence_steps_converge"] = {
                str(lr): bool(gd_contraction(q.eigenvalues, lr) < 1.0) for lr in paper["rapid_convergence_steps"]}
        out[name] = facts
    c13: dict[str, Any] = {}
    for label, q in (("4.10.1", paper_quadratic("4.10.1")), ("4.10.2", paper_quadratic("4.10.2")),
                     ("kappa10_d10", general_quadratic(condition_number=10.0, dim=10, mu=1.0))):
        det = inverse_k_rates(q, steps=c13_steps)
        entry = {
            "deterministic": det,
            "noisy": inverse_k_rates(q, steps=c13_steps, noise_std=c13_noise_std, repeats=c13_repeats),
        }
        if q.dim == 2:
            d = run_optimizer(q, "amgt", GENERIC_START, c13_amgt_steps, lr=1.0 / q.mu, lr_decay=1.0)
            ks = np.arange(d.size)
            sel = ks >= max(1, c13_amgt_steps // 100)
            entry["amgt_inverse_mu_k"] = {
                "steps": c13_amgt_steps, "start": GENERIC_START,
                "fitted_slope": fit_loglog_slope(ks[sel], d[sel]), "paper_slope": -q.mu / 2.0,
                "last_ratio": float(d[-1] / d[-2]) if d[-2] > 0 else math.nan, "final_distance": float(d[-1]),
            }
        c13[label] = entry
    c13["paper"] = PAPER["C13"]
    out["C13"] = c13
    return _json_clean(out)


def _json_clean(obj: Any) -> Any:
    """Plain Python types for strict JSON: numpy scalars → float/int/bool, NaN/±inf → None."""
    if isinstance(obj, dict):
        return {str(k): _json_clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_clean(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


# ---------------------------------------------------------------- as benchmarks (run_trial)
class _Point(nn.Module):
    def __init__(self, x0: np.ndarray) -> None:
        super().__init__()
        self.x = nn.Parameter(torch.as_tensor(x0, dtype=torch.float64).clone())


class FunctionProblem:
    """A deterministic test function optimised directly: one parameter tensor x (float64).

    Each step's loss is f(x) + ξᵀx with ξ ~ N(0, noise_std² I) drawn from the epoch's generator (so the
    gradient is ∇f(x) + ξ: additive gradient noise, the stochastic case); the logged per-step loss is
    f(x_k) − f* without the noise. ``evaluate`` gives, at the epoch's last iterate, ``train_loss`` =
    f(x) − f*, ``distance_to_optimum`` = ‖x − x*‖ and ``grad_norm`` = ‖∇f(x)‖ (noise-free).
    """

    kind = "function"

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], x0: np.ndarray, x_star: np.ndarray,
                 f_star: float, steps_per_epoch: int, noise_std: float, device: torch.device) -> None:
        self.fn, self.f_star = fn, f_star
        self.model = _Point(x0).to(device)
        self.x_star = torch.as_tensor(x_star, dtype=torch.float64, device=device)
        self.steps_per_epoch, self.noise_std, self.device = steps_per_epoch, noise_std, device

    def train_batches(self, batch_size, generator: torch.Generator):
        n = self.model.x.numel()
        for _ in range(self.steps_per_epoch):
            if self.noise_std > 0:
                yield (torch.randn(n, generator=generator, dtype=torch.float64) * self.noise_std).to(self.device)
            else:
                yield None

    @staticmethod
    def batch_size_of(batch) -> int:
        return 1

    def step_loss(self, noise):
        x = self.model.x
        value = self.fn(x)
        loss = value if noise is None else value + noise @ x
        return loss, (value.detach() - self.f_star)

    def evaluate(self, evaluate_test: bool) -> dict[str, float]:
        x = self.model.x.detach().clone().requires_grad_(True)
        value = self.fn(x)
        (grad,) = torch.autograd.grad(value, x)
        return {
            "train_loss": float(value.detach()) - self.f_star,
            "distance_to_optimum": float(torch.linalg.vector_norm(x.detach() - self.x_star)),
            "grad_norm": float(torch.linalg.vector_norm(grad)),
        }


_PROBLEM_KEYS = {"x0", "noise_std", "eigenvalues", "condition_number", "dim", "mu", "rotate", "problem_seed", "a", "b"}


def _problem_options(config: dict, allowed: set[str]) -> dict[str, Any]:
    opts = dict(config.get("problem") or {})
    bad = sorted(set(opts) - allowed)
    if bad:
        raise ValueError(f"Invalid problem keys for {config['benchmark']!r}: {', '.join(bad)} "
                         f"(allowed: {', '.join(sorted(allowed))})")
    noise = opts.get("noise_std", 0.0)
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or noise < 0:
        raise ValueError(f"Invalid problem.noise_std: {noise!r} (allowed: a number ≥ 0)")
    return opts


def _x0(opts: dict, default: Sequence[float], dim: int) -> np.ndarray:
    x0 = np.asarray(opts.get("x0", default), dtype=np.float64).ravel()
    if x0.size != dim or not np.all(np.isfinite(x0)):
        raise ValueError(f"Invalid problem.x0: {opts.get('x0')!r} (allowed: {dim} finite numbers)")
    return x0


def _quadratic_problem(q: Quadratic, config: dict, device: torch.device, default_x0) -> FunctionProblem:
    opts = _problem_options(config, _PROBLEM_KEYS - {"a", "b"})
    x0 = _x0(opts, default_x0, q.dim)
    return FunctionProblem(q.value, x0, q.minimizer, q.f_star, config["steps_per_epoch"],
                           float(opts.get("noise_std", 0.0)), device)


_QDEFAULTS = {"epochs": 10, "steps_per_epoch": 100, "targets": {"train_loss": 1e-6}}


@register_benchmark("quadratic-4.10.1", "quadratic", {**_QDEFAULTS, "problem": {"x0": [1.0, 1.0]}},
                    "paper 4.10.1: f = 2x² + 2y² − 2xy + 2 from (1, 1); problem: x0, noise_std")
def _q4101(config: dict, device: torch.device) -> FunctionProblem:
    return _quadratic_problem(paper_quadratic("4.10.1"), config, device, [1.0, 1.0])


@register_benchmark("quadratic-4.10.2", "quadratic", {**_QDEFAULTS, "problem": {"x0": [2.0, 2.0]}},
                    "paper 4.10.2: f = x² + 2y² − 2xy + 2 from (2, 2); problem: x0, noise_std")
def _q4102(config: dict, device: torch.device) -> FunctionProblem:
    return _quadratic_problem(paper_quadratic("4.10.2"), config, device, [2.0, 2.0])


@register_benchmark("quadratic", "quadratic",
                    {**_QDEFAULTS, "problem": {"condition_number": 10.0, "dim": 10}},
                    "general quadratic ½xᵀHx: problem: eigenvalues | condition_number+dim(+mu), rotate, "
                    "problem_seed, x0 (default ones), noise_std")
def _qgeneral(config: dict, device: torch.device) -> FunctionProblem:
    opts = _problem_options(config, _PROBLEM_KEYS - {"a", "b"})
    kw = {k: opts[k] for k in ("eigenvalues", "condition_number", "dim", "mu", "rotate", "problem_seed") if k in opts}
    if "eigenvalues" not in kw and "condition_number" not in kw:
        kw["condition_number"] = 10.0
    q = general_quadratic(**kw)
    return _quadratic_problem(q, config, device, np.ones(q.dim))


@register_benchmark("rosenbrock", "function",
                    {"epochs": 10, "steps_per_epoch": 500, "problem": {"x0": [-1.2, 1.0]},
                     "targets": {"train_loss": 1e-4}},
                    "Rosenbrock (a=1, b=100) from (−1.2, 1), non-convex (claim C14); problem: x0, a, b, noise_std")
def _rosenbrock(config: dict, device: torch.device) -> FunctionProblem:
    opts = _problem_options(config, {"x0", "noise_std", "a", "b"})
    a, b = float(opts.get("a", 1.0)), float(opts.get("b", 100.0))
    x0 = np.asarray(opts.get("x0", [-1.2, 1.0]), dtype=np.float64).ravel()
    if x0.size < 2:
        raise ValueError(f"Invalid problem.x0: {opts.get('x0')!r} (allowed: 2 or more numbers)")
    x0 = _x0(opts, x0, x0.size)
    x_star = np.full(x0.size, a) ** (2.0 ** np.arange(x0.size)) if a != 1.0 else np.ones(x0.size)
    return FunctionProblem(lambda x: rosenbrock(x, a, b), x0, x_star, 0.0, config["steps_per_epoch"],
                           float(opts.get("noise_std", 0.0)), device)
