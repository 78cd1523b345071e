"""Self-contained HTML energy report with matplotlib plots.

One file, no external resources: plots are embedded as base64 PNG. Sections: totals
and before/after comparison, per-layer SynOps, cores per layer, energy breakdown,
accuracy vs SynOps of the pruning methods run, SPEAR's reward per search episode (when
a SPEAR search ran), and one per-layer table per network.
When the page has loaded, ``<body data-images-loaded="true">`` tells a headless browser
that every plot decoded.
"""

from __future__ import annotations

import base64
import html
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from hw_models.energy_report import EnergyTable
from neuroprune.atomic import atomic_path

__all__ = ["ReportEntry", "MethodPoint", "write_html", "reward_figure_png"]

ENERGY_TERMS = (("synops_j", "SynOps"), ("neuron_updates_j", "neuron updates"), ("spikes_j", "spikes"),
                ("mesh_hops_j", "mesh hops"), ("static_j", "static"))


@dataclass(frozen=True)
class ReportEntry:
    """One network in the report (e.g. "dense" and "SPEAR 0.5")."""

    label: str
    table: EnergyTable
    accuracy: float | None = None
    fits: bool | None = None
    notes: str = ""


@dataclass(frozen=True)
class MethodPoint:
    """A pruning result for the accuracy-vs-SynOps plot."""

    method: str
    synops_ratio: float
    accuracy: float


def _png(figure) -> str:  # type: ignore[no-untyped-def]
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _grouped_bars(entries: Sequence[ReportEntry], value: str, ylabel: str, title: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    indices = sorted({row.index for entry in entries for row in entry.table.layers if getattr(row, value)})
    figure, axis = plt.subplots(figsize=(7, 3.2))
    width = 0.8 / max(len(entries), 1)
    for k, entry in enumerate(entries):
        by_index = {row.index: getattr(row, value) for row in entry.table.layers}
        axis.bar(np.arange(len(indices)) + k * width, [by_index.get(i, 0) for i in indices], width, label=entry.label)
    axis.set_xticks(np.arange(len(indices)) + width * (len(entries) - 1) / 2)
    axis.set_xticklabels([f"layer {i}" for i in indices])
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.legend()
    return _png(figure)


def _energy_plot(entries: Sequence[ReportEntry]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 3.2))
    bottoms = [0.0] * len(entries)
    for key, label in ENERGY_TERMS:
        values = [entry.table.breakdown.get(key, 0.0) * 1e6 for entry in entries]
        axis.bar([e.label for e in entries], values, bottom=bottoms, label=label)
        bottoms = [b + v for b, v in zip(bottoms, values)]
    axis.set_ylabel("energy per inference (µJ)")
    axis.set_title("energy breakdown")
    axis.legend(fontsize="small")
    return _png(figure)


def _methods_plot(points: Sequence[MethodPoint]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 3.2))
    for method in dict.fromkeys(p.method for p in points):
        mine = [p for p in points if p.method == method]
        axis.plot([p.synops_ratio for p in mine], [100 * p.accuracy for p in mine], "o", label=method, markersize=8)
    axis.set_xlabel("SynOps ratio (pruned / dense)")
    axis.set_ylabel("test accuracy (%)")
    axis.set_title("accuracy vs SynOps")
    axis.grid(alpha=0.3)
    axis.legend()
    return _png(figure)


def _reward_figure(series: Mapping[str, Sequence[Mapping[str, Any]]]):  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 3.4))
    for n, (label, history) in enumerate(series.items()):
        color = f"C{n % 10}"
        episodes = [int(h["episode"]) for h in history]
        rewards = [float(h["reward"]) for h in history]
        axis.plot(episodes, rewards, "o", color=color, markersize=3, alpha=0.45)
        best, running = float("-inf"), []
        for h in history:
            if h.get("feasible", True):
                best = max(best, float(h["reward"]))
            running.append(best if best > float("-inf") else float("nan"))
        axis.plot(episodes, running, "-", color=color, label=f"{label} (best so far)")
    axis.set_xlabel("episode")
    axis.set_ylabel("reward (val accuracy - penalties)")
    axis.set_title("SPEAR reward per episode")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    return figure


def reward_figure_png(series: Mapping[str, Sequence[Mapping[str, Any]]]) -> bytes:
    """PNG of SPEAR's reward per episode (dots) and the best feasible reward so far
    (line), one colour per search; ``series`` maps a label to a search history (dicts
    with ``episode``, ``reward`` and ``feasible``)."""
    return base64.b64decode(_png(_reward_figure(series)))


def _fmt(value: float) -> str:
    if abs(value) >= 1e5:
        return f"{value:,.0f}"
    return f"{value:,.2f}" if value % 1 else f"{value:,.0f}"


def _layer_table(entry: ReportEntry) -> str:
    rows = "".join(
        f"<tr><td>{r.index}</td><td>{r.type}</td><td>{r.neurons:,}</td><td>{r.cores}</td><td>{_fmt(r.synops)}</td>"
        f"<td>{_fmt(r.spikes)}</td><td>{r.energy_j * 1e6:.3f}</td></tr>"
        for r in entry.table.layers
    )
    return (f"<h3>{html.escape(entry.label)}</h3><table><tr><th>#</th><th>type</th><th>neurons</th><th>cores</th>"
            f"<th>SynOps</th><th>spikes</th><th>energy (µJ)</th></tr>{rows}</table>")


def _totals_table(entries: Sequence[ReportEntry]) -> str:
    header = "".join(f"<th>{html.escape(e.label)}</th>" for e in entries)
    first = entries[0].table

    def row(name: str, values: list[str]) -> str:
        return f"<tr><td>{name}</td>" + "".join(f"<td>{v}</td>" for v in values) + "</tr>"

    lines = [
        row("test accuracy", ["-" if e.accuracy is None else f"{100 * e.accuracy:.2f} %" for e in entries]),
        row("fits the chip", ["-" if e.fits is None else ("yes" if e.fits else "no") for e in entries]),
        row("cores", [str(e.table.cores) for e in entries]),
        row("SynOps / inference", [f"{_fmt(e.table.synops)} ({e.table.synops / first.synops:.2f}x)" if first.synops
                                   else _fmt(e.table.synops) for e in entries]),
        row("spikes / inference", [_fmt(e.table.spikes) for e in entries]),
        row("neuron updates / inference", [_fmt(e.table.neuron_updates) for e in entries]),
        row(f"energy / inference on {html.escape(first.chip)} (µJ)",
            [f"{e.table.total_j * 1e6:.3f}" for e in entries]),
        row("45 nm: SNN accumulates (µJ)", [f"{e.table.breakdown['snn_ac_45nm_j'] * 1e6:.3f}" for e in entries]),
        row("45 nm: equivalent ANN MACs (µJ)", [f"{e.table.breakdown['ann_mac_45nm_j'] * 1e6:.3f}" for e in entries]),
    ]
    return f"<table><tr><th></th>{header}</tr>{''.join(lines)}</table>"


_STYLE = """body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}
th{background:#f3f3f3}td:first-child{text-align:left}img{max-width:100%;display:block;margin:1em 0}
.note{color:#555;font-size:0.9em}"""

_ONLOAD = """<script>window.addEventListener('load',function(){var ok=Array.prototype.every.call(
document.images,function(i){return i.complete&&i.naturalWidth>0});document.body.dataset.imagesLoaded=String(ok&&
document.images.length>0);});</script>"""


def write_html(path: str | os.PathLike[str], title: str, entries: Sequence[ReportEntry],
               methods: Sequence[MethodPoint] = (), notes: Sequence[str] = (),
               searches: Mapping[str, Sequence[Mapping[str, Any]]] | None = None) -> Path:
    """Write the report to ``path`` (atomically) and return the path. ``searches``:
    SPEAR search histories by label, drawn as reward per episode."""
    if not entries:
        raise ValueError("a report needs at least one network")
    plots = [
        ("SynOps per layer", _grouped_bars(entries, "synops", "SynOps per inference", "SynOps per layer")),
        ("Cores per layer", _grouped_bars(entries, "cores", "cores", f"cores per layer on {entries[0].table.chip}")),
        ("Energy breakdown", _energy_plot(entries)),
    ]
    if methods:
        plots.append(("Accuracy vs SynOps", _methods_plot(methods)))
    if searches and any(searches.values()):
        plots.append(("SPEAR reward per episode", _png(_reward_figure(searches))))
    body = [f"<h1>{html.escape(title)}</h1>"]
    body += [f"<p class='note'>{html.escape(n)}</p>" for n in notes]
    body.append("<h2>Totals</h2>" + _totals_table(entries))
    for name, png in plots:
        body.append(f"<h2>{name}</h2><img alt='{name}' src='data:image/png;base64,{png}'>")
    body.append("<h2>Per layer</h2>" + "".join(_layer_table(e) for e in entries))
    document = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                f"<style>{_STYLE}</style>{_ONLOAD}</head><body>{''.join(body)}</body></html>")
    with atomic_path(path) as tmp:
        tmp.write_text(document, encoding="utf-8")
    return Path(path)
