"""The ``braintumor`` command line: thin commands over the library."""

from __future__ import annotations

import typer

from braintumor import __version__
from braintumor.cli.data import data_app
from braintumor.cli.demo import demo_command
from braintumor.cli.evaluate import evaluate_command
from braintumor.cli.explain import explain_command
from braintumor.cli.export import export_command
from braintumor.cli.models import models_app
from braintumor.cli.predict import predict_command
from braintumor.cli.serve import serve_command
from braintumor.cli.train import recipes_command, train_command
from braintumor.quiet import quiet_third_party

app = typer.Typer(
    help="Brain-tumour MRI: train, evaluate, explain, predict and serve models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")
app.command("train")(train_command)
app.command("recipes")(recipes_command)
app.command("demo")(demo_command)
app.command("evaluate")(evaluate_command)
app.command("predict")(predict_command)
app.command("explain")(explain_command)
app.command("export")(export_command)
app.command("serve")(serve_command)


def _version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True),
) -> None:
    """braintumor command line."""
    quiet_third_party()
