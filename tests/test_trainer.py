"""BaseTrainer: history after every epoch, early stopping with best weights, clipping, plots, hooks."""

import json

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ml_core.trainer import BaseTrainer, TrainerConfig


class _Regression(BaseTrainer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.steps_seen = 0

    def compute_loss(self, batch):
        x, y = batch
        return nn.functional.mse_loss(self.model(x), y)

    def on_train_step(self):
        self.steps_seen += 1


def _data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [0.0]])
    return DataLoader(TensorDataset(x, y), batch_size=16)


def test_loss_falls_history_written_each_epoch_and_plots_saved(tmp_path):
    torch.manual_seed(0)
    trainer = _Regression(nn.Linear(4, 1), TrainerConfig(epochs=5, lr=0.05, scheduler="none"), tmp_path)
    seen_epochs = []
    original = trainer.save_history

    def spy():
        path = original()
        seen_epochs.append(len(json.loads(path.read_text())["epochs"]))
        return path

    trainer.save_history = spy
    history = trainer.fit(_data(), _data(seed=1))
    assert seen_epochs[:5] == [1, 2, 3, 4, 5]  # written after every epoch, not only at the end
    assert history.epochs[-1]["train_loss"] < history.epochs[0]["train_loss"]
    assert trainer.steps_seen == 5 * 4  # the hook ran once per training step, never in validation
    assert (tmp_path / "loss_curves.png").stat().st_size > 1000


def test_non_finite_loss_stops_training():
    class _Nan(_Regression):
        def compute_loss(self, batch):
            return super().compute_loss(batch) * float("nan")

    with pytest.raises(FloatingPointError, match="non-finite"):
        _Nan(nn.Linear(4, 1), TrainerConfig(epochs=1), None).fit(_data())


def test_early_stopping_restores_best_weights():
    torch.manual_seed(0)
    trainer = _Regression(nn.Linear(4, 1), TrainerConfig(epochs=40, lr=0.3, early_stopping_patience=3, scheduler="none"), None)
    history = trainer.fit(_data(), _data(seed=1))
    best = min(r["val_loss"] for r in history.epochs)
    assert history.best_value == pytest.approx(best)
    final_val = trainer._run_epoch(_data(seed=1), False, "check")["val_loss"]
    assert final_val == pytest.approx(best, rel=1e-5)  # the best epoch's weights are the ones kept


def test_gradient_clipping_bounds_the_update():
    model = nn.Linear(4, 1)
    before = model.weight.detach().clone()
    x = torch.full((8, 4), 1000.0)
    loader = DataLoader(TensorDataset(x, torch.zeros(8, 1)), batch_size=8)
    trainer = _Regression(model, TrainerConfig(epochs=1, lr=1.0, grad_clip_norm=1e-3, scheduler="none"), None)
    trainer.optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    trainer.fit(loader)
    step = (model.weight.detach() - before).norm()
    assert step <= 1e-3 + 1e-6


def test_early_stopping_on_a_monitored_metric_keeps_the_best_epoch():
    scripted = iter([0.1, 0.5, 0.3, 0.2, 0.9, 0.9])

    class _Scripted(_Regression):
        def validation_metrics(self, val_loader):
            return {"score": next(scripted)}

    torch.manual_seed(0)
    config = TrainerConfig(epochs=6, lr=0.05, early_stopping_patience=2, monitor="val_score", monitor_mode="max", scheduler="none")
    trainer = _Scripted(nn.Linear(4, 1), config, None)
    snapshots = []
    trainer.save_history = lambda: snapshots.append(trainer.model.weight.detach().clone())
    history = trainer.fit(_data(), _data(seed=1))
    assert history.stopped_early and len(history.epochs) == 4 and history.best_epoch == 2
    assert torch.equal(trainer.model.weight.detach(), snapshots[1])


def test_validate_initial_keeps_the_untrained_weights_when_training_only_hurts():
    """Epoch 0 (the starting weights) is a candidate: if no epoch beats it, it is what is kept."""
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    with torch.no_grad():  # start at the exact solution of the validation data
        model.weight.copy_(torch.tensor([[1.0, -2.0, 0.5, 0.0]]))
        model.bias.zero_()
    start = model.weight.detach().clone()
    x = torch.randn(64, 4)
    misleading = DataLoader(TensorDataset(x, -(x @ start.T)), batch_size=16)  # training pulls away
    config = TrainerConfig(epochs=3, lr=0.05, scheduler="none", early_stopping_patience=None, validate_initial=True)
    history = _Regression(model, config, None).fit(misleading, _data(seed=1))
    assert history.epochs[0]["epoch"] == 0 and "train_loss" not in history.epochs[0]
    assert history.best_epoch == 0
    torch.testing.assert_close(model.weight.detach(), start)  # training moved it; the start was restored
    without = _Regression(nn.Linear(4, 1), TrainerConfig(epochs=1, scheduler="none"), None).fit(_data(), _data(seed=1))
    assert [r["epoch"] for r in without.epochs] == [1]  # off by default
