"""``trainforge report``: what a sweep found, as files a person can open.

:func:`write_report` reads a results database and writes into one folder:

* ``points.csv`` and ``points.parquet``: one row per point, columns ``key, sweep, spec_hash,
  evaluator, workload, method, status, error, seconds, finished, worker, trainforge``, then
  ``param.NAME`` for every parameter, ``obj.NAME`` for every objective, and ``pareto`` (the point
  is on the Pareto front of its workload and method for the sweep's objectives);
* ``pareto_X_vs_Y.png``: every point of the first two objectives, each workload's front drawn;
* ``sensitivity_NAME.png`` per swept parameter: each objective's mean (and min-max band) at each of
  the parameter's values, relative to the workload's mean over all points;
* ``index.html``: one self-contained page (inline data, a hand-written SVG plot in inline
  JavaScript, the PNGs inlined; nothing is fetched) with a scatter plot whose axes are chosen from
  the objectives and parameters, the fronts, a tooltip per point and the table of Pareto points.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
import random
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trainforge.dataflow.sweep.store import ResultStore, StoredPoint

__all__ = ["pareto_mask", "write_report"]

# the interactive plot keeps every Pareto point and a uniform sample of the others up to this many
_HTML_POINTS = 20_000
_PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def pareto_mask(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """True for the rows of ``values`` (points x objectives) that no other row dominates.

    A row dominates another when it is at least as good in every objective and better in one
    (``directions[j]`` is ``"min"`` or ``"max"``). Equal rows are all kept.
    """
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n == 0:
        return np.zeros(0, dtype=bool)
    signs = np.array([1.0 if d == "min" else -1.0 for d in directions])
    v = values * signs  # everything minimised
    if v.shape[1] == 2:
        # sort by the first objective (ties by the second): a point is on the front when its second
        # objective beats every earlier point's
        order = np.lexsort((v[:, 1], v[:, 0]))
        keep = np.zeros(n, dtype=bool)
        best = math.inf
        last: tuple[float, float] | None = None
        for i in order:
            here = (float(v[i, 0]), float(v[i, 1]))
            if here[1] < best:
                keep[i], best, last = True, here[1], here
            elif here == last:  # a duplicate of a front point is on the front too
                keep[i] = True
        return keep
    keep = np.ones(n, dtype=bool)
    for i in range(n):
        dominated = np.all(v <= v[i], axis=1) & np.any(v < v[i], axis=1)
        keep[i] = not dominated.any()
    return keep


def _rows(points: list[StoredPoint]) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    params: dict[str, None] = {}
    objectives: dict[str, None] = {}
    for p in points:
        params.update(dict.fromkeys(p.config))
        objectives.update(dict.fromkeys(p.objectives))
    rows = []
    for p in points:
        row: dict[str, Any] = {
            "key": p.key,
            "sweep": p.sweep,
            "spec_hash": p.spec_hash,
            "evaluator": p.evaluator,
            "workload": p.workload,
            "method": p.method,
            "status": p.status,
            "error": p.error,
            "seconds": p.seconds,
            "finished": p.finished,
            "worker": p.worker,
            "trainforge": p.versions.get("trainforge"),
        }
        row.update({f"param.{k}": p.config.get(k) for k in params})
        row.update({f"obj.{k}": p.objectives.get(k) for k in objectives})
        rows.append(row)
    return rows, list(params), list(objectives)


def _finite(value: Any) -> Any:
    return value if not isinstance(value, float) or math.isfinite(value) else None


def _write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def _write_parquet(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = {}
    for c in columns:
        values = [r.get(c) for r in rows]
        kinds = {type(v) for v in values if v is not None}
        if kinds and kinds <= {int, float} and kinds != {int}:
            values = [None if v is None else float(v) for v in values]
        elif len(kinds) > 1:  # a parameter that is sometimes a number, sometimes text
            values = [None if v is None else str(v) for v in values]
        arrays[c] = pa.array(values)
    pq.write_table(pa.table(arrays), path)


def _label(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**6 and value % 10**6 == 0:
        return f"{value // 10**6}M"
    return str(value)


def _sort_key(value: Any) -> tuple:
    return (0, value, "") if isinstance(value, int | float) and not isinstance(value, bool) else (1, 0, str(value))


def _plot_pareto(path: Path, ok: list[dict], groups: list[str], x: str, y: str, directions: dict[str, str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.8), dpi=110)
    for i, group in enumerate(groups):
        pts = [r for r in ok if r["_group"] == group]
        xs = np.array([r[f"obj.{x}"] for r in pts], dtype=float)
        ys = np.array([r[f"obj.{y}"] for r in pts], dtype=float)
        color = _PALETTE[i % len(_PALETTE)]
        ax.scatter(xs, ys, s=14, color=color, alpha=0.35, linewidths=0, label=f"{group} (all)")
        front = pareto_mask(np.stack([xs, ys], axis=1), [directions.get(x, "min"), directions.get(y, "min")])
        order = np.argsort(xs[front])
        ax.plot(xs[front][order], ys[front][order], "o-", color=color, ms=5, lw=1.5, label=f"{group} Pareto front")
    ax.set_xlabel(f"{x} ({directions.get(x, 'min')}imise)")
    ax.set_ylabel(f"{y} ({directions.get(y, 'min')}imise)")
    if all(r[f"obj.{x}"] > 0 for r in ok) and max(r[f"obj.{x}"] for r in ok) > 20 * min(r[f"obj.{x}"] for r in ok):
        ax.set_xscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(f"Pareto fronts: {x} vs {y}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_sensitivity(path: Path, ok: list[dict], groups: list[str], param: str, objectives: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = sorted({r[f"param.{param}"] for r in ok if r[f"param.{param}"] is not None}, key=_sort_key)
    fig, axes = plt.subplots(1, len(objectives), figsize=(4.2 * len(objectives), 3.6), dpi=110, squeeze=False)
    for ax, objective in zip(axes[0], objectives, strict=True):
        for i, group in enumerate(groups):
            pts = [r for r in ok if r["_group"] == group and r[f"obj.{objective}"] is not None]
            if not pts:
                continue
            overall = float(np.mean([r[f"obj.{objective}"] for r in pts])) or 1.0
            means, lows, highs, xs = [], [], [], []
            for j, v in enumerate(values):
                at = [r[f"obj.{objective}"] / overall for r in pts if r[f"param.{param}"] == v]
                if at:
                    xs.append(j)
                    means.append(np.mean(at))
                    lows.append(min(at))
                    highs.append(max(at))
            color = _PALETTE[i % len(_PALETTE)]
            ax.plot(xs, means, "o-", color=color, label=group)
            ax.fill_between(xs, lows, highs, color=color, alpha=0.15)
        ax.set_xticks(range(len(values)), [_label(v) for v in values])
        ax.set_xlabel(param)
        ax.set_ylabel(f"{objective} / workload mean")
        ax.grid(True, alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"Sensitivity to {param} (mean, min-max band)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(db: str | Path, out_dir: str | Path, *, sweep: str | None = None) -> dict[str, Any]:
    """Write the report of the results database ``db`` into ``out_dir`` (see the module docstring).

    Parameters
    ----------
    db : path-like
    out_dir : path-like
        Created if missing; files of the same names are overwritten.
    sweep : str, optional
        Only the points stored by the sweep of this name.

    Returns
    -------
    dict
        ``{"points": n, "failed": n, "pareto": n, "objectives": [x, y], "files": [names]}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with ResultStore(db) as store:
        points = list(store.points(sweep=sweep))
        sweeps = store.sweeps()
    if sweep is not None:
        sweeps = [s for s in sweeps if s["name"] == sweep] or sweeps
    directions: dict[str, str] = {}
    for s in sweeps:
        directions.update(s["directions"])
    rows, params, objectives = _rows(points)
    chosen = [o for o in (sweeps[-1]["objectives"] if sweeps else []) if o in objectives] or objectives[:2]
    for r in rows:
        r["_group"] = r["workload"] if len({p.method for p in points}) <= 1 else f"{r['workload']}/{r['method']}"
        r["pareto"] = False
    ok = [r for r in rows if r["status"] == "ok" and all(r[f"obj.{o}"] is not None for o in chosen)]
    groups = sorted({r["_group"] for r in ok})
    for group in groups:
        members = [r for r in ok if r["_group"] == group]
        if chosen:
            values = np.array([[r[f"obj.{o}"] for o in chosen] for r in members], dtype=float)
            for r, on in zip(members, pareto_mask(values, [directions.get(o, "min") for o in chosen]), strict=True):
                r["pareto"] = bool(on)
    columns = [
        *("key", "sweep", "spec_hash", "evaluator", "workload", "method", "status", "error"),
        *("seconds", "finished", "worker", "trainforge"),
        *(f"param.{p}" for p in params),
        *(f"obj.{o}" for o in objectives),
        "pareto",
    ]
    files = ["points.csv", "points.parquet"]
    clean = [{c: r.get(c) for c in columns} for r in rows]
    _write_csv(out / "points.csv", clean, columns)
    _write_parquet(out / "points.parquet", clean, columns)
    images: list[tuple[str, str]] = []
    if len(chosen) >= 2 and ok:
        name = f"pareto_{chosen[0]}_vs_{chosen[1]}.png"
        _plot_pareto(out / name, ok, groups, chosen[0], chosen[1], directions)
        images.append((name, f"Pareto fronts: {chosen[0]} vs {chosen[1]}"))
    swept = [p for p in params if len({repr(r[f"param.{p}"]) for r in ok}) > 1]
    for param in swept:
        name = f"sensitivity_{param}.png"
        _plot_sensitivity(out / name, ok, groups, param, chosen or objectives[:1])
        images.append((name, f"Sensitivity to {param}"))
    files += [name for name, _ in images]
    (out / "index.html").write_text(
        _html(rows, ok, groups, params, objectives, chosen, directions, sweeps, images, out), encoding="utf-8"
    )
    files.append("index.html")
    return {
        "points": len(rows),
        "failed": sum(1 for r in rows if r["status"] == "failed"),
        "pareto": sum(1 for r in rows if r["pareto"]),
        "objectives": chosen,
        "files": files,
    }


def _html(
    rows: list[dict],
    ok: list[dict],
    groups: list[str],
    params: list[str],
    objectives: list[str],
    chosen: list[str],
    directions: dict[str, str],
    sweeps: list[dict],
    images: list[tuple[str, str]],
    out: Path,
) -> str:
    shown = ok
    if len(ok) > _HTML_POINTS:
        front = [r for r in ok if r["pareto"]]
        rest = [r for r in ok if not r["pareto"]]
        shown = front + random.Random(0).sample(rest, max(0, _HTML_POINTS - len(front)))
    data = {
        "groups": groups,
        "params": params,
        "objectives": objectives,
        "chosen": chosen,
        "directions": {o: directions.get(o, "min") for o in objectives},
        "palette": _PALETTE,
        "points": [
            {
                "g": groups.index(r["_group"]),
                "p": [r[f"param.{p}"] for p in params],
                "o": [_finite(r[f"obj.{o}"]) for o in objectives],
                "f": r["pareto"],
                "k": r["key"][:12],
            }
            for r in shown
        ],
        "shown": len(shown),
        "total_ok": len(ok),
    }
    failed = [r for r in rows if r["status"] == "failed"]
    blob = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    figures = "\n".join(
        f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,'
        f'{base64.b64encode((out / name).read_bytes()).decode()}"><figcaption>{html.escape(caption)}</figcaption>'
        "</figure>"
        for name, caption in images
    )
    sweep_lines = "".join(
        f"<li><b>{html.escape(s['name'])}</b> ({html.escape(s['evaluator'])}, spec {s['spec_hash'][:12]})"
        + (f": {html.escape(s['spec'].get('description', ''))}" if s["spec"].get("description") else "")
        + "</li>"
        for s in sweeps
    )
    errors: dict[str, int] = defaultdict(int)
    for r in failed:
        errors[str(r["error"])] += 1
    error_lines = "".join(f"<li>{n} x <code>{html.escape(e)}</code></li>" for e, n in sorted(errors.items()))
    return _PAGE.format(
        title=html.escape(", ".join(s["name"] for s in sweeps) or "sweep"),
        points=len(rows),
        ok=len(ok),
        failed=len(failed),
        sweeps=sweep_lines,
        errors=f"<h2>Failed points</h2><ul>{error_lines}</ul>" if failed else "",
        figures=figures,
        data=blob,
        script=_SCRIPT,
    )


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>trainforge sweep report: {title}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1100px}}
h1{{font-size:1.4em}} h2{{font-size:1.15em;margin-top:1.5em}}
#controls label{{margin-right:1em}} select{{margin-left:.3em}}
#plot{{border:1px solid #ccc;background:#fff}}
#tip{{position:fixed;pointer-events:none;background:#fffbe6;border:1px solid #aaa;padding:4px 6px;font-size:12px;
display:none;white-space:pre}}
table{{border-collapse:collapse;font-size:12px}} td,th{{border:1px solid #ddd;padding:2px 6px;text-align:right}}
figure{{display:inline-block;margin:.5em}} figure img{{max-width:100%}} figcaption{{font-size:12px;color:#555}}
.legend span{{margin-right:1em}} .swatch{{display:inline-block;width:10px;height:10px;margin-right:4px}}
</style></head><body>
<h1>Design-space sweep: {title}</h1>
<p>{points} points: {ok} evaluated, {failed} failed. Sweeps in this database:</p><ul>{sweeps}</ul>
<h2>Interactive plot</h2>
<div id="controls">
<label>x<select id="xsel"></select></label><label>y<select id="ysel"></select></label>
<label><input type="checkbox" id="logx"> log x</label><label><input type="checkbox" id="logy"> log y</label>
<label><input type="checkbox" id="frontonly"> Pareto points only</label>
</div>
<div class="legend" id="legend"></div>
<svg id="plot" width="900" height="520" xmlns="http://www.w3.org/2000/svg"></svg>
<p id="note"></p>
<div id="tip"></div>
<h2>Pareto points</h2>
<table id="front"></table>
{errors}
<h2>Figures</h2>
{figures}
<script type="application/json" id="sweep-data">{data}</script>
<script>{script}</script>
</body></html>
"""

_SCRIPT = r"""
(function () {
  "use strict";
  const D = JSON.parse(document.getElementById("sweep-data").textContent);
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.getElementById("plot");
  const W = 900, H = 520, L = 80, R = 20, T = 20, B = 56;
  const axes = D.objectives.map((o, i) => ({label: o + " (" + D.directions[o] + ")", obj: o, get: p => p.o[i]}))
    .concat(D.params.map((n, i) => ({label: "param " + n, get: p => p.p[i]})));
  const xsel = document.getElementById("xsel"), ysel = document.getElementById("ysel");
  axes.forEach((a, i) => { for (const s of [xsel, ysel]) { const o = document.createElement("option");
    o.value = i; o.textContent = a.label; s.appendChild(o); } });
  const idx = name => Math.max(0, D.objectives.indexOf(name));
  xsel.value = D.chosen.length ? idx(D.chosen[0]) : 0;
  ysel.value = D.chosen.length > 1 ? idx(D.chosen[1]) : Math.min(1, axes.length - 1);
  // a log x axis by default when the first objective spans more than a factor 20
  const x0 = D.points.map(p => axes[+xsel.value].get(p)).filter(v => typeof v === "number");
  const x0min = Math.min(...x0);
  document.getElementById("logx").checked = x0.length > 0 && x0min > 0 && Math.max(...x0) > 20 * x0min;
  const legend = document.getElementById("legend");
  D.groups.forEach((g, i) => { const s = document.createElement("span");
    s.innerHTML = '<i class="swatch" style="background:' + D.palette[i % D.palette.length] + '"></i>';
    s.appendChild(document.createTextNode(g)); legend.appendChild(s); });
  const tip = document.getElementById("tip");
  function el(name, attrs, parent) { const e = document.createElementNS(NS, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]); (parent || svg).appendChild(e); return e; }
  function num(v) { return typeof v === "number" ? v : NaN; }
  function fmt(v) { if (typeof v !== "number") return String(v);
    const a = Math.abs(v); return (a !== 0 && (a >= 1e5 || a < 1e-3)) ? v.toExponential(3) : +v.toPrecision(4) + ""; }
  function scale(vals, log, lo, hi) {
    let a = Math.min(...vals), b = Math.max(...vals);
    if (log) { a = Math.log10(a); b = Math.log10(b); }
    if (a === b) { a -= 0.5; b += 0.5; }
    const pad = (b - a) * 0.05;
    a = (!log && a >= 0 && a - pad < 0) ? 0 : a - pad; b += pad;
    const f = v => lo + ((log ? Math.log10(v) : v) - a) / (b - a) * (hi - lo);
    // ticks at 1, 2 or 5 times a power of ten (decades on a log axis)
    const raw = (b - a) / 5, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = log ? Math.max(1, Math.round(raw)) : mag * (raw / mag >= 5 ? 5 : raw / mag >= 2 ? 2 : 1);
    f.ticks = [];
    for (let t = Math.ceil(a / step) * step; t <= b + 1e-9 * step; t += step) f.ticks.push(log ? Math.pow(10, t) : t);
    return f;
  }
  function front(pts, ax, ay) {
    // the 2-D Pareto front of the chosen objectives, per group
    const sx = D.directions[ax.obj] === "max" ? -1 : 1, sy = D.directions[ay.obj] === "max" ? -1 : 1;
    const s = pts.slice().sort((p, q) => sx * (ax.get(p) - ax.get(q)) || sy * (ay.get(p) - ay.get(q)));
    const out = []; let best = Infinity;
    for (const p of s) { const y = sy * ay.get(p); if (y < best) { out.push(p); best = y; } }
    return out;
  }
  function draw() {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const ax = axes[+xsel.value], ay = axes[+ysel.value];
    const logx = document.getElementById("logx").checked, logy = document.getElementById("logy").checked;
    let pts = D.points.filter(p => Number.isFinite(num(ax.get(p))) && Number.isFinite(num(ay.get(p))));
    if (logx) pts = pts.filter(p => ax.get(p) > 0);
    if (logy) pts = pts.filter(p => ay.get(p) > 0);
    if (document.getElementById("frontonly").checked) pts = pts.filter(p => p.f);
    el("rect", {x: 0, y: 0, width: W, height: H, fill: "#fff"});
    if (!pts.length) { el("text", {x: W / 2, y: H / 2, "text-anchor": "middle"}).textContent = "no numeric points";
      return; }
    const fx = scale(pts.map(ax.get), logx, L, W - R), fy = scale(pts.map(ay.get), logy, H - B, T);
    const g = el("g", {"class": "axes", stroke: "#999", "font-size": 11});
    el("line", {x1: L, y1: H - B, x2: W - R, y2: H - B}, g); el("line", {x1: L, y1: T, x2: L, y2: H - B}, g);
    for (const t of fx.ticks) { const x = fx(t); el("line", {x1: x, y1: H - B, x2: x, y2: H - B + 5}, g);
      el("text", {x: x, y: H - B + 18, "text-anchor": "middle", stroke: "none", fill: "#333"}, g)
        .textContent = fmt(t); }
    for (const t of fy.ticks) { const y = fy(t); el("line", {x1: L - 5, y1: y, x2: L, y2: y}, g);
      el("text", {x: L - 8, y: y + 4, "text-anchor": "end", stroke: "none", fill: "#333"}, g).textContent = fmt(t); }
    el("text", {x: (L + W - R) / 2, y: H - 12, "text-anchor": "middle", fill: "#000"}).textContent = ax.label;
    el("text", {x: 16, y: (T + H - B) / 2, "text-anchor": "middle", fill: "#000",
      transform: "rotate(-90 16 " + (T + H - B) / 2 + ")"}).textContent = ay.label;
    const dots = el("g", {"class": "points"});
    for (const p of pts) {
      const c = el("circle", {"class": "pt", cx: fx(ax.get(p)).toFixed(1), cy: fy(ay.get(p)).toFixed(1),
        r: p.f ? 4.5 : 3, fill: D.palette[p.g % D.palette.length], "fill-opacity": p.f ? 0.95 : 0.45,
        stroke: p.f ? "#000" : "none", "stroke-width": 0.6}, dots);
      c.addEventListener("mousemove", ev => {
        tip.style.display = "block";
        tip.style.left = (ev.clientX + 12) + "px"; tip.style.top = (ev.clientY + 12) + "px";
        tip.textContent = D.groups[p.g] + (p.f ? "  (Pareto)" : "") + "\n" +
          D.params.map((n, i) => n + " = " + fmt(p.p[i])).join("\n") + "\n" +
          D.objectives.map((n, i) => n + " = " + fmt(p.o[i])).join("\n");
      });
      c.addEventListener("mouseleave", () => { tip.style.display = "none"; });
    }
    if (ax.obj && ay.obj) {
      D.groups.forEach((name, gi) => {
        const f = front(pts.filter(p => p.g === gi), ax, ay);
        if (f.length > 1) el("path", {"class": "pareto", fill: "none", stroke: D.palette[gi % D.palette.length],
          "stroke-width": 2, d: f.map((p, i) => (i ? "L" : "M") + fx(ax.get(p)).toFixed(1) + " " +
            fy(ay.get(p)).toFixed(1)).join(" ")});
      });
    }
    document.getElementById("note").textContent = pts.length + " points shown" +
      (D.shown < D.total_ok ? " (every Pareto point and a sample of " + D.shown + " of " + D.total_ok + ")" : "") +
      "; hover a point for its configuration.";
  }
  function table() {
    const t = document.getElementById("front");
    const head = ["group", ...D.params, ...D.objectives];
    const rows = D.points.filter(p => p.f).slice(0, 500);
    t.innerHTML = "<tr>" + head.map(h => "<th>" + h + "</th>").join("") + "</tr>";
    for (const p of rows) { const tr = document.createElement("tr");
      for (const v of [D.groups[p.g], ...p.p, ...p.o]) { const td = document.createElement("td");
        td.textContent = fmt(v); tr.appendChild(td); } t.appendChild(tr); }
  }
  for (const id of ["xsel", "ysel", "logx", "logy", "frontonly"]) {
    document.getElementById(id).addEventListener("change", draw);
  }
  try { draw(); table(); document.body.setAttribute("data-rendered", "ok"); }
  catch (e) { document.body.setAttribute("data-rendered", "error: " + e); throw e; }
})();
"""
