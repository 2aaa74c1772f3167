"""Re-render the leave-one-source-out section of an installed reference model's card.

A new ``benchmarks/loso.py`` run changes what the card of ``zoo:NAME`` should say about unseen
sources, not the model: the section is replaced in the installed ``README.md`` (the rest of
the card, written when the model was built, stays as it is), and the card's SHA-256 in the
zoo index follows. The weights are not touched.
"""

from __future__ import annotations

import json
from pathlib import Path

from braintumor.atomic import write_text_atomic
from braintumor.errors import ModelFormatError
from braintumor.models.card import CARD_FILE
from braintumor.models.card_loso import loso_section, replace_loso_section
from braintumor.models.folder import read_model_info
from braintumor.zoo.build import read_spec_loso
from braintumor.zoo.registry import INDEX_FILE, ZOO_DIR, sha256_file, verify_entry, zoo_entry
from braintumor.zoo.specs import REFERENCE_MODELS


def recard_loso(name: str, loso_results: Path, zoo_dir: Path | None = None) -> Path:
    """Replace the leave-one-source-out section of ``zoo:NAME``'s card with the figures of
    ``loso_results``; update the card's SHA-256 in the index. Returns the card's path.

    Raises :class:`DataError` for a results file of another setting (or a model without
    one) and :class:`ModelFormatError` for a model that is not installed or damaged.
    """
    zoo_dir = zoo_dir or ZOO_DIR
    if name not in REFERENCE_MODELS:
        raise ModelFormatError(f"zoo:{name}: no such reference model spec")
    results = read_spec_loso(REFERENCE_MODELS[name], loso_results)
    folder = verify_entry(zoo_entry(name, zoo_dir))
    card = folder / CARD_FILE
    recipe = read_model_info(folder).recipe
    section = loso_section(results, recipe, loso_results.name)
    write_text_atomic(card, replace_loso_section(card.read_text(), section))
    index_path = zoo_dir / INDEX_FILE
    index = json.loads(index_path.read_text())
    index["models"][name]["files"][CARD_FILE] = sha256_file(card)
    write_text_atomic(index_path, json.dumps(index, indent=2) + "\n")
    return card
