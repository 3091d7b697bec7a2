"""The JavaScript client (reverb/web/reverb-client.js) under Node's test runner, against a real
`reverb serve` process: the files in tests/js run with the server's URL in REVERB_URL."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.server import base_env, reverb_process, server_env
from tests.node import run_node

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
JS_TESTS = sorted(str(p) for p in (ROOT / "tests" / "js").glob("*.test.mjs"))
# Bounded: the files take about 30 s here; a hang must not eat CI's time.
TIMEOUT_S = 240
# The shortest access token the server allows, so a test sees one expire and be renewed.
ACCESS_TOKEN_TTL_S = "10"


def test_the_javascript_client_against_a_real_server(tmp_path: Path, database_url: str) -> None:
    assert JS_TESTS, "no tests/js/*.test.mjs"
    env = server_env(database_url, access_token_ttl_seconds=ACCESS_TOKEN_TTL_S)
    with reverb_process(tmp_path, env) as server:
        done = run_node(
            ["--test", "--test-reporter=spec", *JS_TESTS],
            cwd=ROOT,
            env={
                **base_env(),
                "REVERB_URL": server.url,
                "REVERB_ACCESS_TOKEN_TTL_S": ACCESS_TOKEN_TTL_S,
            },
            timeout=TIMEOUT_S,
        )
        out = done.stdout + done.stderr
        assert done.returncode == 0, out + "\n--- server log ---\n" + server.log_path.read_text()
    # The spec reporter's summary: every test ran, none skipped or left as todo (a test that
    # cannot run fails instead).
    counts = dict(re.findall(r"^\S (tests|pass|fail|skipped|todo|cancelled) (\d+)$", out, re.M))
    assert counts.get("fail") == "0" and int(counts.get("pass", 0)) > 0, out
    assert counts["pass"] == counts["tests"], out
