"""The footprint for people: a table in the run's summary and a bar chart of this run
against the pull, in bytes, dollars, kilowatt-hours and grams CO2e.
"""

from __future__ import annotations

import io

from proxima.analysis.results import png_markdown
from proxima.footprint.account import Footprint

PANELS = (("bytes", "bytes moved"), ("usd", "USD"), ("kwh", "kWh"), ("gco2e", "g CO2e"))


def chart_png(footprint: Footprint) -> bytes:
    """Four small bar pairs: this run (compute + transfer) and the pull."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    run, pull = footprint.run, footprint.pull
    fig = Figure(figsize=(8, 2.2), dpi=80)
    FigureCanvasAgg(fig)
    # fixed margins and few ticks: tight_layout drew the figure twice (177 -> 89 ms here)
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.14, top=0.84, wspace=0.55)
    for i, (key, label) in enumerate(PANELS):
        ax = fig.add_subplot(1, len(PANELS), i + 1)
        values = [getattr(run, key), getattr(pull, key)]
        ax.bar(["Proxima", "pull"], values, color=["#2a7", "#c44"])
        ax.set_title(label, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
        ax.yaxis.set_major_locator(MaxNLocator(4))
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def chart_markdown(footprint: Footprint) -> str:
    """The chart, inline in Markdown (as the summary shows the result's picture)."""
    return "\n" + png_markdown(chart_png(footprint), "footprint: this run vs the pull") + "\n"


def _g(x: float) -> str:
    return f"{x:.3g}"


def markdown(footprint: Footprint) -> str:
    """The footprint as a Markdown section: per region, totals, and the factors' sources."""
    kind = "estimated" if footprint.estimate else "measured"
    rows = "\n".join(
        f"| {r.region} | {_g(r.cpu_s)} | {r.utilisation:.0%} | ${_g(r.compute.usd)} | "
        f"{_g(r.compute.kwh)} | {_g(r.compute.gco2e)} | {r.transfer.bytes:,} | "
        f"${_g(r.transfer.usd)} | {_g(r.transfer.gco2e)} | {r.pull.bytes:,} | "
        f"${_g(r.pull.usd)} | {_g(r.pull.gco2e)} |"
        for r in footprint.regions
    )
    t = footprint.totals()
    run, pull, saved = t["run"], t["pull"], t["avoided_transfer"]
    sources = sorted(
        {
            f"{name}: {f['source']}" + (f" ({f['year']})" if f.get("year") else "")
            for factors in footprint.factors.values()
            for name, f in factors.items()
        }
    )
    return (
        f"### Footprint ({kind})\n\n"
        "| region | CPU-s | util. | compute $ | compute kWh | compute gCO2e | bytes crossed "
        "| transfer $ | transfer gCO2e | pull bytes | pull $ | pull gCO2e |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
        f"{rows}\n\n"
        f"This run: **${_g(run['usd'])}, {_g(run['kwh'])} kWh, {_g(run['gco2e'])} gCO2e**; "
        f"pulling the data to {footprint.client_region} instead: {pull['bytes']:,} bytes, "
        f"${_g(pull['usd'])}, {_g(pull['kwh'])} kWh, {_g(pull['gco2e'])} gCO2e. Avoided "
        f"transfer: {saved['bytes']:,} bytes, ${_g(saved['usd'])}, {_g(saved['gco2e'])} "
        "gCO2e.\n\nFactors: " + "; ".join(sources) + "\n"
    )


def lines(summary: dict) -> list[str]:
    """The footprint of a summary (``Footprint.summary()`` or its error) as text lines."""
    if "error" in summary:
        return [f"footprint not stated: {summary['error']}"]
    if "served_from" in summary:
        return [f"footprint: none (served from run {summary['served_from']}: nothing computed)"]
    kind = "estimate" if summary["estimate"] else "measured"
    out = [f"footprint ({kind}):"]
    for r in summary["regions"]:
        c, t, p = r["compute"], r["transfer"], r["pull"]
        out.append(
            f"  {r['region']}: compute {_g(r['cpu_s'])} CPU-s ${_g(c['usd'])} {_g(c['kwh'])} kWh "
            f"{_g(c['gco2e'])} gCO2e; sent {t['bytes']:,} B ${_g(t['usd'])} {_g(t['gco2e'])} "
            f"gCO2e; a pull: {p['bytes']:,} B ${_g(p['usd'])} {_g(p['gco2e'])} gCO2e"
        )
    run, pull = summary["totals"]["run"], summary["totals"]["pull"]
    out.append(
        f"  this run ${_g(run['usd'])} {_g(run['kwh'])} kWh {_g(run['gco2e'])} gCO2e vs a pull "
        f"${_g(pull['usd'])} {_g(pull['kwh'])} kWh {_g(pull['gco2e'])} gCO2e"
    )
    return out
