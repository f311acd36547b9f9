"""Serving: an OpenAI-compatible HTTP server over a continuous-batching engine.

``Engine`` (engine.py) needs only the core package; the HTTP app (app.py) needs the ``serve``
extra (starlette, uvicorn): ``pip install 'gemma_native[serve]'``.
"""

from .engine import DrainingError, Engine, Event, QueueFullError, Request

__all__ = ["DrainingError", "Engine", "Event", "QueueFullError", "Request"]
