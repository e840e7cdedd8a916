"""The counter on Ray Serve: the same service (app.main.create_app: CounterService, its routes
and refusals) as a Serve deployment behind Serve's HTTP proxy, from one machine to many.

Each replica builds the FastAPI app itself (serve.ingress with a builder, so nothing of the app
is pickled), runs its lifespan (models loaded, re-proved, warmed up) and reads its COUNTER_*
settings from its environment (a runtime_env's env_vars). A replica takes one CPU and a node
holds at most one, as a worker of app.workers takes one core.

    pip install 'rnn-counter[ray]'                      # ray[serve], never in the serving image
    serve run --app-dir deploy/ray deploy/ray/serve.yaml # or, from Python: deploy(...) below

`app` is the application builder serve.yaml names (import_path counter_serve:app); `deploy`
starts Serve on a running cluster and deploys the counter with the options given.
"""

from typing import Any

from ray import serve
from ray.serve import Application

from app.main import create_app
from app.settings import Settings

APP_NAME = "counter"
DEPLOYMENT = "counter"
# The deployment's defaults; serve.yaml may override each.
OPTIONS: dict[str, Any] = {
    "num_replicas": 2,
    "ray_actor_options": {"num_cpus": 1},
    "max_replicas_per_node": 1,
    # A replica serves this many requests at once (its own event loop and worker thread, as one
    # process of app.workers); more wait in the proxy's queue.
    "max_ongoing_requests": 64,
    # Drain: a stopping replica finishes what it has, as app.http.server's drain does.
    "graceful_shutdown_wait_loop_s": 1.0,
    "graceful_shutdown_timeout_s": 11.0,
    "health_check_period_s": 2.0,
    "health_check_timeout_s": 10.0,
}


def build() -> Any:
    """The ASGI app, built in the replica: the same create_app `python -m app` serves."""
    return create_app(Settings())


@serve.ingress(build)
class _Replica:
    """A Serve replica of the counter: all of it is the ingress app; nothing else here."""


Counter = serve.deployment(name=DEPLOYMENT, **OPTIONS)(_Replica)


def app(args: dict[str, Any] | None = None) -> Application:
    """The application builder: deployment options from `args` (serve.yaml's, or a caller's)."""
    return Counter.options(**(args or {})).bind()


def deploy(
    http_port: int, http_host: str = "127.0.0.1", blocking: bool = False, **options: Any
) -> None:
    """Start Serve's proxy on http_host:http_port (once per cluster) and deploy the counter at
    the root route with these deployment options (the defaults above, else)."""
    serve.start(http_options={"host": http_host, "port": http_port}, proxy_location="HeadOnly")
    serve.run(app(options), name=APP_NAME, route_prefix="/", blocking=blocking)
