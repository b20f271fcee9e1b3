"""The report's layout, checked as a reader meets it (issue 14, "the report opens with the answer"): the HTML
parsed with html.parser, reports built from constructed runs (``ReportData.from_frames`` + ``write_report``,
no MLflow, a second each).

- the first section after the title holds the claims' verdict table and the per-optimizer results (and the
  figure), before any table of contents or method text; method, caveat and rules are printed once;
- sections with nothing to show are left out of the page and named under "What is missing";
- accuracies and their σ are in points everywhere;
- every table sits in a horizontally scrollable wrapper;
- bar charts start at zero, error bars are explained, figure footers say what max_steps caps.
"""

from __future__ import annotations

import math
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from matplotlib.container import BarContainer

from tracking.reports import ReportData
from tracking.reports.build import write_report
from tracking.reports.claims import RULES

BENCH = "mnist-lenet5"
#: final test accuracy (fraction) per seed: AMGT clearly above Adam (C1 supported), SGD below
FINAL = {"amgt": [0.992, 0.993, 0.9925, 0.9935, 0.993], "adam": [0.990, 0.991, 0.9905, 0.991, 0.990],
         "sgd": [0.985, 0.987, 0.984, 0.986, 0.983]}


def _runs(values: dict[str, list[float]], phase: str, **extra) -> list[dict]:
    return [{"run_id": f"{phase}-{opt}-{seed}", "study": "s", "phase": phase, "benchmark": BENCH,
             "optimizer": opt, "seed": seed, "outcome": "completed", "status": "FINISHED", "test_accuracy": v,
             "epochs": 8, **extra}
            for opt, vals in values.items() for seed, v in enumerate(vals)]


def _val_history(runs: list[dict], epochs: int = 8) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for r in runs:
        for e in range(1, epochs + 1):
            rows.append({"run_id": r["run_id"], "metric": "val_accuracy", "step": e,
                         "value": r["test_accuracy"] * (1 - 0.5 ** e) + 0.003 * rng.standard_normal()})
            rows.append({"run_id": r["run_id"], "metric": "train_loss", "step": e, "value": 2.0 * 0.5 ** e})
    return pd.DataFrame(rows)


_VOID = ("br", "img", "meta", "hr")


class Page(HTMLParser):
    """The page as a reader walks it: ``events``, a flat list of (tag or "/tag" or "text", attrs or text) in
    document order, each start tag's attrs with its parent's tag and class (``_parent``, ``_parent_class``);
    ``tables`` by ``data-name``: header cells and rows of cell texts; ``style``: the inline CSS."""

    def __init__(self, text: str):
        super().__init__()
        self.events: list[tuple[str, object]] = []
        self.tables: dict[str, dict] = {}
        self.style = ""
        self._open: list[tuple[str, str]] = []  # (tag, class) of the open elements
        self._table = self._row = self._cell = None
        self._header_row = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        parent, parent_class = self._open[-1] if self._open else ("", "")
        self.events.append((tag, {**a, "_parent": parent, "_parent_class": parent_class}))
        if tag not in _VOID:
            self._open.append((tag, a.get("class", "")))
        if tag == "table":
            self._table = self.tables.setdefault(a.get("data-name", ""), {"head": [], "rows": []})
        elif tag == "tr":
            self._row, self._header_row = [], True
        elif tag in ("td", "th"):
            self._cell = []
            self._header_row &= tag == "th"

    def handle_endtag(self, tag):
        if self._open and self._open[-1][0] == tag:
            self._open.pop()
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self._table["head" if self._header_row else "rows"].extend(
                self._row if self._header_row else [self._row])
            self._row = None
        self.events.append(("/" + tag, {}))

    def handle_data(self, data):
        if self._open and self._open[-1][0] == "style":
            self.style += data
        if self._cell is not None:
            self._cell.append(data)
        self.events.append(("text", data))

    def section(self, anchor: str) -> list[tuple[str, object]]:
        """The events inside <section id=anchor>."""
        start = next(i for i, (k, a) in enumerate(self.events) if k == "section" and a.get("id") == anchor)
        end = next(i for i in range(start, len(self.events)) if self.events[i][0] == "/section")
        return self.events[start:end]

    @staticmethod
    def text_of(events) -> str:
        return " ".join(str(a) for k, a in events if k == "text")


def _build(tmp_path, runs: list[dict], histories: pd.DataFrame | None = None):
    data = ReportData.from_frames(pd.DataFrame(runs), histories, studies=["s"])
    return write_report(data, tmp_path / "out")


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    runs = _runs(FINAL, "final")
    return _build(tmp_path_factory.mktemp("layout"), runs, _val_history(runs))


def test_first_section_after_the_title_is_the_answer(comparison):
    page = Page(comparison.html.read_text(encoding="utf-8"))
    kinds = [k for k, _ in page.events]
    h1_end = kinds.index("/h1")
    first = next(i for i in range(h1_end, len(kinds)) if kinds[i] in ("section", "nav", "p", "table", "ul"))
    assert page.events[first][0] == "section" and page.events[first][1]["id"] == "answer"
    answer = page.section("answer")
    names = [a.get("data-name") for k, a in answer if k == "table"]
    assert names == ["answer_claims", "answer_optimizers"]
    assert sum(k == "img" for k, _ in answer) == 1  # one figure
    claims = page.tables["answer_claims"]
    assert claims["head"][:3] == ["id", "claim", "verdict"] and "effect [95 % CI]" in claims["head"]
    verdicts = {r[0]: r[2] for r in claims["rows"]}
    assert verdicts["C1"] == "supported" and "C5" not in verdicts  # not measured: named in the lines instead
    c1 = {c.id: c for c in comparison.claims}["C1"]
    effect = claims["rows"][[r[0] for r in claims["rows"]].index("C1")][3]
    assert effect == c1.effect and effect.endswith(" points") and effect in c1.measured  # the same numbers
    assert c1.n == 5 and "n = 5 (5)" in claims["rows"][0][-1] and "MDE" in claims["rows"][0][-1]
    opts = page.tables["answer_optimizers"]
    assert [r[0] for r in opts["rows"]] == ["AMGT", "Adam", "SGD+momentum"]  # best mean first
    amgt = pd.Series(FINAL["amgt"]) * 100
    assert opts["rows"][0][2].startswith(f"{amgt.mean():.2f} [") and opts["rows"][1][-1] == "reference"
    lines = page.text_of(answer)
    assert "AMGT vs Adam: +" in lines and "supported: C1" in lines and "not measured: " in lines
    # method text, the table of contents and the full claims table come after the answer, never before
    answer_end = kinds.index("/section", first)
    method_at = next(i for i, (k, a) in enumerate(page.events) if k == "text" and "Intervals are 95 %" in a)
    toc_at = kinds.index("nav")
    claims_at = next(i for i, (k, a) in enumerate(page.events) if k == "table" and a.get("data-name") == "claims")
    assert answer_end < toc_at < claims_at < method_at


def test_method_caveat_and_rules_printed_once(tmp_path):
    runs = _runs(FINAL, "final", max_steps=30)
    page_text = Page(_build(tmp_path, runs).html.read_text(encoding="utf-8"))
    text = page_text.text_of(page_text.events)
    assert text.count("Caveat: the verdict(s) of") == 1
    assert text.count("Intervals are 95 %") == 1
    for cid, rule in RULES.items():
        assert text.count(rule) == 1, cid  # under "Verdict rules" only, not again in the claims table
    assert "rule" not in page_text.tables["claims"]["head"]


def test_empty_sections_are_left_out_and_listed_as_missing(tmp_path):
    abl = {"amgt": [0.990, 0.991, 0.990, 0.992, 0.9905], "amgt-no-decay": [0.975, 0.976, 0.974, 0.978, 0.975],
           "adam": [0.989, 0.990, 0.988, 0.990, 0.989]}
    r = _build(tmp_path, _runs(abl, "ablation"))
    page = Page(r.html.read_text(encoding="utf-8"))
    titles = [page.text_of(page.events[i:i + 2]) for i, (k, _) in enumerate(page.events) if k == "h2"]
    for gone in ("Comparison", "Cost", "Learning-rate sensitivity", "Tuning budget", "Selection protocol",
                 "Training curves", "What matters"):
        assert not [t for t in titles if t.startswith(gone)], (gone, titles)
    assert "Ablation" in titles and "What is missing" in titles
    line = next(m for m in r.missing if m.startswith("sections left out"))
    assert "Comparison (the paper's Table 4.2) (no final-phase runs)" in line and "Learning-rate sensitivity" in line
    assert line in page.text_of(page.section("missing"))
    assert "(no rows)" not in page.text_of(page.events)  # no empty table anywhere
    # the answer falls back on the ablation: accuracies against full AMGT
    head = page.tables["answer_optimizers"]["head"]
    assert head[-1] == "vs full AMGT, points [95 % CI]"
    assert r.tables["comparison"].empty and (r.out_dir / "comparison.csv").is_file()  # the CSV is still written


def test_accuracy_sigma_in_points_everywhere(comparison):
    comp = comparison.tables["comparison"].set_index("optimizer")
    for opt, vals in FINAL.items():
        sd_points = float(np.std(np.array(vals) * 100, ddof=1))
        assert comp.loc[opt, "sigma_seeds"] == pytest.approx(sd_points) and sd_points > 0.01  # not 0.0005
    assert (comp["sigma_epochs_detrended"] > 0.05).all()  # 0.003-fraction noise → about 0.3 points
    page = Page(comparison.html.read_text(encoding="utf-8"))
    opts = page.tables["answer_optimizers"]
    col = opts["head"].index("σ over seeds (points)")
    shown = [float(r[col]) for r in opts["rows"]]
    assert shown == [round(comp.loc[o, "sigma_seeds"], 2) for o in ("amgt", "adam", "sgd")]
    c4 = {c.id: c for c in comparison.claims}["C4"]
    assert "0.6" in c4.paper and "points" in c4.paper and "(points)" in c4.measured


def test_every_table_scrolls_sideways(comparison):
    page = Page(comparison.html.read_text(encoding="utf-8"))
    tables = [(a["_parent"], a["_parent_class"]) for k, a in page.events if k == "table"]
    assert tables and all(p == "div" and c == "tablewrap" for p, c in tables), tables
    assert ".tablewrap{overflow-x:auto" in page.style.replace(" ", "")
    assert len(page.tables["comparison"]["head"]) > 20  # the wide one the wrapper is for


def test_bar_charts_start_at_zero_and_say_what_the_error_bars_are(tmp_path):
    abl = {"amgt": [0.990, 0.991, 0.990, 0.992, 0.9905], "amgt-no-threshold": [0.989, 0.990, 0.990, 0.991, 0.990],
           "adam": [0.989, 0.990, 0.988, 0.990, 0.989]}
    runs = _runs(abl, "ablation", max_steps=200)
    hist = _val_history(runs)
    hist = pd.concat([hist, hist[hist.metric == "train_loss"].assign(metric="loss_oscillation", value=0.1)])
    r = _build(tmp_path, runs, hist)
    bars = [f for f in r.figures_drawn if any(isinstance(c, BarContainer) for ax in f.figure.axes
                                               for c in ax.containers)]
    assert [f.name for f in bars] == [f"ablation_{BENCH}"]
    for f in bars:
        for ax in f.figure.axes:
            if any(isinstance(c, BarContainer) for c in ax.containers):
                assert ax.get_ylim()[0] == 0, (f.name, ax.get_ylabel(), ax.get_ylim())
        assert "error bars: 95 % Student-t interval over seeds" in f.caption
    answer = next(f for f in r.figures_drawn if f.name == "answer_accuracy")
    assert "whiskers: 95 % Student-t interval over seeds" in answer.caption
    for f in r.figures_drawn:
        assert "max_steps 200 (optimizer steps per trial)" in f.caption and "/epoch" not in f.caption, f.caption


def test_effect_and_mde_texts_follow_the_claim_units(comparison):
    c = {x.id: x for x in comparison.claims}
    assert c["C1"].effect.count("[") == 1 and c["C1"].mde_text.endswith(" points")
    assert math.isfinite(c["C1"].mde) and c["C1"].mde_text == f"{c['C1'].mde:.2f} points"
    assert c["C4"].effect.startswith("(a) σ across seeds: ratio ") and "(b) σ over epochs: ratio " in c["C4"].effect


def test_no_legend_covers_a_title_or_the_footer(comparison):
    """Every figure of a report, drawn: no legend's box meets the suptitle's or the footer's (a new user saw the
    answer figure's legend sitting on its footer)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    checked = 0
    for f in comparison.figures_drawn:
        fig = f.figure
        if fig is None or fig.get_layout_engine() is None:  # Optuna's figures: footer below, png(tight=True)
            continue
        FigureCanvasAgg(fig).draw()
        renderer = fig.canvas.get_renderer()
        labels = {fig.get_suptitle(), fig.get_supxlabel()} - {""}
        texts = [t for t in fig.findobj(Text) if t.get_text() in labels and t.get_visible()]
        legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend() is not None)]
        for leg in legends:
            box = leg.get_window_extent(renderer)
            for t in texts:
                assert not box.overlaps(t.get_window_extent(renderer)), (f.name, t.get_text()[:40])
        checked += bool(legends)
    assert checked >= 3
