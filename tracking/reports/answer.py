"""The report's first section, "The answer": a few lines of conclusion, one table per claim (verdict, effect
with its 95 % interval, n, power) and one per optimizer (final test accuracy, mean and 95 % t-interval over
seeds, in points). Everything here is read from the claims and tables already computed (nothing is
recomputed, no verdict is touched); ``plots.answer_figure`` draws the figure beside it."""

from __future__ import annotations

import math
from typing import Sequence

import pandas as pd

from . import stats
from .claims import ADAM, AMGT, NAMES, ClaimResult
from .verdicts import NOT_MEASURED, VERDICTS

__all__ = ["ANSWER_CLAIM_COLUMNS", "ANSWER_OPTIMIZER_COLUMNS", "answer_claims", "answer_source",
           "answer_optimizers", "answer_lines"]

ANSWER_CLAIM_COLUMNS = ["id", "claim", "benchmark", "verdict", "effect [95 % CI]",
                        "power: n (minimum); MDE; n needed to detect / for 'supported'"]
ANSWER_OPTIMIZER_COLUMNS = ["benchmark", "optimizer", "n", "test accuracy % [95 % CI]", "σ over seeds (points)",
                            "vs reference, points [95 % CI]"]


def _int(x) -> str:
    return "" if x is None or (isinstance(x, float) and not math.isfinite(x)) else str(int(x))


def answer_claims(claims: list[ClaimResult]) -> pd.DataFrame:
    """One row per claim that was measured (every verdict but "not measured"; those are named in the lines):
    id, the claim, benchmark, verdict, the effect with its 95 % interval in the claim's unit (``effect``; exact
    rules: see the claims table), and its power in one cell: n with the pre-registered minimum, the MDE, and
    the units needed for the paper's effect (to detect / for "supported")."""
    rows = []
    for c in claims:
        if c.verdict == NOT_MEASURED:
            continue
        n = _int(c.n)
        power = [f"n = {n} ({_int(c.min_n)})" if n else "", f"MDE {c.mde_text}" if c.mde_text else "",
                 f"needed {c.seeds_needed}" if c.seeds_needed and c.seeds_needed != "n/a / n/a" else ""]
        rows.append({"id": c.id, "claim": c.claim, "benchmark": c.benchmark, "verdict": c.verdict,
                     "effect [95 % CI]": c.effect or "exact rule: see the claims table",
                     ANSWER_CLAIM_COLUMNS[-1]: "; ".join(p for p in power if p)})
    return _one_benchmark(pd.DataFrame(rows, columns=ANSWER_CLAIM_COLUMNS))


def _one_benchmark(df: pd.DataFrame) -> pd.DataFrame:
    """Drop the benchmark column when every row has the same one (the answer's lines name it)."""
    return df.drop(columns=["benchmark"]) if df["benchmark"].nunique(dropna=False) <= 1 else df


def answer_source(tables: dict[str, pd.DataFrame]) -> tuple[str, pd.DataFrame]:
    """The per-optimizer results the answer shows: the comparison (final phase) when it has rows, else the
    ablation. Returns (phase, table); ("", empty) when neither has rows."""
    if len(tables.get("comparison", ())):
        return "final", tables["comparison"]
    if len(tables.get("ablation", ())):
        return "ablation", tables["ablation"]
    return "", pd.DataFrame()


#: A difference of two accuracies in points lies in [-100, 100]: a t-interval past it is shown clipped.
DIFFERENCE_RANGE = (-100.0, 100.0)


def _ci(est, lo, hi, sign: str = "", clip: tuple[float, float] | None = None) -> str:
    """``"+0.29 [+0.17, +0.42]"``; with ``clip``, the interval's ends cut to that range, marked "(clipped)"."""
    if not math.isfinite(est):
        return "n/a"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{est:{sign}.2f} (no CI)"
    clipped = False
    if clip is not None:
        lo, hi, clipped = stats.Interval(est, lo, hi, 2).clipped(clip)
    return f"{est:{sign}.2f} [{lo:{sign}.2f}, {hi:{sign}.2f}]{' (clipped)' if clipped else ''}"


def answer_optimizers(phase: str, table: pd.DataFrame, baseline: str = ADAM) -> pd.DataFrame:
    """Per benchmark and optimizer, best mean first: n scored runs, the final test accuracy (points: mean and
    95 % t-interval over seeds, clipped to [0, 100]), σ across seeds (points), and the paired difference to the
    reference (``baseline``, Adam by default, in the final phase; full AMGT in the ablation) with its 95 %
    t-interval."""
    if not len(table):
        return pd.DataFrame(columns=ANSWER_OPTIMIZER_COLUMNS)
    final = phase == "final"
    diff = (f"diff_vs_{baseline}", "diff_ci_low", "diff_ci_high") if final else (
        "acc_diff_vs_full", "acc_diff_ci_low", "acc_diff_ci_high")
    ref = baseline if final else AMGT
    rows = []
    for bench, g in table.groupby("benchmark", sort=True):
        for r in g.sort_values("test_acc_mean", ascending=False, na_position="last").itertuples():
            sd = getattr(r, "sigma_seeds", math.nan)
            note = getattr(r, "note", "")
            if isinstance(note, str) and note:  # e.g. searched but never run in the final phase
                failed = int(getattr(r, "search_failed", 0) or 0)
                rows.append({"benchmark": bench, "optimizer": NAMES.get(r.optimizer, r.optimizer), "n": 0,
                             "test accuracy % [95 % CI]": note + (f" ({failed} failed search trial(s))" if failed else ""),
                             "σ over seeds (points)": "", "vs reference, points [95 % CI]": ""})
                continue
            rows.append({"benchmark": bench, "optimizer": NAMES.get(r.optimizer, r.optimizer), "n": int(r.n),
                         "test accuracy % [95 % CI]": _ci(r.test_acc_mean, r.ci_low, r.ci_high),
                         "σ over seeds (points)": f"{sd:.2f}" if math.isfinite(sd) else "",
                         "vs reference, points [95 % CI]": ("reference" if r.optimizer == ref else
                                                            _ci(*(getattr(r, c) for c in diff), sign="+",
                                                                clip=DIFFERENCE_RANGE))})
    out = pd.DataFrame(rows, columns=ANSWER_OPTIMIZER_COLUMNS)
    label = f"vs {NAMES.get(baseline, baseline)}" if final else "vs full AMGT"
    out = out.rename(columns={"vs reference, points [95 % CI]": f"{label}, points [95 % CI]"})
    if not final:
        out = out.drop(columns=["σ over seeds (points)"])
    return _one_benchmark(out)


def _ids(claims: Sequence[ClaimResult], verdict: str) -> str:
    return ", ".join(c.id for c in claims if c.verdict == verdict)


def answer_lines(claims: list[ClaimResult], phase: str, table: pd.DataFrame, *, studies: list[str],
                 caveated: list[str], missing: int, candidates: Sequence[str] = (AMGT,), baseline: str = ADAM,
                 pairs: Sequence[ClaimResult] = ()) -> list[str]:
    """The conclusion in a few lines: what was compared, each candidate (AMGT by default) against the baseline
    (Adam by default; effect, 95 % CI, n), the best mean, the verdicts by kind (the claims C1–C15 when they
    were evaluated — ``claims`` not empty —, the candidate-vs-baseline ``pairs`` when given), and pointers to
    the caveats and to what is missing."""
    lines = []
    if len(table):
        ref, col = (baseline, f"diff_vs_{baseline}") if phase == "final" else (AMGT, "acc_diff_vs_full")
        lo, hi = ("diff_ci_low", "diff_ci_high") if phase == "final" else ("acc_diff_ci_low", "acc_diff_ci_high")
        npair = "n_pairs" if phase == "final" else "n"
        for bench, g in table.groupby("benchmark", sort=True):
            best = g.sort_values("test_acc_mean", ascending=False).iloc[0]
            top = g[(g["test_acc_mean"] - best.test_acc_mean).abs() < 1e-9]  # identical runs tie exactly
            if len(top) > 1:
                tied = " and ".join(NAMES.get(o, o) for o in top["optimizer"])
                text = (f"{bench} ({phase} phase, final test accuracy): no single highest mean: {tied} tied at "
                        f"{best.test_acc_mean:.2f} % (n = {', '.join(str(int(k)) for k in top['n'])})")
            else:
                text = (f"{bench} ({phase} phase, final test accuracy): highest mean "
                        f"{NAMES.get(best.optimizer, best.optimizer)} {best.test_acc_mean:.2f} % (n = {int(best.n)})")
            for cand in candidates if phase == "final" and (g.optimizer == ref).any() else ():
                rows = g[g.optimizer == cand]
                if len(rows):
                    a = rows.iloc[0]
                    text += (f"; {NAMES.get(cand, cand)} vs {NAMES.get(ref, ref)}: "
                             f"{_ci(a[col], a[lo], a[hi], sign='+', clip=DIFFERENCE_RANGE)} points (paired by seed, "
                             f"n = {int(a[npair])})")
            lines.append(text + ".")
    else:
        lines.append("No final-phase or ablation runs: no per-optimizer result (see What is missing).")
    if claims:
        verdicts = "; ".join(f"{v}: {_ids(claims, v)}" for v in VERDICTS if _ids(claims, v))
        lines.append(f"Claims C1–C15 ({', '.join(studies)}) — {verdicts}.")
    else:
        lines.append(f"Claims C1–C15 are AMGT's (the paper's) and are not evaluated on "
                     f"{', '.join(NAMES.get(c, c) for c in candidates)}: see the candidate-vs-baseline section.")
    if pairs:
        verdicts = "; ".join(f"{v}: {_ids(pairs, v)}" for v in VERDICTS if _ids(pairs, v))
        lines.append(f"Candidate vs baseline ({', '.join(studies)}) — {verdicts}.")
    if caveated:
        lines.append(f"Caveat: the verdicts of {', '.join(caveated)} rest on runs shorter than the paper's, on "
                     "capped runs, on another benchmark or on a search that may have under-tuned (see Method and "
                     "caveats).")
    if missing:
        lines.append(f"{missing} item(s) are missing or left out: see What is missing.")
    return lines
