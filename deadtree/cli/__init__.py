"""The `deadtree` command: thin adapters that parse options and call the pipeline, the trainers or the service."""
# imported in the order `deadtree --help` lists the commands
from deadtree.cli import mapping, models, evaluate, training, export, serve  # noqa: F401,E402,I001  (registers commands)
from deadtree.cli.apps import app, flow_command_help, train_app

flow_command_help(app, train_app)


def main() -> None:  # pragma: no cover - console entry
    app()


__all__ = ["app", "main"]
