"""The procurement MILP on cases small enough to solve by hand, and infeasible ones explained."""

from __future__ import annotations

from fleetmeter.planning.procurement import Offer, Problem, solve

A = Offer("A", price=10, throughput=1, power_kw=1, lead=0, min_order=1, running_per_quarter=0)
B = Offer("B", price=15, throughput=2, power_kw=3, lead=0, min_order=1, running_per_quarter=0)


def problem(need: dict[int, float], offers: list[Offer], budget: float | None = None,
            site_power_kw: float | None = None, power_used: float = 0.0) -> Problem:
    quarters = [f"q{q + 1}" for q in range(max(need) + 1)]
    return Problem(["c"], quarters, {("c", q): units for q, units in need.items()},
                   {("c", q): power_used for q in need}, offers, budget,
                   {} if site_power_kw is None else {"c": site_power_kw})


def bought(solution: object) -> set[tuple[str, str, int]]:
    return {(p.model, p.quarter, p.devices) for p in solution.purchases}  # type: ignore[attr-defined]


def test_the_cheapest_mix() -> None:
    # 3 units: A+B = 25 beats 3 A (30) and 2 B (30); the second quarter needs nothing more
    solution = solve(problem({0: 3, 1: 3}, [A, B]))
    assert solution.feasible and solution.cost == 25 and bought(solution) == {("A", "q1", 1), ("B", "q1", 1)}


def test_minimum_orders_and_running_costs_change_the_answer() -> None:
    # B only in pairs: 2 B (30) against 3 A (30) ... with A running 1 a quarter over 2 quarters, B is cheaper
    pairs = Offer("B", 15, 2, 3, 0, 2, 0)
    running_a = Offer("A", 10, 1, 1, 0, 1, 1)
    solution = solve(problem({0: 3, 1: 3}, [running_a, pairs]))
    assert solution.feasible and bought(solution) == {("B", "q1", 2)} and solution.cost == 30
    # nothing short: nothing bought
    assert solve(problem({0: -2, 1: 0}, [A, B])).purchases == []


def test_lead_times_buy_earlier() -> None:
    late_a = Offer("A", 10, 1, 1, 1, 1, 0)
    solution = solve(problem({0: 0, 1: 2}, [late_a]))
    assert bought(solution) == {("A", "q1", 2)}  # ordered a quarter ahead


def test_infeasible_plans_name_the_constraint() -> None:
    budget = solve(problem({0: 5}, [A, B], budget=20))  # 5 units cost at least 40
    assert not budget.feasible and budget.binding == ["the budget per quarter"]
    power = solve(problem({0: 4}, [A, B], site_power_kw=10, power_used=8))  # 2 kW left: at most 2 A
    assert not power.feasible and power.binding == ["site power"]
    nothing = solve(problem({0: 1}, []))
    assert not nothing.feasible and "no model to buy" in nothing.message


def test_a_shortfall_no_order_can_reach_is_reported_and_the_rest_planned() -> None:
    late_a = Offer("A", 10, 1, 1, 1, 1, 0)  # a quarter from order to service
    solution = solve(problem({0: 1, 1: 3}, [late_a]))
    assert solution.feasible and solution.unreachable == {("c", "q1"): 1}
    assert bought(solution) == {("A", "q1", 3)}  # ordered in the first quarter for the second
    over = solve(problem({0: 0, 1: 0}, [A], site_power_kw=10, power_used=12))  # a site over its power, nothing short
    assert over.feasible and over.purchases == []
