"""``python -m braintumor``: the ``braintumor`` command, for environments without its script."""

from braintumor.cli.main import app

app()
