"""The real server: `python -m app` on a free loopback port, asked, then stopped with SIGTERM."""

import json
import urllib.request
from pathlib import Path

import pytest

from tests.app.server import start_server, stop_server


@pytest.mark.server
def test_serves_then_exits_cleanly_on_sigterm(shipped: Path, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    server, base = start_server(shipped, log)
    try:
        request = urllib.request.Request(
            f"{base}/increment",
            data=b'{"number": "1999"}',
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            answer = json.loads(response.read())
        assert answer["output"] == "2000"
        assert answer["check"]["correct"] is True
    finally:
        code = stop_server(server)
    assert code == 0, log.read_text()
    text = log.read_text()
    assert "Application shutdown complete" in text
    assert "Traceback" not in text
