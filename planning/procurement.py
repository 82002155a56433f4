"""What to buy: the least-cost purchases per cluster, model and quarter that keep supply above forecast demand,
as a mixed-integer linear program solved by HiGHS (SciPy's ``milp``).

Demand and supply are in compute units: a device of a model is worth its ``throughput``. In each quarter and
cluster, the units of the devices present (the capacity plan's supply, with the procurement plan already
decided) plus those bought early enough to be in service (``lead_time_quarters``) must cover the pool's
demand at the plan's quantile, plus the target headroom. Constraints: a budget per quarter (all clusters),
the power of each site (devices present and bought, at ``power_kw`` each), and minimum order sizes (an order
of a model in a quarter is zero or at least ``min_order`` devices). The cost of a device is its purchase price
plus its running cost (hosting, support, energy at full power x PUE) for the quarters of the plan it serves.

An infeasible problem is solved again with each kind of constraint relaxed in turn; the answer names those
whose relaxation alone makes it feasible.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field, replace

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from fleetmeter.sql.settings import AnalysisSettings, Economics

HOURS_PER_QUARTER = 8766 / 4


@dataclass(frozen=True)
class Offer:
    """A model that can be bought, and what one device of it costs and gives."""

    model: str
    price: float
    throughput: float
    power_kw: float
    lead: int  # quarters from order to service
    min_order: int
    running_per_quarter: float


@dataclass(frozen=True)
class Problem:
    clusters: list[str]
    quarters: list[str]
    need: dict[tuple[str, int], float]  # compute units to add beyond what is present, per cluster and quarter
    power_used: dict[tuple[str, int], float]  # kW the devices present draw, per cluster and quarter
    offers: list[Offer]
    budget_per_quarter: float | None
    site_power_kw: dict[str, float]


@dataclass
class Purchase:
    cluster: str
    model: str
    quarter: str
    devices: int
    cost: float


@dataclass
class Solution:
    feasible: bool
    purchases: list[Purchase] = field(default_factory=list)
    cost: float = 0.0
    binding: list[str] = field(default_factory=list)  # an infeasible plan: the constraints that make it so
    message: str = ""
    #: compute units short in quarters no order can reach (before the shortest lead time): bought for later
    unreachable: dict[tuple[str, str], float] = field(default_factory=dict)


def economics_of(model: str, settings: AnalysisSettings) -> Economics | None:
    """The most specific economics entry whose pattern matches ``model`` (as the views choose)."""
    matching = [entry for entry in settings.economics if fnmatch.fnmatchcase(model, entry.model)]
    return max(matching, key=lambda entry: len(entry.model), default=None)


def energy_price(model: str, settings: AnalysisSettings) -> float:
    """The TCO's energy price: ``per_kwh``, else the model's price's (as the views take it), else none."""
    if settings.per_kwh is not None:
        return settings.per_kwh
    priced = [price for price in settings.prices
              if price.per_kwh is not None and fnmatch.fnmatchcase(model, price.model)]
    return (max(priced, key=lambda price: len(price.model)).per_kwh or 0.0) if priced else 0.0


def offers(settings: AnalysisSettings) -> list[Offer]:
    """The models that may be bought: economics entries with a purchase price (and among the candidates)."""
    return [Offer(entry.model, entry.purchase_price, entry.throughput, entry.power_kw, entry.lead_time_quarters,
                  entry.min_order, (entry.hosting_per_year + entry.support_per_year) / 4
                  + entry.power_kw * energy_price(entry.model, settings) * settings.pue * HOURS_PER_QUARTER)
            for entry in settings.economics
            if entry.purchase_price is not None and "*" not in entry.model and "?" not in entry.model
            and (not settings.procurement.candidates or entry.model in settings.procurement.candidates)]


def solve(problem: Problem) -> Solution:
    """The least-cost purchases. A shortfall in a quarter that no order can reach in time is reported, not
    planned for (it would make every plan infeasible); the quarters after it are planned."""
    soonest = min((offer.lead for offer in problem.offers), default=0)
    unreachable = {(cluster, problem.quarters[q]): need for (cluster, q), need in problem.need.items()
                   if q < soonest and need > 1e-9}
    if unreachable:
        problem = replace(problem, need={key: 0.0 if key[1] < soonest else need
                                         for key, need in problem.need.items()})
    solution = _solve_explained(problem)
    solution.unreachable = unreachable
    return solution


def _solve_explained(problem: Problem) -> Solution:
    solution = _solve(problem)
    if solution.feasible or not problem.offers:
        return solution
    relaxed = {"the budget per quarter": replace(problem, budget_per_quarter=None),
               "site power": replace(problem, site_power_kw={}),
               "lead times": replace(problem, offers=[replace(o, lead=0) for o in problem.offers]),
               "minimum order sizes": replace(problem, offers=[replace(o, min_order=1) for o in problem.offers])}
    solution.binding = [name for name, easier in relaxed.items() if _solve(easier).feasible]
    solution.message = ("infeasible; feasible without " + " or without ".join(solution.binding) if solution.binding
                        else "infeasible, and no single kind of constraint relaxed makes it feasible")
    return solution


def _solve(problem: Problem) -> Solution:
    clusters, quarters, offers_ = problem.clusters, problem.quarters, problem.offers
    if not offers_ or not quarters:
        short = any(need > 1e-9 for need in problem.need.values())
        return Solution(not short, message="no model to buy (economics with a purchase price)" if short else "")
    n_q = len(quarters)
    index = {(c, m, q): i for i, (c, m, q) in enumerate(
        (c, m, q) for c in range(len(clusters)) for m in range(len(offers_)) for q in range(n_q))}
    n = len(index)
    most = max(1, math.ceil(max([0.0, *problem.need.values()]) / min(o.throughput for o in offers_))
               + max(o.min_order for o in offers_))
    costs = np.zeros(2 * n)
    rows: list[tuple[np.ndarray, float, float]] = []  # (coefficients, lower, upper)
    for (_, m, q), i in index.items():
        offer = offers_[m]
        costs[i] = offer.price + offer.running_per_quarter * max(0, n_q - q - offer.lead)
        order = np.zeros(2 * n)  # minimum order: x >= min * y, x <= most * y
        order[i], order[n + i] = 1.0, -offer.min_order
        rows.append((order, 0.0, np.inf))
        order = np.zeros(2 * n)
        order[i], order[n + i] = 1.0, -most
        rows.append((order, -np.inf, 0.0))
    for c, cluster in enumerate(clusters):
        for q in range(n_q):
            in_service = [(index[c, m, bought], offer) for m, offer in enumerate(offers_)
                          for bought in range(q - offer.lead + 1)]
            cover = np.zeros(2 * n)
            for i, offer in in_service:
                cover[i] = offer.throughput
            rows.append((cover, problem.need.get((cluster, q), 0.0), np.inf))
            if cluster in problem.site_power_kw:
                power = np.zeros(2 * n)
                for i, offer in in_service:
                    power[i] = offer.power_kw
                left = problem.site_power_kw[cluster] - problem.power_used.get((cluster, q), 0.0)
                rows.append((power, -np.inf, max(0.0, left)))  # a site already over its power: nothing more
    if problem.budget_per_quarter is not None:
        for q in range(n_q):
            spend = np.zeros(2 * n)
            for (_, m, bought), i in index.items():
                spend[i] = offers_[m].price if bought == q else 0.0
            rows.append((spend, -np.inf, problem.budget_per_quarter))
    matrix = np.array([row for row, _, _ in rows])
    result = milp(costs, integrality=np.ones(2 * n),
                  bounds=Bounds(np.zeros(2 * n), np.concatenate([np.full(n, most), np.ones(n)])),
                  constraints=LinearConstraint(matrix, [low for _, low, _ in rows], [high for _, _, high in rows]),
                  options={"time_limit": 120})
    if result.x is None:
        return Solution(False, message=result.message)
    purchases = [Purchase(clusters[c], offers_[m].model, quarters[q], devices, devices * offers_[m].price)
                 for (c, m, q), i in index.items() if (devices := round(result.x[i])) > 0]
    return Solution(True, purchases, float(result.fun), message=result.message)


def problem_from(plan: list[dict[str, object]], settings: AnalysisSettings) -> Problem:
    """The procurement problem of a capacity plan's rows (those with a quarter): its first quarters."""
    quarters = sorted({str(row["quarter"]) for row in plan if row["quarter"]})[:settings.procurement.quarters]
    clusters = sorted({str(row["cluster"]) for row in plan})
    need: dict[tuple[str, int], float] = {}
    power: dict[tuple[str, int], float] = {}
    headroom = 1 + settings.capacity.target_headroom
    for row in plan:
        entry = economics_of(str(row["model"]), settings) or Economics(model=str(row["model"]))
        supply = float(row["supply_devices"] or 0.0)  # type: ignore[arg-type]
        if row["demand_devices"] is None:  # a pool without a forecast: its devices draw power all the same
            for q in range(len(quarters)):
                power[str(row["cluster"]), q] = power.get((str(row["cluster"]), q), 0.0) + supply * entry.power_kw
            continue
        if row["quarter"] not in quarters:
            continue
        key = (str(row["cluster"]), quarters.index(str(row["quarter"])))
        demand = float(row["demand_devices"])  # type: ignore[arg-type]
        need[key] = need.get(key, 0.0) + (demand * headroom - supply) * entry.throughput
        power[key] = power.get(key, 0.0) + supply * entry.power_kw
    return Problem(clusters, quarters, need, power, offers(settings), settings.procurement.budget_per_quarter,
                   settings.procurement.site_power_kw)
