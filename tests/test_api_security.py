"""`sprig serve` on a non-loopback address needs an API key; CORS is off unless origins are configured."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from sprig.api.app import create_app
from sprig.api.cli import main
from sprig.core.config import SprigConfig

PREFLIGHT = {"Origin": "https://example.org", "Access-Control-Request-Method": "POST"}


def test_serve_refuses_a_public_address_without_an_api_key(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SPRIG_SERVER__API_KEY", raising=False)
    missing = str(tmp_path / "no-index")  # the refusal comes before the index is opened
    assert main(["serve", missing, "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "without an API key" in err
    assert main(["serve", missing, "--host", "0.0.0.0", "--api-key", "k"]) == 2  # past the check: the index is missing
    assert "without an API key" not in capsys.readouterr().err


@pytest.mark.parametrize("origins", [[], ["https://example.org"]])
def test_cors_only_when_configured(origins):
    app = create_app("unused", SprigConfig(server={"cors_origins": origins}))  # the lifespan (the index) is not entered
    client = TestClient(app)
    preflight = client.options("/search", headers=PREFLIGHT)
    page = client.get("/", headers={"Origin": "https://example.org"})
    assert page.status_code == 200 and "<label for=\"query\">" in page.text
    if origins:
        assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == "https://example.org"
        assert page.headers["access-control-allow-origin"] == "https://example.org"
    else:
        assert "access-control-allow-origin" not in preflight.headers and "access-control-allow-origin" not in page.headers
