"""`sprig serve IDX`: the HTTP API (FastAPI under uvicorn); OpenAPI docs at /docs."""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from sprig.api.commands.common import add_config_args, config_from_args, default
from sprig.api.commands.search_args import add_fusion_args, fusion_overrides
from sprig.core.config import ServerConfig
from sprig.core.errors import SprigError

if TYPE_CHECKING:
    import uvicorn

LOOPBACK = {"127.0.0.1", "::1", "localhost"}  # any other bind address is reachable by others: writes need a key


def register(subparsers) -> None:
    p = subparsers.add_parser("serve", help="serve an index over HTTP", description="POST /search, /documents, GET /health, /metrics; docs at /docs.")
    p.add_argument("index", metavar="IDX", help="index directory written by `sprig index`")
    p.add_argument("--host", help=f"bind address (default {default('server.host')})")
    p.add_argument("--port", type=int, help=f"port; 0 picks a free one (default {default('server.port')})")
    p.add_argument("--api-key", metavar="KEY", help="require header X-API-Key on write endpoints (or set SPRIG_SERVER__API_KEY)")
    p.add_argument("--torch-threads", type=int, metavar="N", help="torch threads per request (default: torch's own)")
    add_fusion_args(p)
    add_config_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from sprig.api.app import create_app
    from sprig.retriever.searcher import Searcher

    extra = {("server", "host"): args.host, ("server", "port"): args.port, ("server", "api_key"): args.api_key, **fusion_overrides(args)}
    config = config_from_args(args, extra)
    if config.server.api_key is None and config.server.host not in LOOPBACK:
        raise SprigError(f"refusing to serve on {config.server.host} without an API key for the write endpoints "
                         "(--api-key or SPRIG_SERVER__API_KEY; or bind to 127.0.0.1)")
    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
    searcher = Searcher(args.index, config, writable=True)  # opened before binding: a bad index fails fast, in one line
    server = uvicorn.Server(uvicorn_config(create_app(config=config, searcher=searcher), config.server))
    _announce(server, config.server.host)
    server.run()
    return 0


def uvicorn_config(app, server: ServerConfig) -> uvicorn.Config:
    """uvicorn's settings from ``server.*``: the one place they are passed on."""
    import uvicorn

    return uvicorn.Config(app, host=server.host, port=server.port, timeout_keep_alive=server.keep_alive_s, log_level="info")


def _announce(server, host: str) -> None:
    """Print the URL once uvicorn has bound (with --port 0 only then is the port known)."""
    startup = server.startup

    async def startup_and_print(sockets=None):
        await startup(sockets=sockets)
        for s in server.servers:
            for sock in s.sockets:
                port = sock.getsockname()[1]
                print(f"sprig: serving on http://{host}:{port} (API docs: http://{host}:{port}/docs)", flush=True)
                return

    server.startup = startup_and_print
