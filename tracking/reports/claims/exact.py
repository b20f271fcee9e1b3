"""C11–C13: the paper's quadratic facts and rates, checked against exact computation (the quadratic study's
``quadratic_facts.json``, ``workers.quadratic.study_facts()``). Exact: no test and no power."""

from __future__ import annotations

import math
from typing import Sequence

from ..verdicts import CONTRADICTED, NOT_MEASURED, NOT_SUPPORTED, SUPPORTED
from .common import ClaimResult, Context

__all__ = ["c11", "c12", "c13"]

EXACT = "exact computation: no test, no power calculation"


def _facts(data) -> tuple[dict | None, str]:
    for study, facts in data.quadratic_facts.items():
        if isinstance(facts, dict) and facts:
            return facts, study
    return None, ""


def _float(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def _close(a: Sequence[float], b: Sequence[float], tol: float) -> bool:
    a, b = sorted(float(x) for x in a), sorted(float(x) for x in b)
    return len(a) == len(b) and all(abs(x - y) <= tol for x, y in zip(a, b))


def c11(ctx: Context) -> ClaimResult:
    facts, study = _facts(ctx.data)
    if facts is None or "4.10.1" not in facts:
        return ctx.result("C11", "", NOT_MEASURED, "no quadratic study (with quadratic_facts.json) among the studies")
    f = facts["4.10.1"]
    paper = f.get("paper", {})
    ev_ok = _close(f["eigenvalues"], paper.get("eigenvalues", [2.0, 6.0]), 0.01)
    lim_ok = abs(float(f["gd_stability_limit"]) - float(paper.get("stability_limit", 1 / 3))) <= 1e-3
    fastest_paper = float(paper.get("fastest_step_in_table_4_4", 0.3))
    fastest = [float(x) for x in f.get("fastest_steps_by_contraction", [])]
    fast_ok = any(abs(x - fastest_paper) <= 1e-9 for x in fastest)
    contraction = {round(float(r["lr"]), 9): float(r["contraction"]) for r in f.get("gd", [])}
    measured = (f"eigenvalues {', '.join(f'{x:.4g}' for x in f['eigenvalues'])}; GD stable iff η < "
                f"{float(f['gd_stability_limit']):.4f}; optimal step {float(f['gd_optimal_step']):.4g} (contraction "
                f"{float(f['gd_optimal_contraction']):.3g}); fastest computed step(s) "
                f"{', '.join(f'{x:.4g}' for x in fastest)}; "
                f"contraction at η = 0.1: {contraction.get(0.1, math.nan):.3g}, "
                f"at η = 0.3: {contraction.get(0.3, math.nan):.3g}{_from_start(f)} (exact; study {study})")
    parts = {"eigenvalues": ev_ok, "stability limit": lim_ok, f"η = {fastest_paper:g} fastest": fast_ok}
    return _exact_facts_result(ctx, "C11", measured, parts)


def _from_start(f: dict) -> str:
    """The observed rate per step from the paper's own start point (Table 4.4's setting)."""
    rates = [(float(r["lr"]), float(r["observed_rate_from_start"])) for r in f.get("gd", [])
             if r.get("observed_rate_from_start") is not None and float(r["lr"]) in (0.1, 0.3, 0.4, 0.5)]
    if not rates or f.get("start") is None:
        return ""
    eig = " (an eigenvector: only one eigenvalue acts)" if f.get("start_is_eigenvector") else ""
    return (f"; from the paper's start {tuple(f['start'])}{eig}, observed rate per step: "
            + ", ".join(f"η = {lr:g}: {r:.2g}" for lr, r in rates))


def _exact_facts_result(ctx: Context, claim: str, measured: str, parts: dict[str, bool]) -> ClaimResult:
    """A claim checked against exact computation: supported iff every part agrees, else contradicted; the
    rule text lists each part's agreement."""
    holds = ", ".join(f"{k} {'agrees' if v else 'disagrees'}" for k, v in parts.items())
    return ctx.result(claim, measured, SUPPORTED if all(parts.values()) else CONTRADICTED, holds)


def c12(ctx: Context) -> ClaimResult:
    facts, study = _facts(ctx.data)
    if facts is None or "4.10.2" not in facts:
        return ctx.result("C12", "", NOT_MEASURED, "no quadratic study (with quadratic_facts.json) among the studies")
    f = facts["4.10.2"]
    paper = f.get("paper", {})
    ev_ok = _close(f["eigenvalues"], paper.get("eigenvalues", [1.17, 4.83]), 0.01)
    alpha_ok = abs(float(f["gd_optimal_step"]) - float(paper.get("alpha_opt", 0.33))) <= 0.005
    extra = ""
    if "rapid_convergence_steps" in paper:
        bad = [s for s in paper["rapid_convergence_steps"] if float(s) >= float(f["gd_stability_limit"])]
        if bad:
            extra = f"; the paper's 'rapid' step(s) {', '.join(map(str, bad))} exceed the stability limit (GD diverges)"
    measured = (f"Hessian {f.get('hessian')}, eigenvalues {', '.join(f'{x:.4g}' for x in f['eigenvalues'])} "
                f"(paper writes {paper.get('hessian')} and {paper.get('eigenvalues')}); α_opt = "
                f"{float(f['gd_optimal_step']):.4g}; GD stable iff η < {float(f['gd_stability_limit']):.4f}"
                f"{extra} (exact; study {study})")
    parts = {"eigenvalues": ev_ok, "α_opt": alpha_ok}
    return _exact_facts_result(ctx, "C12", measured, parts)


def c13(ctx: Context) -> ClaimResult:
    facts, study = _facts(ctx.data)
    if facts is None or "C13" not in facts:
        return ctx.result("C13", "", NOT_MEASURED, "no quadratic study (with quadratic_facts.json) among the studies")
    c13 = {k: v for k, v in facts["C13"].items() if k != "paper" and isinstance(v, dict)}
    ratios, bound_fail, bound_ok, lines = [], [], [], []
    for name, fits in c13.items():
        for mode in ("deterministic", "noisy"):
            fit = fits.get(mode) or {}
            r, s, ps = (_float(fit.get(k)) for k in ("last_ratio", "fitted_slope", "paper_slope"))
            if math.isfinite(r):
                ratios.append(r)
            lines.append(f"{name} {mode}: slope {s:.3f} vs −μ/2 = {ps:.3f}, last ratio {r:.4f}")
            if mode == "noisy" and math.isfinite(s) and math.isfinite(ps):
                (bound_ok if s <= ps + 0.05 else bound_fail).append(name)
    if not ratios:
        return ctx.result("C13", "; ".join(lines), NOT_MEASURED, "the facts hold no finite distance-ratio fits")
    measured = "; ".join(lines) + f" (study {study})"
    sublinear = max(ratios) > 0.99
    reason = (("successive-distance ratio → 1 (max " + f"{max(ratios):.4f}): sublinear, not linear convergence"
               if sublinear else "successive-distance ratios stay below 0.99")
              + (f"; bound k^(−μ/2) violated with gradient noise on {', '.join(bound_fail)}" if bound_fail else "")
              + (f"; bound holds on {', '.join(bound_ok)}" if bound_ok else ""))
    if sublinear or bound_fail:
        return ctx.result("C13", measured, CONTRADICTED, reason)
    if bound_ok:
        return ctx.result("C13", measured, SUPPORTED, reason)
    return ctx.result("C13", measured, NOT_SUPPORTED, reason)


