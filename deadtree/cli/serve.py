"""The `serve` command."""
from __future__ import annotations

import typer

from deadtree.cli.apps import app, fail, log_to_stderr, train_app  # noqa: F401
from deadtree.errors import DeadtreeError  # noqa: F401


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host", envvar="DEADTREE_HOST",
                             help="Address to listen on; 0.0.0.0 for every interface (set an API key then)."),
    port: int = typer.Option(8000, "--port", envvar="DEADTREE_PORT", min=0, max=65535, help="Port to listen on."),
) -> None:
    """Run the REST service (needs: pip install 'deadtree\\[service]'). Other settings come from DEADTREE_*
    environment variables: see docs/service.md."""
    try:
        from service.server import serve as run_server
    except ImportError as exc:
        fail(f"the service needs its extra: pip install 'deadtree[service]' ({exc})")
    try:
        run_server(host, port)
    except DeadtreeError as exc:
        fail(str(exc))
