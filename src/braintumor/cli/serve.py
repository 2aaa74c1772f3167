"""``braintumor serve``: the web app and JSON API for one or more model folders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from braintumor.cli.errors import user_errors
from braintumor.errors import DataError
from braintumor.serve.limits import DEFAULT_MAX_CONCURRENT, DEFAULT_MAX_PIXELS, VOLUME_FACTOR


def serve_command(
    model_dirs: Annotated[
        list[Path], typer.Argument(help="Model folders (model.json + model.safetensors).")
    ],
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
