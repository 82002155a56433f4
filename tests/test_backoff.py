from fleetmeter.common.backoff import Backoff


def test_delays_double_from_the_first_up_to_the_most_and_start_over_after_a_success() -> None:
    backoff = Backoff(first_s=0.5, most_s=10.0)
    assert [backoff.failed() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert backoff.failing and not backoff.ready()
    backoff.recovered()
    assert not backoff.failing and backoff.ready() and backoff.failed() == 0.5


def test_thousands_of_failures_do_not_overflow() -> None:
    backoff = Backoff(first_s=1.0, most_s=60.0)
    assert {backoff.failed() for _ in range(5000)} >= {60.0}
