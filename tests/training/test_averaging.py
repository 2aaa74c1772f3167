"""Weight averaging (``ema_epochs``): the horizon in epochs, the recipe check, and a real run
whose checkpoints and model folder carry the average and whose resume continues it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from lightning.pytorch.plugins.precision import Precision

from braintumor.config import load_recipe
from braintumor.data.synthetic import write_synthetic_dataset
from braintumor.errors import RecipeError
from braintumor.models.folder import load_model_dir
from braintumor.training.averaging import BN_SAMPLES, EmaOverEpochs, ema_decay
from braintumor.training.run import train_run


def test_decay_gives_the_horizon_in_epochs() -> None:
    assert ema_decay(2, 50) == pytest.approx(0.99)  # 1 / (1 - 0.99) = 100 steps = 2 epochs
    assert ema_decay(0.5, 400) == pytest.approx(0.995)
    assert ema_decay(1, 0) == 0.0  # an empty epoch: no averaging rather than a division by 0
    with pytest.raises(ValueError, match="positive"):
        ema_decay(0, 50)


@pytest.mark.parametrize("value", [0, -1, True, "two"])
def test_recipe_refuses_a_horizon_that_is_not_a_positive_number(value: object) -> None:
    with pytest.raises(RecipeError, match="ema_epochs"):
        load_recipe("fast-cpu-4class", [f"ema_epochs={value}"])


def _states(checkpoint: Path) -> tuple[dict, dict, dict]:
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    return saved["state_dict"], saved["current_model_state"], saved["averaging_state"]


@pytest.mark.slow
def test_checkpoints_and_model_carry_the_average_and_resume_continues_it(tmp_path) -> None:
    data = write_synthetic_dataset(tmp_path / "data", "classify", n=40, seed=3)
    run_dir = tmp_path / "run"
    fast = ["image_size=48", "max_minutes=null", "ema_epochs=1", "compile=false"]
    train_run(load_recipe("fast-cpu-4class", [*fast, "max_epochs=1"]), data, run_dir)
    averaged, current, state = _states(run_dir / "checkpoints" / "last.ckpt")
    steps_first = int(state["n_averaged"])
    assert steps_first > 1  # updated after every optimiser step
    weights = [k for k, v in averaged.items() if v.is_floating_point() and "running" not in k]
    differ = [k for k in weights if not torch.equal(averaged[k], current[k])]
    assert len(differ) > len(weights) // 2, "the checkpoint holds the last weights, not the average"

    result = train_run(
        load_recipe("fast-cpu-4class", [*fast, "max_epochs=2"]), data, run_dir, resume=True
    )
    _, _, state = _states(run_dir / "checkpoints" / "last.ckpt")
    assert int(state["n_averaged"]) == 2 * steps_first  # continued, not restarted

    best, _, _ = _states(run_dir / "checkpoints" / "best.ckpt")
    shipped = load_model_dir(result.model_dir).model.state_dict()
    for key, value in shipped.items():  # the model folder holds the best checkpoint's average
        assert torch.equal(value, best[f"model.{key}"]), key


class _Net(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4))

    def training_inputs(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return batch["image"].float() / 255.0


def test_batch_norm_statistics_are_those_of_the_averaged_weights_on_recent_batches() -> None:
    callback, net = EmaOverEpochs(2), _Net()
    generator = torch.Generator().manual_seed(0)
    batches = [
        {"image": torch.randint(0, 256, (16, 1, 12, 12), generator=generator, dtype=torch.uint8)}
        for _ in range(40)
    ]
    for batch in batches:
        callback._keep(batch)
    kept = len(callback._recent) * 16
    assert BN_SAMPLES <= kept < BN_SAMPLES + 16  # the most recent ones only
    trainer = SimpleNamespace(precision_plugin=Precision())
    net.eval()
    callback._reestimate_batch_norm(trainer, net)
    with torch.no_grad():
        features = net.model[0](torch.cat([net.training_inputs(b) for b in batches[-kept // 16 :]]))
    bn = net.model[1]
    assert torch.allclose(bn.running_mean, features.mean(dim=(0, 2, 3)), atol=1e-5)
    assert bn.momentum == 0.1 and not net.training  # put back as they were
