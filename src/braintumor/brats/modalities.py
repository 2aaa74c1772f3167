"""Fit a BraTS recipe's modalities to the data: train on the ones every case has.

As nnU-Net takes its input channels from the dataset, a recipe asking for four sequences
trains on the two a dataset has (with a note naming them); only a case that lacks a
sequence the other cases have is an error, since its channels could not line up.
"""

from __future__ import annotations

import dataclasses

from braintumor.config import Recipe
from braintumor.data.samples import Sample
from braintumor.errors import DataError
from braintumor.recipe_options import BratsOptions

#: Files a case may hold that are not an input sequence.
NOT_INPUTS = {"brainmask"}


def modalities_for_data(wanted: list[str], samples: list[Sample]) -> tuple[list[str], str]:
    """The modalities of ``wanted`` (in its order) that every case has, and a note when some
    of ``wanted`` are left out ('' when all are there)."""
    cases = [s for s in samples if s.modalities]
    if not cases:
        return list(wanted), ""
    present = [set(s.modalities) - NOT_INPUTS for s in cases]
    common = set.intersection(*present)
    for sample, have in zip(cases, present, strict=True):
        lacking = sorted(set(wanted) & (set.union(*present) - have))
        if lacking:
            others = sum(1 for p in present if set(lacking) <= p)
            raise DataError(
                f"{sample.image}: case {sample.id} has no {', '.join(lacking)} "
                f"(it has {', '.join(sorted(have)) or 'none'}; {others} other cases have it)"
            )
    chosen = [m for m in wanted if m in common]
    if not chosen:
        raise DataError(
            f"no case has any of the recipe's modalities {', '.join(wanted)} "
            f"(the cases have {', '.join(sorted(common)) or 'none'})"
        )
    if chosen == list(wanted):
        return chosen, ""
    missing = [m for m in wanted if m not in common]
    return chosen, (
        f"the data has no {', '.join(missing)}: training on {', '.join(chosen)} "
        f"({len(chosen)} of the recipe's {len(wanted)} modalities)"
    )


def fit_recipe_modalities(recipe: Recipe, samples: list[Sample]) -> tuple[Recipe, str]:
    """``recipe`` with ``extra.modalities`` narrowed to what the data has (BraTS tasks only),
    and the note to show (or '')."""
    if not isinstance(recipe.extra, BratsOptions):
        return recipe, ""
    wanted = list(recipe.extra.modalities)
    chosen, note = modalities_for_data(wanted, samples)
    if chosen == wanted:
        return recipe, ""
    extra = dataclasses.replace(recipe.extra, modalities=chosen)
    return dataclasses.replace(recipe, extra=extra, in_channels=len(chosen)), note
