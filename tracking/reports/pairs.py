"""Candidate vs baseline: which optimizers a report compares, and the verdicts of any pair.

The paper's claims C1–C15 are AMGT's against Adam; a study of another optimizer (``torch.optim:NAdam``,
``pytorch_optimizer:Lion``, ...) is compared with the same engine and statistics instead:

- :func:`resolve_comparison` turns ``build_report(candidate=, baseline=)`` into a :class:`Comparison`: the
  baseline (default ``"adam"``) and the candidate(s): the one named; else AMGT when the studies have AMGT runs
  (or no final phase: the paper's report, as before); else every other optimizer of the final phase. A name
  that is not an optimizer of the studies is a ``ValueError`` listing those present.
- :func:`pair_results`: per pair and final-phase benchmark, one :class:`~tracking.reports.claims.ClaimResult`
  per metric: final test accuracy (C1's statistic: paired by seed, paired t 95 % interval, TOST, power/MDE,
  the failure-count blocks; ``claims.accuracy.paired_accuracy``) and, when epoch times were recorded, the time
  per epoch (C5's statistic: Welch t on log time against the bound; ``claims.cost.epoch_time_ratio``). They use
  C1's and C5's settings (δ, minimum n, bound; ``VerdictSettings``) without the paper's effects: the hypothesis
  is "the candidate beats the baseline by at least δ" (accuracy) and "costs at most the bound × the baseline's
  time" (epoch time), judged with the vocabulary of ``verdicts`` ("paper's effect ruled out" reads: a gain of
  δ ruled out). Written to ``comparison_pairs.csv`` and shown in the report's "<candidate> vs <baseline>"
  section (docs/reports.md, "Candidate and baseline").
"""

from __future__ import annotations

from dataclasses import dataclass

from .claims import ADAM, AMGT, ClaimResult, NAMES
from .claims.accuracy import paired_accuracy
from .claims.common import Context, absent
from .claims.cost import epoch_time_ratio
from .data import ReportData
from .verdicts import DEFAULT_SETTINGS, NOT_MEASURED, VerdictSettings

__all__ = ["Comparison", "resolve_comparison", "pair_results", "pair_rules", "PAIR_METRICS"]

#: The metrics a pair is judged on, in order (the suffix of each result's id).
PAIR_METRICS = ("accuracy", "time/epoch")


def _name(opt: str) -> str:
    return NAMES.get(opt, opt)


@dataclass(frozen=True)
class Comparison:
    """What a report compares: ``candidates`` (one or more optimizer names) against ``baseline``.

    paper_claims: the candidate is AMGT alone, so the paper's claims C1–C15 are evaluated (they compare AMGT
    with Adam, as the paper does, whatever the baseline). paper_pair: AMGT against Adam, the default report
    (no candidate-vs-baseline section)."""

    candidates: tuple[str, ...] = (AMGT,)
    baseline: str = ADAM

    @property
    def paper_claims(self) -> bool:
        return self.candidates == (AMGT,)

    @property
    def paper_pair(self) -> bool:
        return self.paper_claims and self.baseline == ADAM

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return [(c, self.baseline) for c in self.candidates]

    @property
    def label(self) -> str:
        """"NAdam vs Adam", "NAdam, Lion vs Adam"."""
        return f"{', '.join(_name(c) for c in self.candidates)} vs {_name(self.baseline)}"


def resolve_comparison(data: ReportData, candidate: str | None = None, baseline: str | None = None) -> Comparison:
    """The :class:`Comparison` of a report (module docstring for the defaults).

    Raises:
        ValueError: ``candidate`` or ``baseline`` is not an optimizer of the studies (the message lists those
            present), or both name the same optimizer.
    """
    runs = data.runs
    present = sorted(runs["optimizer"].dropna().astype(str).unique())
    for role, value in (("candidate", candidate), ("baseline", baseline)):
        if value is not None and value not in present:
            raise ValueError(f"--{role} {value!r} is not an optimizer of studies {', '.join(data.studies)}; "
                             f"optimizers present: {', '.join(present) or 'none'}")
    base = baseline or ADAM
    if candidate is not None:
        if candidate == base:
            raise ValueError(f"--candidate {candidate!r} is also the baseline; choose another --candidate or "
                             f"--baseline from: {', '.join(present)}")
        return Comparison((candidate,), base)
    final = sorted(runs.loc[runs["phase"] == "final", "optimizer"].dropna().astype(str).unique())
    others = tuple(o for o in final if o != base)
    if AMGT in present or not others:
        return Comparison((AMGT,), base)
    return Comparison(others, base)


def pair_rules(settings: VerdictSettings | None = None) -> dict[str, str]:
    """The rule of each pair metric, as printed in the report (``{metric: rule}``)."""
    s = settings or DEFAULT_SETTINGS
    c1, c5 = s.claim("C1"), s.claim("C5")
    return {
        "accuracy": (
            "candidate − baseline final test accuracy per seed (points; a diverged run without an accuracy scores "
            "chance), paired by seed, paired t 95 % interval — the statistic of C1, with C1's settings and no "
            f"paper effect: δ = {c1.sesoi:g} points (or one test example, if larger), minimum {c1.min_n} seeds; "
            "supported iff the interval clears +δ (the candidate better), contradicted iff it lies beyond −δ, "
            f"equivalent iff TOST at α = {s.alpha:g} puts it within ±δ, 'paper's effect ruled out' iff the "
            "one-sided test rules out a gain of δ, else inconclusive; more failed seeds of the candidate forbid "
            "'supported' (of the baseline: 'contradicted')"),
        "time/epoch": (
            "ratio candidate/baseline of the per-run median epoch times (geometric means, Welch t on log time, "
            f"95 % interval) — the statistic of C5, with its bound {c5.sesoi:g} and minimum {c5.min_n} runs: "
            "supported iff the interval stays ≤ the bound, contradicted iff it lies above it, else inconclusive"),
    }


def pair_results(data: ReportData, comparison: Comparison,
                 settings: VerdictSettings | None = None) -> list[ClaimResult]:
    """Per pair of ``comparison``, per final-phase benchmark with runs of both, one result per metric of
    :data:`PAIR_METRICS` (time/epoch only where epoch times were recorded); a pair with no such benchmark
    gives one "not measured" row with the reason. ``id``: "<candidate> vs <baseline>: <metric>"."""
    s = settings or DEFAULT_SETTINGS
    if data.overlap_rule != s.overlap_rule:
        data = data.with_overlap_rule(s.overlap_rule)
    ctx = Context(data, s.with_claim("C1", paper_effect=None).with_claim("C5", paper_effect=None))
    rules = pair_rules(s)
    final = data.usable("final")
    out = []
    for cand, base in comparison.pairs:
        label = f"{cand} vs {base}"
        claims = {"accuracy": f"{_name(cand)}'s final test accuracy is higher than {_name(base)}'s",
                  "time/epoch": f"{_name(cand)}'s time per epoch is at most {ctx.cs('C5').sesoi:g}× {_name(base)}'s"}

        def row(metric, measured, verdict, reason, bench, **fields):
            return ClaimResult(f"{label}: {metric}", claims[metric], "no paper claim (candidate vs baseline)",
                               measured, verdict, reason, rules[metric], bench, **fields)

        benches = sorted(b for b, g in final.groupby("benchmark") if {cand, base} <= set(g["optimizer"]))
        if not benches:
            out.append(row("accuracy", "", NOT_MEASURED, absent(data, "final", f"no benchmark with final-phase runs "
                                                                          f"of both {cand} and {base}"), ""))
        for bench in benches:
            measured, dec, res, fields = paired_accuracy(ctx, bench, cand, base, claimed=f"{_name(cand)}'s favour")
            if res.n < 2:
                out.append(row("accuracy", measured, NOT_MEASURED, f"only {res.n} matched seed(s) of {cand} and {base} "
                               f"on {bench}", bench, **fields))
            else:
                out.append(row("accuracy", measured, dec.verdict, dec.reason, bench, **fields))
            cost = epoch_time_ratio(ctx, data.usable("final", bench), bench, cand, base)
            if cost is not None:
                measured, verdict, reason, fields = cost
                out.append(row("time/epoch", measured, verdict, reason, bench, **fields))
    return out
