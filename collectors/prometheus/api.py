"""Prometheus's HTTP API, as far as a history import needs it: ``/api/v1/label/<name>/values`` and
``/api/v1/query_range``.

Failures fall in three kinds, each with its own handling by the caller: the server is away or overloaded
(retried here with backoff, then :class:`PrometheusUnavailable`), the answer would break one of the server's
limits (:class:`AnswerTooLarge`: the caller asks for less), and the server refuses the question
(:class:`PrometheusRefused`: a bad selector, no such endpoint).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from fleetmeter.common.backoff import Backoff

#: Words of Prometheus's error texts that mean "ask for less" (max points per series, max samples loaded).
_LIMIT_ERRORS = ("exceeded maximum resolution", "too many samples", "maximum number of series")
_RETRIED_STATUS = frozenset({429, 502, 503, 504})


class PrometheusUnavailable(Exception):
    """Prometheus could not be reached, or kept failing, after every retry."""


class PrometheusRefused(Exception):
    """Prometheus answered that the question is wrong (the message is its own error text)."""


class AnswerTooLarge(Exception):
    """The answer would exceed one of Prometheus's limits, or this client's answer size bound."""


Labels = dict[str, str]


@dataclass(frozen=True)
class Series:
    """One series of a range query: its labels and its points (epoch seconds, value; non-finite values left out)."""

    labels: Labels
    points: list[tuple[float, float]]


class PrometheusAPI:
    def __init__(self, url: str, *, timeout_s: float, retries: int, max_answer_bytes: int,
                 headers: dict[str, str] | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        self.url = url.rstrip("/")
        self.retries = retries
        self.max_answer_bytes = max_answer_bytes
        self._client = httpx.Client(timeout=timeout_s, headers=headers or {})
        self._sleep = sleep
        self.requests = 0
        self.retried = 0

    def close(self) -> None:
        self._client.close()

    def major_version(self) -> int:
        """Prometheus's major version (/api/v1/status/buildinfo); 2 where it does not say."""
        try:
            data = self._get("/api/v1/status/buildinfo", {})
            return int(str(data.get("version", "2")).split(".")[0]) if isinstance(data, dict) else 2
        except (PrometheusRefused, ValueError):
            return 2

    def label_values(self, label: str, match: str, start: float, end: float) -> list[str]:
        """The values of ``label`` on the series ``match`` selects between ``start`` and ``end`` (epoch seconds)."""
        data = self._get(f"/api/v1/label/{quote(label, safe='')}/values",
                         {"match[]": match, "start": _seconds(start), "end": _seconds(end)})
        if not isinstance(data, list):
            raise PrometheusRefused(f"label values answered {type(data).__name__}, not a list")
        return [str(value) for value in data]

    def query_range(self, query: str, start: float, end: float, step_s: float) -> list[Series]:
        data = self._get("/api/v1/query_range", {"query": query, "start": _seconds(start), "end": _seconds(end),
                                                 "step": _seconds(step_s)})
        if not isinstance(data, dict) or data.get("resultType") != "matrix" or not isinstance(data.get("result"), list):
            raise PrometheusRefused("query_range answered something other than a matrix")
        return [Series(_labels(item.get("metric")), _points(item.get("values"))) for item in data["result"]]

    def _get(self, path: str, params: dict[str, str]) -> Any:
        backoff = Backoff(first_s=0.5, most_s=30.0)
        while True:
            self.requests += 1
            try:
                return self._answer(path, params)
            except httpx.ReadTimeout as exc:  # a query too heavy to answer in time: asked in parts, not again
                raise AnswerTooLarge(f"no answer within {self._client.timeout.read} s") from exc
            except (httpx.TransportError, _Overloaded) as exc:
                if backoff.failures >= self.retries:
                    raise PrometheusUnavailable(f"{self.url}{path}: {exc} (tried {backoff.failures + 1} times)"
                                                ) from exc
                self.retried += 1
                self._sleep(backoff.failed())

    def _answer(self, path: str, params: dict[str, str]) -> Any:
        with self._client.stream("GET", f"{self.url}{path}", params=params) as response:
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > self.max_answer_bytes:
                    raise AnswerTooLarge(f"an answer over {self.max_answer_bytes:,} bytes "
                                         "(prometheus.max_answer_bytes)")
        try:
            answer = json.loads(body)
        except ValueError as exc:
            if response.status_code >= 500:
                raise _Overloaded(f"HTTP {response.status_code}") from exc
            raise PrometheusRefused(f"{path}: HTTP {response.status_code}, not a Prometheus answer") from exc
        if not isinstance(answer, dict):
            raise PrometheusRefused(f"{path}: HTTP {response.status_code}, not a Prometheus answer")
        if answer.get("status") == "success":
            return answer.get("data")
        error = str(answer.get("error", ""))[:500]
        if any(words in error for words in _LIMIT_ERRORS) or answer.get("errorType") == "timeout":
            raise AnswerTooLarge(error)  # the same question would fail the same way: ask for less
        if response.status_code in _RETRIED_STATUS:
            raise _Overloaded(f"HTTP {response.status_code}: {error}")
        if response.status_code >= 500 and answer.get("errorType") not in ("bad_data", "execution"):
            raise _Overloaded(f"HTTP {response.status_code}: {error}")
        raise PrometheusRefused(f"{path}: {answer.get('errorType', 'error')}: {error}")


class _Overloaded(Exception):
    """A failure worth retrying: the server is restarting or shedding load."""


def _seconds(value: float) -> str:
    return f"{value:.3f}"


def _labels(item: object) -> Labels:
    if not isinstance(item, dict):
        raise PrometheusRefused("a series without labels")
    return {str(key): str(value) for key, value in item.items()}


def _points(values: object) -> list[tuple[float, float]]:
    """The finite points of a series (Prometheus writes values as strings: "NaN" and "+Inf" are left out)."""
    if not isinstance(values, list):
        raise PrometheusRefused("a series without values")
    points = []
    for pair in values:
        try:
            t, value = float(pair[0]), float(pair[1])
        except (TypeError, ValueError, IndexError, KeyError) as exc:
            raise PrometheusRefused(f"a point that is not [time, value]: {str(pair)[:80]}") from exc
        if math.isfinite(t) and math.isfinite(value):
            points.append((t, value))
    return points
