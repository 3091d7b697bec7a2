"""The benchmark harness at smoke sizes: every scenario against real server processes (the raw
reference and Reverb, with Redis for two and for four processes), so the harness keeps
working. The figures themselves are not checked: benchmarks are not tests. What is checked is
that each scenario did its work completely (every message acknowledged and delivered, every
replay complete)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

Smoke = dict[str, Any]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def smoke(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Smoke:
    out = tmp_path_factory.mktemp("bench")
    db = request.config.getoption("--db")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--smoke",
            "--db",
            db,
            "--out",
            str(out),
            "--report",
            str(out / "report.md"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    [json_file] = out.glob("*.json")
    doc: Smoke = json.loads(json_file.read_text())
    doc["report"] = (out / "report.md").read_text()
    doc["plot"] = out / "report-latency.png"
    doc["db"] = db
    return doc


def test_no_scenario_failed(smoke: dict) -> None:  # type: ignore[type-arg]
    # A failing scenario is recorded and the run goes on (a full run keeps its other figures).
    assert "failed" not in smoke["results"], smoke["results"].get("failed")
    assert "did not complete" not in smoke["report"]


def test_send_acknowledges_and_delivers(smoke: dict) -> None:  # type: ignore[type-arg]
    for key in ("raw", f"reverb-{smoke['db']}"):
        send = smoke["results"][key]["send"]
        assert send["messages"] > 0 and send["errors"] == 0
        # In a direct chat both members get each message.
        assert send["deliveries"] >= send["messages"]
        assert send["server_cpu_s"] >= 0


def test_fanout_and_latency_reach_every_member(smoke: dict) -> None:  # type: ignore[type-arg]
    for key in ("raw", f"reverb-{smoke['db']}"):
        results = smoke["results"][key]
        assert results["fanout"]["deliveries"] > 0
        assert results["fanout"]["closed_during_run"] == 0
        for level in results["latency"]["levels"]:
            assert level["received"] == level["expected"] > 0


def test_connections_are_held(smoke: dict) -> None:  # type: ignore[type-arg]
    for key in ("raw", f"reverb-{smoke['db']}"):
        c = smoke["results"][key]["connections"]
        assert c["held"] == c["answered_ping"] == c["requested"]


def test_history_and_resume_are_complete(smoke: dict) -> None:  # type: ignore[type-arg]
    ours = smoke["results"][f"reverb-{smoke['db']}"]
    for chat in ours["history"]["chats"].values():
        assert chat["pages"] > 0 and chat["failures"] == 0
    assert ours["resume"]["incomplete"] == 0
    for level in ("without_markers", "with_markers"):
        m = ours["markers"][level]
        assert m["received"] == m["messages"] * ours["markers"]["members"] > 0
    assert ours["resume"]["ms"]["max"] is not None


def test_two_processes_deliver_across(smoke: dict) -> None:  # type: ignore[type-arg]
    two = smoke["results"]["two-process"]
    level = two["levels"][0]
    assert level["received"] == level["expected"] > 0
    assert two["same_process_p50_ms"] is not None and two["other_process_p50_ms"] is not None


def test_sends_across_two_processes_are_acknowledged_and_delivered(smoke: dict) -> None:  # type: ignore[type-arg]
    two = smoke["results"]["send-two"]
    assert two["messages"] > 0 and two["errors"] == 0
    # Both members of each direct chat get each message, the other one through Redis from the
    # other process (a client's last message may still be on its way when the window closes).
    assert two["deliveries"] >= 2 * (two["messages"] - two["clients"]) > 0
    assert "| send, two processes + Redis" in smoke["report"]


def test_redis_hang_delivers_everything_once(smoke: dict) -> None:  # type: ignore[type-arg]
    hang = smoke["results"]["redis-hang"]
    assert hang["sent"] == hang["acked"] == hang["complete"] > 0
    assert hang["sent_during_pause"] > 0 and hang["ack_during_pause_ms"]["max"] is not None
    assert hang["duplicates"] == 0


def test_shards_deliver_every_phase(smoke: dict) -> None:  # type: ignore[type-arg]
    shards = smoke["results"]["shards"]
    assert shards["groups"] == 4
    for phase in ("idle", "one", "all"):
        assert shards[phase]["complete"] is True
        assert set(shards[phase]["cpu_s"]) == {
            "reverb-1",
            "reverb-2",
            "reverb-3",
            "reverb-4",
            "watcher",
        }
    assert "shards:" in smoke["report"]


def test_deliveries_go_on_during_a_slow_search(smoke: dict) -> None:  # type: ignore[type-arg]
    slow = smoke["results"][f"reverb-{smoke['db']}"]["slow-search"]
    during = slow["during_search"]
    assert during["received"] == during["expected"] > 0
    assert slow["searches_done"] > 0


def test_image_uploads_get_clear_answers_within_the_memory_bound(smoke: dict) -> None:  # type: ignore[type-arg]
    up = smoke["results"]["image-uploads"]
    assert up["uploads"] == 8 and sum(up["statuses"].values()) == 8
    assert up["every_answer_clear"] and up["server_up_after"]
    assert 0 < up["peak_rss_rise_mib"] <= up["rss_rise_limit_mib"] == 300
    assert "uploads at once" in smoke["report"]


def test_report_and_plot_are_written(smoke: dict) -> None:  # type: ignore[type-arg]
    assert "| send (" in smoke["report"] and "bench:end" in smoke["report"]
    assert smoke["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
