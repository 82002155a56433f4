"""The report's charts as inline SVG (matplotlib, no pyplot, no browser): a page that needs no network.

Each plotted series carries an SVG id (``gid``), so a test or a scraper can find it in the page.
"""

from __future__ import annotations

import io
from datetime import datetime

from matplotlib import rc_context
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, date2num
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

_SIZE = (9.0, 3.2)
_COLORS = {"present": "#9aa5b1", "allocated": "#3b82f6", "busy": "#16a34a", "idle": "#dc2626"}


def _svg(figure: Figure) -> str:
    figure.tight_layout()
    buffer = io.StringIO()
    with rc_context({"svg.fonttype": "none", "svg.hashsalt": "fleetmeter"}):  # text stays text; stable ids
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and doctype: the SVG sits inside HTML


def _time_axis(figure: Figure, x: list[float]) -> Figure:
    axes = figure.axes[0]
    locator = AutoDateLocator()  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    axes.grid(alpha=0.3)
    axes.spines[["top", "right"]].set_visible(False)
    if len(x) > 1:
        axes.set_xlim(x[0], x[-1])
    return figure


def _dates(times: list[datetime]) -> list[float]:
    return [float(date2num(moment)) for moment in times]  # type: ignore[no-untyped-call]


def utilization_over_time(times: list[datetime], utilization: list[float | None]) -> str:
    figure = Figure(figsize=_SIZE)
    axes = figure.add_subplot()
    x = _dates(times)
    axes.plot(x, [float("nan") if u is None else u for u in utilization], color=_COLORS["busy"],
              gid="fleet-utilization")
    axes.set_ylim(0, 1)
    axes.yaxis.set_major_formatter(PercentFormatter(1.0))
    axes.set_ylabel("utilization")
    return _svg(_time_axis(figure, x))


#: One layer of a chart over time: its values, color, legend label, SVG id, and whether it is a filled area.
_Layer = tuple[list[float], str, str, str, bool]


def _layers_over_time(times: list[datetime], layers: list[_Layer], ylabel: str) -> str:
    """Lines and filled areas over time, drawn in order from 0 up, the legend above."""
    figure = Figure(figsize=_SIZE)
    axes = figure.add_subplot()
    x = _dates(times)
    for values, color, label, gid, area in layers:
        if area:
            axes.fill_between(x, values, color=color, alpha=0.35, label=label, gid=gid)
        else:
            axes.plot(x, values, color=color, label=label, gid=gid)
    axes.set_ylim(bottom=0)
    axes.set_ylabel(ylabel)
    axes.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False, ncols=3)
    return _svg(_time_axis(figure, x))


def capacity_over_time(times: list[datetime], present: list[float], allocated: list[float], busy: list[float]) -> str:
    return _layers_over_time(times, [(present, _COLORS["present"], "present", "capacity-present", False),
                                     (allocated, _COLORS["allocated"], "allocated", "capacity-allocated", False),
                                     (busy, _COLORS["busy"], "busy", "capacity-busy", True)], "devices (mean)")


def usage_over_time(times: list[datetime], held: list[float], busy: list[float], wasted: list[float]) -> str:
    """Device-hours held per point, the busy part of them, and the wasted part (idle and busy but idle)."""
    return _layers_over_time(times, [(held, _COLORS["allocated"], "held", "usage-held", False),
                                     (busy, _COLORS["busy"], "busy", "usage-busy", True),
                                     (wasted, _COLORS["idle"], "wasted (idle, busy but idle)", "usage-wasted", False)],
                             "device-hours")


def waste_by_tenant(tenants: list[str], allocated_hours: list[float], busy_hours: list[float],
                    idle_hours: list[float]) -> str:
    """Each tenant's allocated device-hours split into busy (util x time), idle, and the partly used rest."""
    figure = Figure(figsize=(_SIZE[0], 0.9 + 0.45 * max(len(tenants), 1)))
    axes = figure.add_subplot()
    rest = [total - busy - idle for total, busy, idle in zip(allocated_hours, busy_hours, idle_hours, strict=True)]
    axes.barh(tenants, busy_hours, color=_COLORS["busy"], label="busy", gid="tenant-busy")
    axes.barh(tenants, rest, left=busy_hours, color=_COLORS["present"], label="partly used", gid="tenant-rest")
    axes.barh(tenants, idle_hours, left=[b + r for b, r in zip(busy_hours, rest, strict=True)],
              color=_COLORS["idle"], label="idle", gid="tenant-idle")
    axes.invert_yaxis()
    axes.set_xlabel("allocated device-hours")
    axes.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False, ncols=3)
    axes.spines[["top", "right"]].set_visible(False)
    return _svg(figure)


def utilization_histogram(device_hours: list[float]) -> str:
    figure = Figure(figsize=_SIZE)
    axes = figure.add_subplot()
    width = 1 / max(len(device_hours), 1)
    axes.bar([i * width for i in range(len(device_hours))], device_hours, width=width, align="edge",
             color=_COLORS["allocated"], edgecolor="white", gid="util-histogram")
    axes.set_xlim(0, 1)
    axes.xaxis.set_major_formatter(PercentFormatter(1.0))
    axes.set_xlabel("util_compute")
    axes.set_ylabel("device-hours")
    axes.spines[["top", "right"]].set_visible(False)
    return _svg(figure)


def demand_fan(pool: str, history: tuple[list[datetime], list[float]], forecast: dict[str, list[float]],
               forecast_days: list[datetime], supply: tuple[list[datetime], list[float]]) -> str:
    """A pool's daily peak devices, its forecast with 80 % and 95 % bands, and supply as a step line."""
    figure = Figure(figsize=_SIZE)
    axes = figure.add_subplot()
    x = _dates(forecast_days)
    axes.fill_between(x, forecast["lo_95"], forecast["hi_95"], color=_COLORS["allocated"], alpha=0.15,
                      label="95 %", gid=f"fan-95-{pool}")
    axes.fill_between(x, forecast["lo_80"], forecast["hi_80"], color=_COLORS["allocated"], alpha=0.3,
                      label="80 %", gid=f"fan-80-{pool}")
    axes.plot(x, forecast["mean"], color=_COLORS["allocated"], label="forecast", gid=f"fan-mean-{pool}")
    axes.plot(_dates(history[0]), history[1], color="#1f2933", label="peak devices", gid=f"fan-history-{pool}")
    if supply[0]:
        axes.step(_dates(supply[0]), supply[1], where="post", color=_COLORS["idle"], label="supply",
                  gid=f"fan-supply-{pool}")
    axes.set_ylim(bottom=0)
    axes.set_ylabel("devices")
    axes.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False, ncols=5)
    return _svg(_time_axis(figure, [*_dates(history[0]), *x]))
