"""What the end-to-end platform tests share: the daemon's configuration, a secret file,
the API token, API reads and the open group incidents.

``write_config`` writes a ``simwatch.toml`` with cycles every 60 s (or as given), the given warm-up,
optional customer groups from an inventory CSV, and the test's own source table(s).
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from servers import api_token, http_get, until

if TYPE_CHECKING:
    from pathlib import Path


def secret_file(tmp_path: Path, name: str, value: str) -> Path:
    """``value`` in a file only its owner reads (the way secrets reach simwatch)."""
    path = tmp_path / name
    path.write_text(value + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def inventory_file(tmp_path: Path, header: str, rows: list[str]) -> Path:
    path = tmp_path / "inventory.csv"
    path.write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def write_config(
    tmp_path: Path,
    port: int,
    source: str,
    *,
    warmup_s: float = 43200,
    eval_interval_s: float = 60,
    inventory: Path | None = None,
) -> Path:
    """The daemon's configuration; with ``inventory``, SIMs grouped by customer."""
    groups = "" if inventory is None else f'dims = ["customer"]\ninventory_file = "{inventory}"'
    config = tmp_path / "simwatch.toml"
    config.write_text(
        f"""
state_dir = "{tmp_path / "state"}"
[engine]
eval_interval_s = {eval_interval_s}
warmup_s = {warmup_s}
dead_letter_file = "{tmp_path / "dl.ndjson"}"
{groups}
[http]
port = {port}
{source}
""",
        encoding="utf-8",
    )
    return config


async def api(port: int, path: str, token: str) -> Any:
    status, body = await asyncio.to_thread(http_get, f"http://127.0.0.1:{port}{path}", 5.0, token)
    return orjson.loads(body) if status == 200 else None


async def ready_token(tmp_path: Path, log: Path) -> str:
    """The API token the daemon generates at its first start, once it is there."""
    state_dir = tmp_path / "state"
    await until((state_dir / "api-token").exists, 60, "the API token", log)
    return api_token(state_dir)


async def group_incidents(port: int, token: str) -> list[dict[str, Any]]:
    """The open group incidents ([] while the API does not answer)."""
    doc = await api(port, "/api/v1/incidents?state=open", token)
    items = [] if doc is None else doc["incidents"]
    return [i for i in items if i.get("kind") == "group"]


async def half_failed_incidents(port: int, token: str, sims: int) -> list[dict[str, Any]]:
    """The open group incidents, once a live cycle (not one of the history's catch-up,
    while records are still being applied) saw every SIM and half of them ``ok``, the
    other half late or silent (the shape of every platform's scenario); else []."""
    status = await api(port, "/api/v1/status", token)
    if status is None or status["sims"] != sims or status["evaluated_at"] is None:
        return []
    if datetime.fromisoformat(status["evaluated_at"]).timestamp() < time.time() - 120:
        return []
    states = status["states"]
    if states["ok"] != sims // 2 or states["late"] + states["silent"] != sims // 2:
        return []
    return await group_incidents(port, token)


async def assert_partner_scenario(
    port: int, token: str, incident_id: str, *, healthy: str, quota: str, outage: str
) -> None:
    """The emnify-shaped scenario's verdicts (emnify, 1NCE): a healthy SIM ``ok`` on
    26201, a SIM without quota diagnosed ``quota_exhausted`` on 26201, and a SIM on 26202
    in the group incident ``incident_id``."""
    ok = await api(port, f"/api/v1/sims/{healthy}", token)
    assert ok is not None
    assert ok["state"] == "ok", ok
    assert "ok" in [f["code"] for f in ok["diagnosis"]]
    assert ok["session"]["partner"] == "26201"
    assert ok["incident"] is None

    capped = await api(port, f"/api/v1/sims/{quota}", token)
    assert capped is not None
    assert capped["diagnosis"][0]["code"] == "quota_exhausted", capped["diagnosis"]
    assert "quota" in capped["diagnosis"][0]["hint"]
    assert capped["session"]["partner"] == "26201"
    assert capped["incident"] is None

    down = await api(port, f"/api/v1/sims/{outage}", token)
    assert down is not None
    assert down["session"]["partner"] == "26202"
    assert down["incident"] is not None
    assert down["incident"]["id"] == incident_id
    assert down["diagnosis"][0]["code"] == "group_incident"
