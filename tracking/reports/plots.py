"""The report's figures (PNG, matplotlib's object API: no display, no pyplot state).

Each figure says what it was measured on (study, benchmark, phase, seeds, epochs / max_steps, device, git
sha) in a footer drawn inside the PNG (``footer``) and in its caption. Legends sit outside the axes (right),
so they never cover a curve; epoch axes have integer ticks. Curves are the mean over seeds with a band of ±
one standard deviation across seeds.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from matplotlib.figure import Figure as _MplFigure
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

from .claims import NAMES
from .data import ReportData

__all__ = ["Figure", "png", "footer", "provenance_text",
           "curve_figures", "accuracy_vs_time", "sensitivity_figures", "ablation_figures",
           "budget_figures", "answer_figure"]

DPI = 90


@dataclass
class Figure:
    """A rendered figure: ``name`` (file stem), ``title``, ``caption``, ``png`` (bytes); ``figure``: the
    matplotlib Figure it was drawn from (kept for inspection, not rendered again)."""

    name: str
    title: str
    caption: str
    png: bytes
    figure: object = field(default=None, repr=False, compare=False)


def png(fig, tight: bool = False) -> bytes:
    """The figure as PNG bytes (``tight``: crop to the drawn area, for figures made by others)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, **({"bbox_inches": "tight"} if tight else {}))
    return buf.getvalue()


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in str(text))


def _ints(v) -> str:
    u = sorted({int(x) for x in pd.to_numeric(pd.Series(v), errors="coerce").dropna()})
    return "" if not u else str(u[0]) if len(u) == 1 else f"{u[0]}–{u[-1]}"


def provenance_text(runs: pd.DataFrame, phase: str | None = None) -> str:
    """What ``runs`` were measured on, one line: study, benchmark, phase, number of seeds (and runs), epochs,
    max_steps, device, short git sha."""
    def join(col):
        return ", ".join(sorted(set(runs[col].dropna().astype(str)))) if col in runs else ""

    seeds = runs["seed"].dropna().nunique() if "seed" in runs else 0
    phases = set(runs["phase"].dropna()) if "phase" in runs else set()
    counted = (f"n = {len(runs)} trials" if (phase or "") == "search" or phases == {"search"} else
               f"n = {seeds} seeds ({len(runs)} runs)")
    epochs = _ints(runs["epochs"]) if "epochs" in runs else ""
    if not epochs and "epochs_completed" in runs:
        epochs = _ints(runs["epochs_completed"])
    capped = _ints(runs["max_steps"]) if "max_steps" in runs else ""
    shas = ", ".join(sorted({s[:7] for s in runs["git_sha"].dropna().astype(str)})) if "git_sha" in runs else ""
    return (f"study {join('study') or '?'}; {join('benchmark') or '?'}; phase {phase or join('phase') or '?'}; "
            f"{counted}; epochs {epochs or '?'}; "
            f"max_steps {capped + ' (optimizer steps per trial)' if capped else 'none'}; "
            f"{join('device') or 'device not recorded'}; git {shas or 'not recorded'}")


def _provenance(runs: pd.DataFrame, phase: str | None = None) -> str:
    return provenance_text(runs, phase)


def footer(fig, text: str) -> None:
    """Write ``text`` (what the figure was measured on) into the figure itself, below the axes, in small
    grey type: a ``supxlabel``, which constrained layout makes room for; on a figure without a layout engine
    (Optuna's) a text just below the lowest label drawn, which ``png(tight=True)`` includes."""
    if fig.get_layout_engine() is not None:
        fig.supxlabel(text, fontsize=6.5, color="0.35", wrap=True)
    else:  # below the lowest label drawn (slanted tick labels reach under the axes)
        bottom = fig.get_tightbbox(fig.canvas.get_renderer()).y0 / fig.get_figheight()
        fig.text(0.5, min(bottom, 0.0) - 0.02, text, ha="center", va="top", fontsize=6.5, color="0.35")


def _decorate(fig, ax, xlabel: str | None, ylabel: str | None, title: str) -> None:
    """Axis labels (None: keep those set), the two-line title, the outside legend and the grid of a figure."""
    if xlabel is not None:
        ax.set_xlabel(xlabel)
    if ylabel is not None:
        ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    _legend(fig, ax)
    ax.grid(alpha=0.3)


def _legend(fig, ax, **kw) -> None:
    """The legend outside the axes, on the right (constrained layout's "outside" placement): it never covers
    a curve (titles are set on the axes, two lines, so they stay above the axes and clear of it)."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside right upper", fontsize=8, **kw)


def _finish(fig, runs: pd.DataFrame, phase: str) -> str:
    text = provenance_text(runs, phase)
    footer(fig, text)
    return text


def _label(opt: str) -> str:
    return NAMES.get(opt, opt)


_COLORS = {"amgt": "tab:red", "adam": "tab:blue", "rmsprop": "tab:green", "sgd": "tab:gray",
           "amsgrad": "tab:purple", "adabelief": "tab:brown", "adamw": "tab:cyan", "amgt-no-threshold": "tab:orange",
           "amgt-no-decay": "tab:pink", "amgt-no-variance": "tab:olive"}


def _color(opt: str) -> str:
    """One colour per optimizer in every figure."""
    return _COLORS.get(opt, f"C{sum(map(ord, str(opt))) % 10}")


CURVES = (("train_loss", "Training loss per epoch", "loss", "Figs. 4.1–4.3"),
          ("val_accuracy", "Validation accuracy per epoch", "val_acc", "Fig. 4.6"),
          ("grad_norm_std", "Gradient-norm standard deviation per epoch", "grad_std", "Fig. 4.4"))


def _epoch_axis(ax, epochs) -> None:
    """Integer epoch ticks (``MaxNLocator(integer=True, min_n_ticks=1)``), with half an epoch of room either
    side, so that a one-epoch run gets the single tick 1, not 0.96, 0.98, …"""
    e = pd.to_numeric(pd.Series(epochs), errors="coerce").dropna()
    if len(e):
        ax.set_xlim(e.min() - 0.5, e.max() + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # default 2: one epoch → 0.5, 0.6, …


def curve_figures(data: ReportData, phase: str = "final") -> list[Figure]:
    out = []
    runs = data.usable(phase)
    for bench, rb in runs.groupby("benchmark"):
        for metric, title, stem, paper in CURVES:
            h = data.curves(rb["run_id"], metric)
            if not len(h):
                continue
            h = h.merge(rb[["run_id", "optimizer"]], on="run_id")
            fig = _MplFigure(figsize=(6.4, 4.0), layout="constrained")
            ax = fig.subplots()
            for opt, g in h.groupby("optimizer"):
                s = g.groupby("step")["value"].agg(["mean", "std"]).sort_index()
                if len(s) == 1:  # one epoch: a point with its ± 1 sd bar (a band needs two epochs)
                    ax.errorbar(s.index, s["mean"], yerr=s["std"].fillna(0), marker="o", ms=4, capsize=3,
                                label=_label(opt), color=_color(opt))
                    continue
                line, = ax.plot(s.index, s["mean"], marker="o", ms=3, label=_label(opt), color=_color(opt))
                ax.fill_between(s.index, s["mean"] - s["std"].fillna(0), s["mean"] + s["std"].fillna(0),
                                color=line.get_color(), alpha=0.2)
            ax.set_xlabel("epoch")
            _epoch_axis(ax, h["step"])
            ax.set_ylabel(metric)
            v = h["value"].to_numpy(dtype=float)
            v = v[np.isfinite(v)]
            if metric == "train_loss" and len(v) and (v > 0).all() and v.max() / v.min() >= 10:
                ax.set_yscale("log")  # only when the loss spans a decade: else the ticks read 1.405×10^0
            _decorate(fig, ax, None, None, f"{title}\n{bench}")
            prov = _finish(fig, rb, phase)
            out.append(Figure(f"{stem}_{_slug(bench)}", f"{title} ({bench}; the paper's {paper})",
                              f"{phase} phase; mean ± 1 sd over seeds; {prov}", png(fig), fig))
    return out


def accuracy_vs_time(data: ReportData) -> list[Figure]:
    out = []
    runs = data.usable("final")
    for bench, rb in runs.groupby("benchmark"):
        acc = data.curves(rb["run_id"], "val_accuracy")
        t = data.curves(rb["run_id"], "epoch_time_s")
        if not len(acc) or not len(t):
            continue
        t = t.sort_values(["run_id", "step"]).assign(elapsed=lambda d: d.groupby("run_id")["value"].cumsum())
        m = acc.merge(t[["run_id", "step", "elapsed"]], on=["run_id", "step"]).merge(rb[["run_id", "optimizer"]],
                                                                                    on="run_id")
        fig = _MplFigure(figsize=(6.4, 4.0), layout="constrained")
        ax = fig.subplots()
        for opt, g in m.groupby("optimizer"):
            s = g.groupby("step").agg(elapsed=("elapsed", "mean"), acc=("value", "mean"))
            ax.plot(s["elapsed"], s["acc"], marker="o", ms=3, label=_label(opt), color=_color(opt))
        _decorate(fig, ax, "wall time (s, cumulative epoch time)", "val_accuracy", f"Accuracy vs time\n{bench}")
        prov = _finish(fig, rb, "final")
        out.append(Figure(f"acc_vs_time_{_slug(bench)}", f"Validation accuracy vs time ({bench}; the paper's Fig. 4.5)",
                          f"final phase; mean over seeds per epoch; {prov}", png(fig), fig))
    return out


def sensitivity_figures(cells: pd.DataFrame, widths: pd.DataFrame, data: ReportData) -> list[Figure]:
    out = []
    for bench, cb in cells.groupby("benchmark"):
        fig = _MplFigure(figsize=(6.4, 4.0), layout="constrained")
        ax = fig.subplots()
        for opt, g in cb.groupby("optimizer", sort=False):
            g = g.sort_values("lr")
            err = np.vstack([g["test_acc_mean"] - g["ci_low"], g["ci_high"] - g["test_acc_mean"]])
            err = np.where(np.isfinite(err), err, 0)
            w = widths[(widths.benchmark == bench) & (widths.optimizer == opt)].iloc[0]
            cont = ax.errorbar(g["lr"], g["test_acc_mean"], yerr=err, marker="o", ms=3, capsize=2, color=_color(opt),
                               label=f"{_label(opt)} (width {w['width_decades']:.2f} dec)")
            ax.hlines(w["best_acc"] - 1.0, w["lr_lo"], w["lr_hi"], colors=cont[0].get_color(), linewidth=4, alpha=0.5)
        ax.set_xscale("log")
        _decorate(fig, ax, "learning rate η0", "final test accuracy (%)", f"Learning-rate sensitivity\n{bench}")
        prov = _finish(fig, data.usable("grid", bench), "grid")
        out.append(Figure(f"lr_sensitivity_{_slug(bench)}", f"Learning-rate sensitivity ({bench})",
                          "grid phase; mean and 95 % CI over seeds per lr (clipped to 0–100); thick bars: the lr "
                          "range within 1 point of each optimizer's best (its width in decades in the legend); "
                          f"{prov}", png(fig), fig))
    return out


def ablation_figures(table: pd.DataFrame, data: ReportData) -> list[Figure]:
    out = []
    for bench, tb in table.groupby("benchmark"):
        fig = _MplFigure(figsize=(8.0, 3.6), layout="constrained")
        ax1, ax2 = fig.subplots(1, 2)
        x = np.arange(len(tb))
        for ax, col, lo, hi, ylabel in ((ax1, "test_acc_mean", "ci_low", "ci_high", "final test accuracy (%)"),
                                        (ax2, "oscillation_mean", "osc_ci_low", "osc_ci_high", "loss oscillation")):
            err = np.vstack([tb[col] - tb[lo], tb[hi] - tb[col]])
            ax.bar(x, tb[col], yerr=np.where(np.isfinite(err), err, 0), capsize=3,
                   color=[_color(o) for o in tb["optimizer"]], alpha=0.7)
            ax.set_xticks(x, [_label(o) for o in tb["optimizer"]], rotation=30, ha="right", fontsize=8)
            ax.set_ylabel(ylabel)
            ax.set_ylim(bottom=0)  # bars from zero: a bar's length is its value
            ax.grid(alpha=0.3, axis="y")
        fig.suptitle(f"Ablation — {bench}")
        prov = _finish(fig, data.usable("ablation", bench), "ablation")
        out.append(Figure(f"ablation_{_slug(bench)}", f"Ablation ({bench}; the paper's section 4.9)",
                          "ablation phase; bars: mean over seeds (axes from zero; accuracy in points, a diverged "
                          "run scores chance); error bars: 95 % Student-t interval over seeds (accuracy clipped to "
                          f"0–100); the table ablation gives the paired differences to full AMGT; {prov}", png(fig),
                          fig))
    return out


def budget_figures(table: pd.DataFrame, data: ReportData) -> list[Figure]:
    out = []
    for bench, tb in table.groupby("benchmark"):
        fig = _MplFigure(figsize=(6.4, 4.0), layout="constrained")
        ax = fig.subplots()
        for opt, g in tb.groupby("optimizer"):
            line, = ax.plot(g["k"], g["expected"], marker="o", ms=3, color=_color(opt),
                            label=f"{_label(opt)} ({int(g['trials'].iloc[0])} trials)")
            ax.fill_between(g["k"], g["low"], g["high"], color=line.get_color(), alpha=0.2)
        ax.set_xscale("log")
        ax.set_xticks(sorted(tb["k"].unique()))  # plain integer ticks at the k computed, not 10^0, 2×10^0
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0f}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        _decorate(fig, ax, "tuning budget k (trials)", "expected best val accuracy (%)",
                  f"Expected best accuracy vs tuning budget\n{bench}")
        prov = _finish(fig, data.usable("search", bench), "search")
        out.append(Figure(f"budget_{_slug(bench)}", f"Expected best accuracy vs tuning budget ({bench})",
                          "search phase; E[max of k trials drawn with replacement] (Dodge et al. 2019), band: 95 % "
                          f"bootstrap over trials; {prov}", png(fig), fig))
    return out


def answer_figure(phase: str, table: pd.DataFrame, data: ReportData, baseline: str = "adam") -> list[Figure]:
    """The report's first figure: final test accuracy per optimizer, one panel per benchmark (at most 3),
    dots = the mean over seeds, whiskers = its 95 % Student-t interval over seeds (clipped to 0–100), a dashed
    line at the reference's mean (``baseline``, Adam by default; full AMGT in an ablation). Dots, not bars, so
    the axis may start near the data (no bar length to misread). ``table``: the comparison or ablation table. [] when it is empty."""
    if not len(table) or not table["test_acc_mean"].notna().any():
        return []
    ref = baseline if phase == "final" else "amgt"
    benches = sorted(table["benchmark"].dropna().unique())[:3]
    fig = _MplFigure(figsize=(5.4, 1.2 + 0.26 * table.groupby("benchmark").size().max() * len(benches)),
                     layout="constrained")
    axes = fig.subplots(len(benches), 1, squeeze=False)[:, 0]
    for ax, bench in zip(axes, benches):
        g = table[table["benchmark"] == bench].sort_values("test_acc_mean", na_position="first")
        y = np.arange(len(g))
        err = np.vstack([g["test_acc_mean"] - g["ci_low"], g["ci_high"] - g["test_acc_mean"]])
        for i, (opt, m, e0, e1) in enumerate(zip(g["optimizer"], g["test_acc_mean"], *err)):
            ax.errorbar([m], [i], xerr=[[e0 if np.isfinite(e0) else 0], [e1 if np.isfinite(e1) else 0]], fmt="o",
                        ms=5, capsize=3, color=_color(opt))
        r = g[g["optimizer"] == ref]["test_acc_mean"]
        if len(r) and np.isfinite(r.iloc[0]):
            ax.axvline(r.iloc[0], color="0.4", ls="--", lw=1, label=f"{_label(ref)}'s mean" if ax is axes[0] else None)
        ax.set_yticks(y, [f"{_label(o)} (n={int(n)})" for o, n in zip(g["optimizer"], g["n"])], fontsize=8)
        ax.set_xlabel("final test accuracy (%)")
        ax.set_title(bench, fontsize=9)
        ax.grid(alpha=0.3, axis="x")
    if axes[0].get_legend_handles_labels()[0]:
        # the reference line, right of the first panel: constrained layout keeps an axes' legend clear of the
        # title above and of the footer below (a figure legend "outside right lower" sat on the footer)
        axes[0].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0, fontsize=8)
    fig.suptitle(f"Final test accuracy per optimizer ({phase} phase)", fontsize=10)
    runs = data.usable(phase)
    prov = _finish(fig, runs[runs["benchmark"].isin(benches)], phase)
    return [Figure("answer_accuracy", f"Final test accuracy per optimizer ({phase} phase)",
                   "dots: mean over seeds of the final test accuracy (points; a diverged run scores chance); "
                   "whiskers: 95 % Student-t interval over seeds (clipped to 0–100"
                   + ("; with n = 2 seeds it spans ±12.7 standard errors" if (table["n"] == 2).any() else "")
                   + f"); dashed line: {_label(ref)}'s mean; {prov}", png(fig), fig)]
