"""The coordinator's report: Markdown, CSV tables, the iMRMC input file and two PNG plots.

Files written into the output folder:

- ``report.md``      — design, a table per reader, the pooled estimate, agreement, notes.
- ``readers.csv``    — one row per reader (the numbers of the table).
- ``answers.csv``    — one row per reader and case: choice, confidence, 1–10 rating, time, truth, correct.
- ``ratings.imrmc``  — input for the FDA's iMRMC tool (reader, case, modality, score; truth rows first).
  Single-image mode: ROC data, score = the 1–10 rating that the image is synthetic, truth 1 = synthetic.
  Paired mode: binary percent-correct data in the form the iMRMC wiki ("MRMC analysis of binary data")
  describes — each pair is a "disease" case scored 1 (correct) or 0, plus five placeholder
  "non-disease" cases scored 0.5 by every reader, so that the AUC iMRMC reports is the proportion correct.
- ``accuracy.png``   — accuracy per reader with Wilson 95 % intervals, the pooled estimate, chance line.
- ``roc.png``        — (single-image mode) each reader's empirical ROC curve from the ratings.

Plots are drawn with Pillow: the engine may not import Qt, and matplotlib is not a dependency.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

from mfm_engine.atomic import atomic_write_text
from mfm_engine.reader_study.analysis import StudyAnalysis

PAIRED_PLACEHOLDER_NEGATIVES = 5
_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f"]


def _f(x: float, digits: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _pct(x: float) -> str:
    return "–" if math.isnan(x) else f"{100 * x:.1f} %"


def _ci(ci: tuple[float, float]) -> str:
    return "–" if math.isnan(ci[0]) else f"{100 * ci[0]:.1f}–{100 * ci[1]:.1f} %"


def _p(p: float) -> str:
    if math.isnan(p):
        return "–"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


# -- Markdown -------------------------------------------------------------------------------------------


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


_PAIRED_COLUMNS = [
    "Reader",
    "Answered",
    "Correct",
    "Accuracy",
    "95 % CI (Wilson)",
    "p vs 50 % (exact binomial)",
    "d′ (√2·Φ⁻¹(pc))",
    "Mean time (s)",
    "Window changes",
    "Revisions",
]
_SINGLE_COLUMNS = [
    "Reader",
    "Answered",
    "Accuracy",
    "95 % CI (Wilson)",
    "p vs 50 % (exact binomial)",
    "Sensitivity (synthetic)",
    "Specificity (real)",
    "ROC AUC (10-point rating)",
    "d′ (log-linear)",
    "Mean time (s)",
    "Window changes",
    "Revisions",
]


def _reader_cells(r, mode: str) -> list[str]:
    answered = f"{r.n_answered}/{r.n_cases}"
    tail = [_f(r.mean_seconds, 1), str(r.window_changes), str(r.revisions)]
    if mode == "paired":
        star = "*" if r.dprime_corrected else ""
        return [
            r.reader,
            answered,
            str(r.n_correct),
            _pct(r.accuracy),
            _ci(r.ci),
            _p(r.p_value),
            _f(r.dprime, 2) + star,
            *tail,
        ]
    return [
        r.reader,
        answered,
        _pct(r.accuracy),
        _ci(r.ci),
        _p(r.p_value),
        f"{_pct(r.sensitivity)} ({_ci(r.sensitivity_ci)})",
        f"{_pct(r.specificity)} ({_ci(r.specificity_ci)})",
        _f(r.auc),
        _f(r.dprime, 2),
        *tail,
    ]


def _design_line(d: dict) -> str:
    syn = d.get("synthesis") or {}
    if syn:
        made = (
            f"synthetic volumes made with `{syn.get('model')}`, "
            f"solver {syn.get('solver')}, {syn.get('steps')} steps"
        )
    else:
        made = "synthetic volumes given with the cases"
    revisions = "allowed" if d.get("allow_revisions") else "not allowed"
    return (
        f"**Design:** seed {d.get('seed')}, {d.get('candidates')} candidate studies "
        f"({d.get('source') or 'listed'}); {made}; initial window {d.get('window')}; revisions {revisions}."
    )


def _pooled_lines(p) -> list[str]:
    if p.n_answers == 0:
        return ["No answers yet."]
    if math.isnan(p.low):
        verdict = "right" if p.proportion == 1 else "wrong"
        return [
            f"Proportion correct {_pct(p.proportion)} over {p.n_answers} answers: every answer was "
            f"{verdict}, so the model gives no interval (the logit is infinite)."
        ]
    return [
        f"Proportion correct {_pct(p.proportion)} (95 % CI {_pct(p.low)}–{_pct(p.high)}; "
        f"Wald z = {p.z:.2f}, p = {_p(p.p_value)} against 50 %) over {p.n_answers} answers "
        f"on {p.n_cases} cases by {p.n_readers} reader(s).",
        "",
        f"Method: {p.method}. This accounts for readers' answers on the same case being related; it "
        "treats these readers as fixed. For conclusions about radiologists in general (readers and cases "
        "both random), analyse `ratings.imrmc` with the FDA's iMRMC tool. Readers are not pooled into one "
        "binomial test.",
    ]


def markdown_report(a: StudyAnalysis) -> str:
    """The report as Markdown text."""
    if a.mode == "paired":
        question = "which of two volumes is synthetic"
    else:
        question = "whether one volume is real or synthetic"
    lines = [
        f"# Reader study {a.study_id}",
        "",
        f"**Mode:** {a.mode} — readers decided {question}. "
        f"**Cases:** {a.n_cases}. **Readers:** {len(a.readers)}.",
    ]
    if a.design:
        lines.append(_design_line(a.design))
    columns = _PAIRED_COLUMNS if a.mode == "paired" else _SINGLE_COLUMNS
    lines += ["", "## Per reader", "", _row(columns), _row(["---"] * len(columns))]
    lines += [_row(_reader_cells(r, a.mode)) for r in a.readers]
    lines += [
        "",
        "## Pooled over readers",
        "",
        *_pooled_lines(a.pooled),
        "",
        "## Agreement between readers",
        "",
    ]
    ag = a.agreement
    if not ag.method:
        lines.append("Needs at least two readers.")
    else:
        lines.append(f"{ag.method} = {_f(ag.kappa)} on the {ag.n_cases} case(s) every reader answered.")
        if len(ag.pairwise) > 1:
            lines += ["", "| Readers | Cohen's κ |", "|---|---|"]
            lines += [f"| {r1} – {r2} | {_f(k)} |" for (r1, r2), k in ag.pairwise.items()]
    lines += ["", "## How to read this", ""]
    if a.mode == "single":
        detail = (
            "In single-image mode, sensitivity is the share of synthetic volumes called synthetic, "
            "specificity the share of real volumes called real; the ROC AUC uses choice and confidence "
            "combined into a 1–10 rating (1 = sure real … 10 = sure synthetic)."
        )
    else:
        detail = "d′ = √2·Φ⁻¹(proportion correct) is the forced-choice sensitivity index (0 = chance)."
    lines.append(
        "Accuracy near 50 % with an interval that includes 50 % means these readers could not tell real "
        "from synthetic volumes better than chance on these cases. " + detail
    )
    if a.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in a.notes]
    plots = "`accuracy.png`" + (", `roc.png`" if a.mode == "single" else "")
    lines += [
        "",
        "## Files",
        "",
        "- `readers.csv`: the per-reader numbers; `answers.csv`: every final answer with its truth.",
        "- `ratings.imrmc`: input for iMRMC.",
        f"- {plots}: plots.",
        "",
    ]
    return "\n".join(lines)


# -- CSV and iMRMC ------------------------------------------------------------------------------------


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    os.replace(tmp, path)


def _num(x: float) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.6g}"


def write_readers_csv(a: StudyAnalysis, path: Path) -> None:
    """One row per reader, plus a 'pooled' row."""
    header = [
        "reader",
        "n_cases",
        "n_answered",
        "n_correct",
        "accuracy",
        "ci_low",
        "ci_high",
        "p_binomial_vs_0.5",
        "dprime",
        "dprime_corrected",
        "mean_seconds",
        "median_seconds",
        "window_changes",
        "revisions",
        "sensitivity",
        "sensitivity_ci_low",
        "sensitivity_ci_high",
        "specificity",
        "specificity_ci_low",
        "specificity_ci_high",
        "roc_auc",
    ]
    rows = [
        [
            r.reader,
            r.n_cases,
            r.n_answered,
            r.n_correct,
            _num(r.accuracy),
            _num(r.ci[0]),
            _num(r.ci[1]),
            _num(r.p_value),
            _num(r.dprime),
            int(r.dprime_corrected),
            _num(r.mean_seconds),
            _num(r.median_seconds),
            r.window_changes,
            r.revisions,
            _num(r.sensitivity),
            _num(r.sensitivity_ci[0]),
            _num(r.sensitivity_ci[1]),
            _num(r.specificity),
            _num(r.specificity_ci[0]),
            _num(r.specificity_ci[1]),
            _num(r.auc),
        ]
        for r in a.readers
    ]
    p = a.pooled
    rows.append(
        [
            "pooled (GEE, clustered by case)",
            a.n_cases,
            p.n_answers,
            "",
            _num(p.proportion),
            _num(p.low),
            _num(p.high),
            _num(p.p_value),
        ]
        + [""] * (len(header) - 8)
    )
    _write_csv(path, header, rows)


def write_answers_csv(a: StudyAnalysis, path: Path) -> None:
    """One row per reader and case."""
    header = [
        "reader",
        "case",
        "position",
        "choice",
        "confidence",
        "rating10",
        "seconds",
        "truth",
        "correct",
        "revised",
    ]
    rows = [
        [
            s.reader,
            s.case_id,
            s.position + 1,
            s.choice,
            s.confidence,
            s.rating,
            f"{s.seconds:.3f}",
            s.truth,
            int(s.correct),
            int(s.revised),
        ]
        for s in sorted(a.answers, key=lambda s: (s.reader, s.position))
    ]
    _write_csv(path, header, rows)


def imrmc_text(a: StudyAnalysis) -> str:
    """The ratings as iMRMC input: description, 'BEGIN DATA:', then reader,case,modality,score rows."""
    readers = [r.reader for r in a.readers]
    cases = sorted({s.case_id for s in a.answers})
    lines = [f"MFM Studio reader study {a.study_id} ({a.mode} mode)"]
    if a.mode == "single":
        truth = {s.case_id: int(s.truth == "synthetic") for s in a.answers}
        n1 = sum(truth.values())
        lines += [
            "Score: rating 1-10 that the image is synthetic (10 = certainly synthetic).",
            "Truth: 1 = synthetic, 0 = real.",
            f"NR: {len(readers)}",
            f"N0: {len(cases) - n1}",
            f"N1: {n1}",
            "NM: 1",
            "BEGIN DATA:",
        ]
        lines += [f"truth,{c},truth,{truth[c]}" for c in cases]
        lines += [f"{s.reader},{s.case_id},synthetic-detection,{s.rating}" for s in a.answers]
    else:
        negatives = [f"placeholder-negative-{i + 1}" for i in range(PAIRED_PLACEHOLDER_NEGATIVES)]
        lines += [
            "Binary percent-correct data (paired forced choice): each pair is a signal case scored 1",
            "if the reader picked the synthetic side, else 0; placeholder negative cases score 0.5,",
            "so the AUC iMRMC reports is the proportion correct.",
            f"NR: {len(readers)}",
            f"N0: {len(negatives)}",
            f"N1: {len(cases)}",
            "NM: 1",
            "BEGIN DATA:",
        ]
        lines += [f"truth,{c},truth,1" for c in cases]
        lines += [f"truth,{c},truth,0" for c in negatives]
        lines += [f"{s.reader},{s.case_id},paired-2afc,{int(s.correct)}" for s in a.answers]
        lines += [f"{r},{c},paired-2afc,0.5" for r in readers for c in negatives]
    return "\n".join(lines) + "\n"


# -- plots ----------------------------------------------------------------------------------------------


class _Canvas:
    """A white Pillow image with a plotting area mapped to data coordinates."""

    def __init__(self, width: int, height: int, box: tuple[int, int, int, int], xr, yr) -> None:
        from PIL import Image, ImageDraw, ImageFont

        self.image = Image.new("RGB", (width, height), "white")
        self.draw = ImageDraw.Draw(self.image)
        self.font = ImageFont.load_default(size=15)
        self.small = ImageFont.load_default(size=13)
        self.title_font = ImageFont.load_default(size=18)
        self.box, self.xr, self.yr = box, xr, yr

    def xy(self, x: float, y: float) -> tuple[float, float]:
        l, t, r, b = self.box
        return (
            l + (x - self.xr[0]) / (self.xr[1] - self.xr[0]) * (r - l),
            b - (y - self.yr[0]) / (self.yr[1] - self.yr[0]) * (b - t),
        )

    def text(self, pos, text: str, anchor: str = "la", font=None, fill: str = "black") -> None:
        self.draw.text(pos, text, fill=fill, font=font or self.font, anchor=anchor)

    def frame(self, title: str, xlabel: str, ylabel: str, yticks, xticks=None) -> None:
        l, t, r, b = self.box
        for v in yticks:
            _, y = self.xy(self.xr[0], v)
            self.draw.line([(l, y), (r, y)], fill="#e4e4e4")
            self.text((l - 8, y), f"{v:g}", "rm", self.small)
        for v in xticks or []:
            x, _ = self.xy(v, self.yr[0])
            self.draw.line([(x, t), (x, b)], fill="#e4e4e4")
            self.text((x, b + 8), f"{v:g}", "ma", self.small)
        self.draw.rectangle([l, t, r, b], outline="black")
        self.text(((l + r) / 2, 14), title, "ma", self.title_font)
        self.text(((l + r) / 2, b + (34 if xticks else 40)), xlabel, "ma")
        # Pillow cannot rotate text in place: draw the y label on its own image, rotated.
        from PIL import Image, ImageDraw

        w = int(self.font.getlength(ylabel)) + 4
        label = Image.new("RGB", (w, 20), "white")
        ImageDraw.Draw(label).text((2, 10), ylabel, fill="black", font=self.font, anchor="lm")
        label = label.rotate(90, expand=True)
        self.image.paste(label, (8, int((t + b) / 2 - w / 2)))

    def dashed(self, p0, p1, fill="#888888", dash: int = 8) -> None:
        (x0, y0), (x1, y1) = p0, p1
        length = math.hypot(x1 - x0, y1 - y0)
        steps = max(1, int(length // dash))
        for i in range(0, steps, 2):
            a, b = i / steps, min(1.0, (i + 1) / steps)
            self.draw.line(
                [(x0 + a * (x1 - x0), y0 + a * (y1 - y0)), (x0 + b * (x1 - x0), y0 + b * (y1 - y0))],
                fill=fill,
                width=2,
            )

    def save(self, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.partial.png")
        self.image.save(tmp, format="PNG")
        os.replace(tmp, path)


def plot_accuracy(a: StudyAnalysis, path: Path) -> None:
    """Accuracy per reader with Wilson 95 % intervals, the pooled estimate, and the 50 % chance line."""
    items = [(r.reader, r.accuracy, r.ci, _COLOURS[i % len(_COLOURS)]) for i, r in enumerate(a.readers)]
    p = a.pooled
    if p.n_answers and len(a.readers) > 1:
        items.append(("pooled (GEE)", p.proportion, (p.low, p.high), "#000000"))
    width = max(640, 110 * len(items) + 160)
    c = _Canvas(width, 480, (90, 50, width - 30, 400), (0, max(1, len(items))), (0, 1))
    c.frame(
        f"Accuracy per reader ({a.mode} mode, {a.n_cases} cases)",
        "",
        "proportion correct",
        [0, 0.25, 0.5, 0.75, 1.0],
    )
    c.dashed(c.xy(0, 0.5), c.xy(len(items), 0.5))
    c.text((c.box[0] + 6, c.xy(0, 0.5)[1] - 4), "chance", "lb", c.small, "#666666")
    for i, (name, acc, ci, colour) in enumerate(items):
        x = i + 0.5
        if not math.isnan(ci[0]):
            (_, y_lo), (_, y_hi) = c.xy(x, ci[0]), c.xy(x, ci[1])
            px, _ = c.xy(x, 0)
            c.draw.line([(px, y_lo), (px, y_hi)], fill=colour, width=3)
            c.draw.line([(px - 10, y_lo), (px + 10, y_lo)], fill=colour, width=3)
            c.draw.line([(px - 10, y_hi), (px + 10, y_hi)], fill=colour, width=3)
        if not math.isnan(acc):
            px, py = c.xy(x, acc)
            c.draw.ellipse([px - 7, py - 7, px + 7, py + 7], fill=colour, outline="black")
            c.text((px + 12, py), f"{100 * acc:.0f} %", "lm", c.small)
        c.text((c.xy(x, 0)[0], c.box[3] + 10), name, "ma", c.font)
    c.text(
        (c.box[0], 452),
        "bars: 95 % Wilson interval (pooled: case-clustered robust interval)",
        "la",
        c.small,
        "#444444",
    )
    c.save(path)


def plot_roc(a: StudyAnalysis, path: Path) -> None:
    """Each reader's empirical ROC curve from the 1–10 ratings (single-image mode), chance diagonal."""
    c = _Canvas(620, 620, (90, 50, 590, 550), (0, 1), (0, 1))
    ticks = [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    c.frame(
        "ROC from confidence ratings",
        "false-positive rate (real called synthetic)",
        "true-positive rate (synthetic called synthetic)",
        ticks,
        ticks,
    )
    c.dashed(c.xy(0, 0), c.xy(1, 1))
    for i, r in enumerate(a.readers):
        fpr, tpr = r.roc
        if not fpr:
            continue
        colour = _COLOURS[i % len(_COLOURS)]
        pts = [c.xy(x, y) for x, y in zip(fpr, tpr, strict=True)]
        c.draw.line(pts, fill=colour, width=3)
        for px, py in pts:
            c.draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=colour)
        lx, ly = c.box[2] - 190, c.box[3] - 24 - 22 * (len(a.readers) - 1 - i)
        c.draw.line([(lx, ly), (lx + 24, ly)], fill=colour, width=3)
        c.text((lx + 30, ly), f"{r.reader}  AUC {_f(r.auc, 2)}", "lm", c.small)
    c.save(path)


def write_report(a: StudyAnalysis, out: str | os.PathLike[str]) -> list[Path]:
    """Write report.md, readers.csv, answers.csv, ratings.imrmc and the plots into ``out``; returns paths."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    written = [
        folder / "report.md",
        folder / "readers.csv",
        folder / "answers.csv",
        folder / "ratings.imrmc",
        folder / "accuracy.png",
    ]
    atomic_write_text(written[0], markdown_report(a))
    write_readers_csv(a, written[1])
    write_answers_csv(a, written[2])
    atomic_write_text(written[3], imrmc_text(a))
    plot_accuracy(a, written[4])
    if a.mode == "single":
        written.append(folder / "roc.png")
        plot_roc(a, written[-1])
    return written
