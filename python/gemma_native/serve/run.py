"""`gemma-native serve`: load a model, start the engine, serve the app with uvicorn.

SIGTERM / Ctrl-C drain: new requests get 503 at once, running ones finish (up to
``drain_timeout`` seconds, then they are cancelled), and the process exits 0.
"""

from __future__ import annotations

import logging
import signal
import sys

log = logging.getLogger("gemma_native.serve")


def _need_serve_extra():
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        from ..errors import GemmaNativeError

        raise GemmaNativeError(f"serving needs the 'serve' extra ({e.name} is missing): "
                               "pip install 'gemma_native[serve]'") from None


def serve(model, model_name: str, *, host: str = "127.0.0.1", port: int = 8000,
          api_key: str | None = None, max_batch: int = 8, max_queue: int = 64,
          prefill_chunk: int = 256, request_timeout: float | None = None,
          prefix_cache_mib: float = 0.0, drain_timeout: float = 30.0, limits=None,
          log_level: str = "info") -> int:
    """Serves ``model`` until SIGTERM / SIGINT; returns the exit status (0 after a drain)."""
    _need_serve_extra()
    import uvicorn

    from .app import Server
    from .engine import Engine

    engine = Engine(model, max_batch=max_batch, max_queue=max_queue,
                    prefill_chunk=prefill_chunk, request_timeout=request_timeout,
                    prefix_cache_mib=prefix_cache_mib)
    server = Server(engine, model_name, api_key=api_key, limits=limits)

    class _Uvicorn(uvicorn.Server):
        def handle_exit(self, sig, frame):
            # stop taking requests (503) before uvicorn stops accepting connections; the
            # streams already running end normally within the graceful-shutdown timeout
            engine.draining = True
            super().handle_exit(sig, frame)
            # uvicorn re-raises the signals it caught once it has shut down; SIGTERM is the
            # normal way to stop a server, so after the drain the process exits with 0
            captured = getattr(self, "_captured_signals", None)
            if sig == signal.SIGTERM and captured and captured[-1] == sig:
                captured.pop()

    config = uvicorn.Config(server.app, host=host, port=port, log_level=log_level,
                            timeout_graceful_shutdown=max(1, int(drain_timeout)),
                            access_log=log_level == "debug")
    srv = _Uvicorn(config)
    print(f"gemma-native: serving {model_name!r} on http://{host}:{port}/v1 "
          f"(max batch {max_batch}, queue {max_queue}; Ctrl-C or SIGTERM drains)",
          file=sys.stderr, flush=True)
    try:
        srv.run()
    finally:
        done = engine.drain(drain_timeout)
        engine.close()
        if not done:
            log.warning("drain timed out; running requests were cancelled")
    return 0
