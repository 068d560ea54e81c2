"""API conformance: `schemathesis run` against the served /openapi.json with every check, every operation
(/answer and /v1/chat/completions included) and every phase: status codes and content types as documented,
responses matching their schemas, invalid input rejected, 405s with a complete Allow header. The server runs on a
copy of the tiny index with an API key, which the fuzzer sends, so writes are exercised and stay in the copy."""
from __future__ import annotations

import shutil
import subprocess
import sys

from tests.test_server import KEY, Server

MAX_NEW_TOKENS = "2"  # server.max_new_tokens: the OpenAPI document then allows no more, and answers stay short
MAX_EXAMPLES = 5  # per operation and phase: about 400 requests, ~100 of them answers


def test_openapi_conformance(tiny_index, tmp_path):
    index = tmp_path / "idx"
    shutil.copytree(tiny_index.index_dir, index)
    # The default body limit: a 257-passage POST /documents (one over maxItems) must meet the schema's 422, not a 413.
    # Answers are kept short: 2 passages unless a request asks for more, and at most MAX_NEW_TOKENS new tokens.
    server = Server(index, tmp_path / "server.log", SPRIG_SERVER__MAX_BODY_BYTES="1000000", SPRIG_COMPRESS__K="2",
                    SPRIG_GENERATOR__MAX_NEW_TOKENS=MAX_NEW_TOKENS, SPRIG_SERVER__MAX_NEW_TOKENS=MAX_NEW_TOKENS)
    try:
        run = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "run", server.url + "/openapi.json", "--checks", "all",
             "--max-examples", str(MAX_EXAMPLES), "--seed", "1", "-H", f"X-API-Key: {KEY}", "--request-timeout", "120",
             "--max-response-time", "60",  # an answer on 2 busy cores may take over the default 10 s
             "--no-color", "--report-dir", str(tmp_path / "report")],
            # In tmp_path: schemathesis keeps a cache of past failures (.schemathesis/) in its working folder.
            cwd=tmp_path,
            capture_output=True, text=True, timeout=600,
        )
    finally:
        server.stop()
    (tmp_path / "schemathesis.txt").write_text(run.stdout + run.stderr)  # the full report, every failure in it
    assert run.returncode == 0, f"{tmp_path / 'schemathesis.txt'}:\n" + run.stdout[-6000:] + run.stderr[-2000:]
