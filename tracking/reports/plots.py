"""The report's figures (PNG, matplotlib's object API: no display, no pyplot state).

Each figure says what it was measured on (benchmark, seeds, device, git sha) in its caption.
Curves are the mean over seeds with a band of ± one standard deviation across seeds.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure as _MplFigure
from matplotlib.ticker import MaxNLocator

from .claims import NAMES
from .data import ReportData

__all__ = ["Figure", "png", "curve_figures", "accuracy_vs_time", "sensitivity_figures", "ablation_figures",
           "budget_figures"]

DPI = 90


@dataclass
class Figure:
    """A rendered figure: ``name`` (file stem), ``title``, ``caption``, ``png`` (bytes)."""

    name: str
    title: str
    caption: str
    png: bytes


def png(fig, tight: bool = False) -> bytes:
    """The figure as PNG bytes (``tight``: crop to the drawn area, for figures made by others)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, **({"bbox_inches": "tight"} if tight else {}))
    return buf.getvalue()


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in str(text))


def _provenance(runs: pd.DataFrame) -> str:
    seeds = sorted(int(s) for s in runs["seed"].dropna().unique())
    devices = ", ".join(sorted(set(runs["device"].dropna().astype(str)))) or "device not recorded"
    shas = ", ".join(sorted({s[:10] for s in runs["git_sha"].dropna().astype(str)})) or "not recorded"
    return f"seeds {seeds if len(seeds) <= 12 else f'{len(seeds)} seeds'}; {devices}; git {shas}"


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
                line, = ax.plot(s.index, s["mean"], marker="o", ms=3, label=_label(opt), color=_color(opt))
                ax.fill_between(s.index, s["mean"] - s["std"].fillna(0), s["mean"] + s["std"].fillna(0),
                                color=line.get_color(), alpha=0.2)
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel(metric)
            if metric == "train_loss" and (h["value"] > 0).all():
                ax.set_yscale("log")
            ax.set_title(f"{title} — {bench}")
            ax.legend()
            ax.grid(alpha=0.3)
            out.append(Figure(f"{stem}_{_slug(bench)}", f"{title} ({bench}; the paper's {paper})",
                              f"{phase} phase; mean ± 1 sd over seeds; {_provenance(rb)}", png(fig)))
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
        ax.set_xlabel("wall time (s, cumulative epoch time)")
        ax.set_ylabel("val_accuracy")
        ax.set_title(f"Accuracy vs time — {bench}")
        ax.legend()
        ax.grid(alpha=0.3)
        out.append(Figure(f"acc_vs_time_{_slug(bench)}", f"Validation accuracy vs time ({bench}; the paper's Fig. 4.5)",
                          f"final phase; mean over seeds per epoch; {_provenance(rb)}", png(fig)))
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
        ax.set_xlabel("learning rate η0")
        ax.set_ylabel("final test accuracy (%)")
        ax.set_title(f"Learning-rate sensitivity — {bench}")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        rb = data.usable("grid", bench)
        out.append(Figure(f"lr_sensitivity_{_slug(bench)}", f"Learning-rate sensitivity ({bench})",
                          "grid phase; mean and 95 % CI over seeds per lr; thick bars: the lr range within 1 point "
                          f"of each optimizer's best (its width in decades in the legend); {_provenance(rb)}",
                          png(fig)))
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
            ax.grid(alpha=0.3, axis="y")
        finite = tb["test_acc_mean"].dropna()
        if len(finite):
            span = max(finite.max() - finite.min(), 0.5)
            ax1.set_ylim(finite.min() - 2 * span, finite.max() + span)
        fig.suptitle(f"Ablation — {bench}")
        out.append(Figure(f"ablation_{_slug(bench)}", f"Ablation ({bench}; the paper's section 4.9)",
                          f"ablation phase; mean and 95 % CI over seeds; {_provenance(data.usable('ablation', bench))}",
                          png(fig)))
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
        ax.set_xlabel("tuning budget k (trials)")
        ax.set_ylabel("expected best val accuracy (%)")
        ax.set_title(f"Expected best accuracy vs tuning budget — {bench}")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        out.append(Figure(f"budget_{_slug(bench)}", f"Expected best accuracy vs tuning budget ({bench})",
                          "search phase; E[max of k trials drawn with replacement] (Dodge et al. 2019), band: 95 % "
                          f"bootstrap over trials; {_provenance(data.usable('search', bench))}", png(fig)))
    return out
