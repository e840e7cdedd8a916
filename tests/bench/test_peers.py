"""bench.peers and bench.peer_servers without servers: what is sent, how wrk is read, the report."""

import json
from pathlib import Path

import pytest

from bench import peer_servers, peers
from bench.perf_analyzer import pa_report

WRK_OUTPUT = """Running 3s test @ http://127.0.0.1:8123/v2/models/counter/infer
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     6.61ms    2.10ms  40.01ms   90.00%
    Req/Sec     2.31k   100.00     2.40k    70.00%
  Latency Distribution
     50%  650.00us
     75%    7.00ms
     90%    8.00ms
     99%    1.20s
  6900 requests in 3.00s, 4.20MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec:   2300.50
Transfer/sec:      1.40MB
"""


def test_the_request_is_the_raw_contract_of_1476233999() -> None:
    body = json.loads(peer_servers.BODY)
    (tensor,) = body["inputs"]
    assert tensor["name"] == "digits"
    assert tensor["datatype"] == "INT64"
    assert tensor["shape"] == [1, 11]
    # least significant first, plus the extra zero step
    assert tensor["data"] == [9, 9, 9, 3, 3, 2, 6, 7, 4, 1, 0]
    assert f"wrk.body = '{peer_servers.BODY}'" in peers.WRK_SCRIPT
    assert "'" not in peer_servers.BODY  # the Lua string is single-quoted


def test_the_reference_answer_has_the_v2_shape() -> None:
    assert peer_servers.expected().shape == (1, 11, 10)


def test_wrk_output_is_read_with_units_and_errors() -> None:
    run = peers.parse_wrk(WRK_OUTPUT)
    assert run.rps == pytest.approx(2300.5)
    assert run.p50_ms == pytest.approx(0.65)
    assert run.p99_ms == pytest.approx(1200.0)
    assert (run.non_2xx, run.socket_errors) == (7, 5)


def test_wrk_output_without_a_figure_is_refused() -> None:
    with pytest.raises(ValueError, match="Requests/sec"):
        peers.parse_wrk(WRK_OUTPUT.replace("Requests/sec:", "Req:"))


def _server(key: str, rps: float, p99: float) -> peer_servers.Server:
    server = peer_servers.Server(key, key, [], {}, 1, Path("."), versions=f"{key} 1.0")
    run = peer_servers.Run(rps, 1.0, p99, 0, 0)
    server.runs = {16: [run, run], 64: [run, run]}
    server.starts = [1.0, 2.0]
    server.rss_mb = 100.0
    return server


def test_the_report_gives_ratios_and_goals() -> None:
    servers = [
        _server("ours", 3000.0, 15.0),
        _server("mlserver", 1000.0, 50.0),
        _server("kserve", 1000.0, 60.0),
    ]
    args = peers.parse_args(["--connections", "16,64", "--rounds", "2"])
    text = peers.report(servers, args, "python -m bench.peers", "wrk 4.1.0")
    assert "Command: `python -m bench.peers`" in text
    assert "nproc" in text
    assert "| ours | 16 | 3000 (3000-3000) |" in text
    assert "| 16 | 3.00x | 3.00x | 15.00 |" in text
    assert "ours / mlserver: 3.00x (goal >= 3x): met" in text
    assert "ours / kserve: 3.00x (goal >= 4x): NOT met" in text
    assert "our p99: 15.00 ms (goal < 20 ms): met" in text
    assert "WARNING" not in text


def test_options_are_checked() -> None:
    with pytest.raises(SystemExit):
        peers.parse_args(["--servers", "ours,triton"])


def test_the_peer_runtimes_are_in_the_repository() -> None:
    assert (peer_servers.RUNTIMES / "mlserver_runtime.py").is_file()
    assert (peer_servers.RUNTIMES / "kserve_server.py").is_file()
    for name in ("mlserver", "kserve"):
        assert (peer_servers.RUNTIMES / f"{name}.txt").is_file()


def test_the_perf_analyzer_report_gives_throughput_and_cpu_ratios() -> None:
    servers = []
    for key, rps, cpu in (("ours", 3000.0, 200.0), ("mlserver", 1000.0, 900.0)):
        server = peer_servers.Server(key, key, [], {}, 1, Path("."))
        server.pa_runs = {
            (protocol, 16): [peer_servers.PaRun(rps, 1.0, 2.0, cpu)] * 3
            for protocol in ("http", "grpc")
        }
        servers.append(server)
    args = peers.parse_args(["--connections", "16", "--rounds", "3"])
    args.pa_version = "2.48.0"
    text = "\n".join(pa_report(servers, args))
    assert (
        "| ours | grpc | 16 | 3000 (3000-3000) | 1.00 (1.00-1.00) | 2.00 (2.00-2.00) | 200 ("
        in text
    )
    assert "| grpc | 16 | 3.00x | 4.50x |" in text
    assert "ours / mlserver: 3.00x the infer/s (goal >= 3x): met; 4.50x less CPU" in text
