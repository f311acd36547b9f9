"""Scale-out on Ray Serve: the same routes, one engine per replica, behind Ray's HTTP proxy.

    gemma-native serve MODEL --ray --replicas 2 [--ray-address ADDR] [--min-replicas A
        --max-replicas B]

Each replica is a Ray actor that loads the model itself (so MODEL must be readable at the same
path on every node that may host a replica, or be ``random:PRESET``), runs its own Engine
(continuous batching within the replica) and answers the routes of app.py; Ray's proxy spreads
requests over the replicas.  Needs the ``ray`` extra: ``pip install 'gemma_native[ray]'``.
"""

from __future__ import annotations

import signal
import sys
import threading
import time


def _need_ray():
    try:
        import ray  # noqa: F401
        from ray import serve  # noqa: F401
    except ImportError as e:
        from ..errors import GemmaNativeError

        raise GemmaNativeError(f"--ray needs the 'ray' extra ({e.name} is missing): pip install "
                               "'gemma_native[ray]'") from None


class Replica:
    """What one Ray Serve replica runs: a model, an Engine and the HTTP handlers of app.py."""

    def __init__(self, model_spec: str, model_name: str, load_kw: dict, engine_kw: dict,
                 server_kw: dict):
        from ..random_model import model_from_spec
        from .app import Limits, Server
        from .engine import Engine

        model = model_from_spec(model_spec, **load_kw)
        self.engine = Engine(model, **engine_kw)
        limits = server_kw.pop("limits", None)
        self.server = Server(self.engine, model_name, limits=Limits(**limits) if limits else None,
                             **server_kw)
        s = self.server
        self.routes = {("GET", "/health"): s.health, ("GET", "/metrics"): s.metrics,
                       ("GET", "/v1/models"): s.models,
                       ("POST", "/v1/completions"): s.completions,
                       ("POST", "/v1/chat/completions"): s.chat_completions}

    async def __call__(self, request):
        from starlette.responses import JSONResponse

        handler = self.routes.get((request.method, request.url.path.rstrip("/") or "/"))
        if handler is None:
            return JSONResponse({"error": {"message": f"no route {request.method} "
                                                      f"{request.url.path}",
                                           "type": "invalid_request_error", "param": None,
                                           "code": None}}, status_code=404)
        return await handler(request)

    def check_health(self):
        """Ray Serve's replica health check: the engine's scheduler thread must be alive."""
        if not self.engine._thread.is_alive():
            raise RuntimeError("the engine's scheduler thread has stopped")


def deployment(*, replicas: int = 1, min_replicas: int | None = None,
               max_replicas: int | None = None, replica_cpus: float = 1.0):
    """The Ray Serve deployment of Replica: a fixed number of replicas, or autoscaling between
    min_replicas and max_replicas when both are given."""
    _need_ray()
    from ray import serve

    opts = {"ray_actor_options": {"num_cpus": replica_cpus},
            "health_check_period_s": 10, "graceful_shutdown_timeout_s": 30}
    if min_replicas is not None and max_replicas is not None:
        opts["autoscaling_config"] = {"min_replicas": min_replicas, "max_replicas": max_replicas,
                                      "initial_replicas": max(min_replicas, 1)}
    else:
        opts["num_replicas"] = replicas
    return serve.deployment(Replica, name="gemma_native").options(**opts)


def start(model_spec: str, model_name: str, *, host: str = "127.0.0.1", port: int = 8000,
          ray_address: str | None = None, replicas: int = 1, min_replicas: int | None = None,
          max_replicas: int | None = None, replica_cpus: float = 1.0, load_kw=None,
          engine_kw=None, server_kw=None, on_signal=None):
    """Starts (or joins, with ray_address) a Ray instance and runs the application; returns
    when every replica is up.  Stop it with stop().  on_signal: installed for SIGTERM and
    SIGINT right after ray.init (which installs a handler of its own), so that a signal while
    the replicas start is only noted, not raised in the middle of Ray's calls."""
    _need_ray()
    import ray
    from ray import serve

    if not ray.is_initialized():
        ray.init(address=ray_address, include_dashboard=False, log_to_driver=False,
                 ignore_reinit_error=True)
    if on_signal is not None:
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    serve.start(http_options={"host": host, "port": port})
    app = deployment(replicas=replicas, min_replicas=min_replicas, max_replicas=max_replicas,
                     replica_cpus=replica_cpus).bind(model_spec, model_name, dict(load_kw or {}),
                                                      dict(engine_kw or {}),
                                                      dict(server_kw or {}))
    serve.run(app, name="gemma_native", route_prefix="/", blocking=False)


def running_replicas() -> int:
    """How many replicas of the application are in the RUNNING state now."""
    from ray import serve

    app = serve.status().applications.get("gemma_native")
    if app is None:
        return 0
    return sum(d.replica_states.get("RUNNING", 0) for d in app.deployments.values())


def stop():
    """Deletes the application and shuts Ray Serve (and a Ray instance started here) down."""
    import ray
    from ray import serve

    try:
        serve.shutdown()
    finally:
        if ray.is_initialized():
            ray.shutdown()


def serve_forever(model_spec: str, model_name: str, **kw) -> int:
    """`gemma-native serve --ray`: start, then wait for SIGTERM / SIGINT, then stop (exit 0)."""
    stopping = threading.Event()

    def on_signal(sig, frame):
        stopping.set()

    host, port = kw.get("host", "127.0.0.1"), kw.get("port", 8000)
    try:
        start(model_spec, model_name, on_signal=on_signal, **kw)
        print(f"gemma-native: serving {model_name!r} on Ray Serve at http://{host}:{port}/v1 "
              f"({running_replicas()} replicas running; Ctrl-C or SIGTERM stops)",
              file=sys.stderr, flush=True)
        while not stopping.is_set():
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    except SystemExit as e:  # SIGTERM while Ray's handler was the one installed
        if e.code != signal.SIGTERM:
            raise
    # Shutting Ray down may deliver SIGTERM again; the stop was asked for, so it ends with 0.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        stop()
    except SystemExit as e:
        if e.code != signal.SIGTERM:
            raise
    return 0
