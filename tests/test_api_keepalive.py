"""The server keeps idle connections open longer than clients do (issue 22: ReadErrors when both timers were 5 s)."""
from __future__ import annotations

import httpx

from sprig.api.commands.serve import uvicorn_config
from sprig.core.config import ServerConfig, SprigConfig
from sprig.eval.bench.api import client_keepalive_s


def test_keep_alive_reaches_uvicorn():
    assert uvicorn_config(object(), ServerConfig(keep_alive_s=42)).timeout_keep_alive == 42


def test_server_outlives_the_clients_idle_connections():
    server = ServerConfig().keep_alive_s
    assert httpx.Limits().keepalive_expiry < server  # httpx's default pool
    assert client_keepalive_s() < server  # the load benchmark's


def test_benchmark_client_follows_the_environment(monkeypatch):
    monkeypatch.setenv("SPRIG_SERVER__KEEP_ALIVE_S", "4")
    assert SprigConfig().server.keep_alive_s == 4 and client_keepalive_s() < 4
