"""The Prometheus client against a real HTTP server that answers as a struggling Prometheus does: overloaded
(503) for a while, over a limit, refusing a bad query, with non-finite values."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fleetmeter.collectors.prometheus.api import AnswerTooLarge, PrometheusAPI, PrometheusRefused, PrometheusUnavailable


class Scripted(BaseHTTPRequestHandler):
    """Answers each GET with the next (status, body) of the server's script; the last one repeats."""

    def do_GET(self) -> None:
        script: list[tuple[int, object]] = self.server.script  # type: ignore[attr-defined]
        status, body = script.pop(0) if len(script) > 1 else script[0]
        self.server.paths.append(self.path)  # type: ignore[attr-defined]
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    httpd.script, httpd.paths = [], []  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()


def client(httpd: ThreadingHTTPServer, waits: list[float], retries: int = 4, max_answer_bytes: int = 1 << 20
           ) -> PrometheusAPI:
    return PrometheusAPI(f"http://127.0.0.1:{httpd.server_address[1]}", timeout_s=5, retries=retries,
                         max_answer_bytes=max_answer_bytes, sleep=waits.append)


OVERLOADED = (503, b"Service Unavailable")


def test_an_overloaded_server_is_asked_again_with_backoff_then_given_up(server: ThreadingHTTPServer) -> None:
    server.script[:] = [OVERLOADED, OVERLOADED, (200, {"status": "success", "data": ["n1", "n2"]})]
    waits: list[float] = []
    assert client(server, waits).label_values("Hostname", "up", 0, 60) == ["n1", "n2"]
    assert waits == [0.5, 1.0]
    assert server.paths[0].startswith("/api/v1/label/Hostname/values?match%5B%5D=up&start=0.000&end=60.000")
    server.script[:] = [OVERLOADED]
    with pytest.raises(PrometheusUnavailable, match="tried 3 times"):
        client(server, [], retries=2).label_values("Hostname", "up", 0, 60)


def test_limits_refusals_and_values_that_are_not_numbers(server: ThreadingHTTPServer) -> None:
    server.script[:] = [(422, {"status": "error", "errorType": "execution",
                               "error": "query processing would load too many samples into memory"})]
    with pytest.raises(AnswerTooLarge):
        client(server, []).query_range("x", 0, 60, 30)
    server.script[:] = [(503, {"status": "error", "errorType": "timeout", "error": "query timed out"})]
    with pytest.raises(AnswerTooLarge):  # asked again in parts, not again whole
        client(server, []).query_range("x", 0, 60, 30)
    server.script[:] = [(400, {"status": "error", "errorType": "bad_data", "error": "parse error at char 3"})]
    with pytest.raises(PrometheusRefused, match="bad_data: parse error"):
        client(server, []).query_range("x{", 0, 60, 30)
    matrix = {"resultType": "matrix", "result": [{"metric": {"gpu": "0"},
                                                  "values": [[0, "1"], [30, "NaN"], [60, "+Inf"], [90, "2.5"]]}]}
    server.script[:] = [(200, {"status": "success", "data": matrix})]
    [series] = client(server, []).query_range("x", 0, 90, 30)
    assert series.labels == {"gpu": "0"} and series.points == [(0.0, 1.0), (90.0, 2.5)]
    server.script[:] = [(200, {"status": "success", "data": matrix | {"pad": "x" * 5000}})]
    with pytest.raises(AnswerTooLarge):
        client(server, [], max_answer_bytes=4096).query_range("x", 0, 90, 30)
    server.script[:] = [(200, b"<html>not prometheus</html>")]
    with pytest.raises(PrometheusRefused, match="not a Prometheus answer"):
        client(server, []).query_range("x", 0, 90, 30)
