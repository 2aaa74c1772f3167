"""``braintumor serve``: the web app and JSON API for model folders (default: the zoo)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from braintumor.cli.errors import user_errors
from braintumor.errors import DataError
from braintumor.serve.limits import DEFAULT_MAX_CONCURRENT, DEFAULT_MAX_PIXELS, VOLUME_FACTOR


def reference_models() -> list[Path]:
    """``zoo:NAME`` of every shipped reference model (an error when none is installed)."""
    from braintumor.zoo import ZOO_PREFIX, zoo_entries

    refs = [Path(ZOO_PREFIX + name) for name in zoo_entries()]
    if not refs:
        raise DataError("no model given and no reference model is installed")
    return refs


def serve_command(
    model_dirs: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[NAME=]MODEL",
            help="Model folders (model.json + model.safetensors) or zoo:NAME; NAME=MODEL names "
            "one on the page (default: the name given at training, else the run folder's name); "
            "none: every reference model shipped with braintumor.",
        ),
    ] = None,
    host: Annotated[
        str, typer.Option("--host", help="Address to bind; 127.0.0.1 keeps it on this machine.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8000,
    max_upload_mb: Annotated[
        float, typer.Option("--max-upload-mb", min=0.1, help="Largest accepted upload.")
    ] = 20,
    max_pixels: Annotated[
        int,
        typer.Option(
            "--max-pixels",
            min=1,
            help="Largest image accepted, in pixels (read from the header before decoding); "
            f"volumes may hold {VOLUME_FACTOR}x as many voxels.",
        ),
    ] = DEFAULT_MAX_PIXELS,
    max_concurrent: Annotated[
        int,
        typer.Option("--max-concurrent", min=1, help="Requests decoded and inferred at once."),
    ] = DEFAULT_MAX_CONCURRENT,
) -> None:
    """Serve a page to upload scans and see probabilities, Grad-CAM and tumour outlines."""
    with user_errors():
        try:
            import uvicorn

            from braintumor.serve.app import create_app
        except ImportError as error:
            raise DataError(
                f"serve needs the serve extra ({error}); pip install 'braintumor[serve]'"
            ) from error
        if not model_dirs:
            model_dirs = reference_models()
            typer.echo("serving the reference models: " + ", ".join(map(str, model_dirs)))
        app = create_app(
            model_dirs,
            max_upload_mb=max_upload_mb,
            max_pixels=max_pixels,
            max_concurrent=max_concurrent,
        )
    if host not in ("127.0.0.1", "localhost", "::1"):
        typer.secho(
            f"warning: binding {host} exposes the app beyond this machine; it has no login",
            fg="yellow",
            err=True,
        )
    uvicorn.run(app, host=host, port=port, log_level="info")
