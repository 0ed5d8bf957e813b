"""The benchmark's reading of wrk and its exactly-once verdict (bench/wrk.py, bench/throughput.py).

wrk itself is not needed: these check what the benchmark makes of a report, not wrk.
"""

from __future__ import annotations

import pytest

from bench.report import command_line
from bench.throughput import ThroughputReport
from bench.wrk import REPORT_MARK, WrkFailed, lua_script, parse_report

REPORT = (
    f'{REPORT_MARK}{{"requests": 1200, "duration_us": 2000000, '
    '"statuses": {"200": 1150, "503": 40, "302": 10}, '
    '"socket_errors": 3, "p50_us": 1500, "p90_us": 4000, "p99_us": 12500, "max_us": 30000}\n'
)


def test_the_report_line_is_found_among_wrks_own_output() -> None:
    result = parse_report("Running 2s test @ http://127.0.0.1:1\n  1 threads and 8 connections\n" + REPORT)
    assert (result.requests, result.seconds, result.socket_errors) == (1200, 2.0, 3)
    assert (result.p50_ms, result.p99_ms, result.max_ms) == (1.5, 12.5, 30.0)


def test_only_answers_200_count_as_accepted_and_make_the_rate() -> None:
    result = parse_report(REPORT)
    assert (result.ok, result.rate) == (1150, 575.0)


def test_every_answer_outside_2xx_counts_as_non_2xx() -> None:
    assert parse_report(REPORT).not_2xx == 50


def test_output_without_a_report_fails_loudly() -> None:
    with pytest.raises(WrkFailed, match="no report"):
        parse_report("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_the_script_requests_every_path_with_a_key_unique_to_run_thread_and_request() -> None:
    script = lua_script(["/v1-webhooks/endpoint?key=a&projectId=1a5", "/other"], "c32-r1")
    assert 'local paths = {"/v1-webhooks/endpoint?key=a&projectId=1a5", "/other"}' in script
    assert 'local key = prefix .. "-" .. id .. "-" .. counter' in script
    assert 'local prefix = "c32-r1"' in script


def test_a_script_needs_a_path() -> None:
    with pytest.raises(ValueError, match="at least one path"):
        lua_script([], "x")


def consistent() -> ThroughputReport:
    return ThroughputReport(
        wrk_accepted=100, in_flight_allowance=8, store_accepted=104, folded=104, final_scale=105
    )


def test_exactly_once_holds_when_cattle_store_and_wrk_agree() -> None:
    assert consistent().exactly_once_problems() == []


def test_a_hit_applied_twice_fails_exactly_once() -> None:
    report = consistent()
    report.final_scale += 1
    assert report.exactly_once_problems() == ["Cattle's scale is 106, not 1 + 104 accepted hits"]


def test_an_accepted_hit_missing_from_the_store_fails_exactly_once() -> None:
    report = consistent()
    report.wrk_accepted = 105
    assert "the store holds 104 accepted hits" in report.exactly_once_problems()[0]


def test_more_hits_in_the_store_than_connections_in_flight_fails_exactly_once() -> None:
    report = consistent()
    report.in_flight_allowance = 3
    assert "at most 3 in flight" in report.exactly_once_problems()[0]


def test_an_accepted_hit_never_folded_fails_exactly_once() -> None:
    report = consistent()
    report.folded = 103
    assert report.exactly_once_problems() == ["103 intents folded for 104 accepted hits"]


def test_the_command_is_given_as_make_bench_with_its_flags() -> None:
    assert command_line([]) == "make bench"
    assert command_line(["--quick", "--json"]) == "make bench 'BENCH_FLAGS=--quick --json'"
