"""``python -m braintumor.cli``."""

from braintumor.cli.main import app

app()
