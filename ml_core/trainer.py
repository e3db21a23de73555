"""``BaseTrainer``: the one training loop every model of the project goes through.

It owns: a tqdm progress bar, a JSON history written after every epoch, early stopping on a
monitored validation figure (best weights restored), LR scheduling (plateau or cosine),
gradient clipping, and loss plots (linear, log scale, rolling mean) saved as PNG.

A trainer subclass implements :meth:`BaseTrainer.compute_loss`; trainers whose batches need
more than a loss override :meth:`BaseTrainer._forward_batch` and put per-batch figures in
``self._last_batch_metrics`` (averaged into the epoch record). :meth:`on_train_step` runs after
each *training* optimiser step only (temperature schedules advance there, never in validation).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from ml_core.progress import progress

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainerConfig:
    epochs: int = 20
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip_norm: float | None = 1.0
    scheduler: Literal["none", "plateau", "cosine"] = "plateau"
    early_stopping_patience: int | None = 5
    min_delta: float = 0.0
    monitor: str = "val_loss"
    monitor_mode: Literal["min", "max"] = "min"
    seed: int = 0
    rolling_window: int = 10
    validate_initial: bool = False  # score the untrained weights as "epoch 0" (they may stay best)
    device: str = "cpu"


@dataclass
class TrainingHistory:
    """Per-epoch records and per-step training losses."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    best_value: float | None = None
    stopped_early: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def move_to_device(batch: Any, device: torch.device | str) -> Any:
    """Move every tensor of a (nested) batch to ``device``; other values pass through."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, Mapping):
        return {k: move_to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(move_to_device(v, device) for v in batch)
    return batch


class BaseTrainer:
    """Owns the loop; subclasses implement ``compute_loss(batch) -> scalar tensor``."""

    def __init__(
        self,
        model: nn.Module,
        config: TrainerConfig,
        out_dir: Path | None = None,
        optimizer: torch.optim.Optimizer | None = None,
    ):
        self.model = model
        self.config = config
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.device = torch.device(config.device)
        self.optimizer = optimizer or torch.optim.AdamW(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.history = TrainingHistory()
        self._last_batch_metrics: dict[str, float] = {}
        self.global_step = 0

    # ---- hooks -------------------------------------------------------------------------
    def compute_loss(self, batch: Any) -> torch.Tensor:
        raise NotImplementedError

    def _forward_batch(self, batch: Any) -> torch.Tensor:
        """Loss of one batch; override for complex batches (and set ``_last_batch_metrics``)."""
        return self.compute_loss(batch)

    def on_train_step(self) -> None:
        """Called after every training optimiser step (never during validation)."""

    def validation_metrics(self, val_loader: Iterable[Any]) -> dict[str, float]:
        """Extra figures computed on the validation data at the end of each epoch."""
        return {}

    # ---- the loop ----------------------------------------------------------------------
    def _make_scheduler(self) -> Any:
        if self.config.scheduler == "plateau":
            mode = self.config.monitor_mode
            return torch.optim.lr_scheduler.ReduceLROnPlateau(self.optimizer, mode=mode, factor=0.5, patience=2)
        if self.config.scheduler == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=max(self.config.epochs, 1))
        return None

    def _run_epoch(self, loader: Iterable[Any], train: bool, desc: str) -> dict[str, float]:
        self.model.train(train)
        losses: list[float] = []
        sums: dict[str, float] = {}
        bar = progress(loader, desc=desc, leave=False)
        context = torch.enable_grad() if train else torch.no_grad()
        with context:
            for batch in bar:
                batch = move_to_device(batch, self.device)
                self._last_batch_metrics = {}
                loss = self._forward_batch(batch)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"{desc}: non-finite loss {loss.item()} at step {self.global_step}")
                if train:
                    self.optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if self.config.grad_clip_norm:
                        nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip_norm)
                    self.optimizer.step()
                    self.global_step += 1
                    self.history.step_losses.append(float(loss.item()))
                    self.on_train_step()
                losses.append(float(loss.item()))
                for key, value in self._last_batch_metrics.items():
                    sums[key] = sums.get(key, 0.0) + float(value)
                bar.set_postfix(loss=f"{losses[-1]:.4f}")
        prefix = "train" if train else "val"
        record = {f"{prefix}_loss": float(np.mean(losses)) if losses else math.nan}
        record.update({f"{prefix}_{k}": v / max(len(losses), 1) for k, v in sums.items()})
        return record

    def _validate(self, val_loader: Iterable[Any], epoch: int) -> dict[str, float]:
        """Validation loss plus ``validation_metrics`` (prefixed ``val_``) for this epoch."""
        record = self._run_epoch(val_loader, False, f"epoch {epoch} val")
        self.model.eval()
        with torch.no_grad():
            record.update({f"val_{k}": v for k, v in self.validation_metrics(val_loader).items()})
        return record

    def _improved(self, value: float) -> bool:
        best = self.history.best_value
        if best is None or math.isnan(best):
            return not math.isnan(value)
        if self.config.monitor_mode == "min":
            return value < best - self.config.min_delta
        return value > best + self.config.min_delta

    def fit(self, train_loader: Iterable[Any], val_loader: Iterable[Any] | None = None) -> TrainingHistory:
        """Train for ``config.epochs`` (or until early stopping); restores the best weights."""
        torch.manual_seed(self.config.seed)
        self.model.to(self.device)
        scheduler = self._make_scheduler()
        best_state: dict[str, torch.Tensor] | None = None
        stale = 0
        if self.config.validate_initial and val_loader is not None:
            record = {"epoch": 0, **self._validate(val_loader, 0)}
            self.history.epochs.append(record)
            if self._improved(record.get(self.config.monitor, math.nan)):
                self.history.best_value, self.history.best_epoch = float(record[self.config.monitor]), 0
                best_state = copy.deepcopy(self.model.state_dict())
        epochs = progress(range(1, self.config.epochs + 1), desc="epochs")
        for epoch in epochs:
            start = time.perf_counter()
            record: dict[str, float] = {"epoch": epoch, "lr": self.optimizer.param_groups[0]["lr"]}
            record.update(self._run_epoch(train_loader, True, f"epoch {epoch} train"))
            if val_loader is not None:
                record.update(self._validate(val_loader, epoch))
            record["seconds"] = time.perf_counter() - start
            self.history.epochs.append(record)
            monitored = record.get(self.config.monitor, record["train_loss"])
            if self._improved(monitored):
                self.history.best_value, self.history.best_epoch = float(monitored), epoch
                best_state = copy.deepcopy(self.model.state_dict())
                stale = 0
            else:
                stale += 1
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(monitored)
            elif scheduler is not None:
                scheduler.step()
            epochs.set_postfix({k: f"{v:.4f}" for k, v in record.items() if k.endswith("loss")})
            logger.info("epoch %d: %s", epoch, {k: round(v, 5) for k, v in record.items()})
            self.save_history()
            patience = self.config.early_stopping_patience
            if patience is not None and val_loader is not None and stale >= patience:
                self.history.stopped_early = True
                logger.info("early stopping at epoch %d (best epoch %s)", epoch, self.history.best_epoch)
                break
        if best_state is not None:
            self.model.load_state_dict(best_state)
        self.save_history()
        self.save_plots()
        return self.history

    # ---- outputs -----------------------------------------------------------------------
    def save_history(self) -> Path | None:
        if self.out_dir is None:
            return None
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / "history.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.history.to_dict(), indent=2))
        os.replace(tmp, path)
        return path

    def save_plots(self) -> Path | None:
        """Loss curves as one PNG with three panels: linear, log scale, rolling mean."""
        if self.out_dir is None or not self.history.epochs:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        curves = {  # epoch 0 (untrained weights, validate_initial) has a validation loss only
            key: ([r["epoch"] for r in self.history.epochs if key in r], [r[key] for r in self.history.epochs if key in r])
            for key in ("train_loss", "val_loss")
        }
        steps = np.asarray(self.history.step_losses, dtype=float)
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
        for ax, scale in zip(axes[:2], ("linear", "log"), strict=True):
            for key, (epochs, values) in curves.items():
                if epochs:
                    ax.plot(epochs, values, marker="o", label=key)
            ax.set_yscale(scale)
            ax.set_xlabel("epoch")
            ax.set_title(f"loss ({scale})")
            ax.legend()
        window = max(1, min(self.config.rolling_window, len(steps)))
        if len(steps):
            rolling = np.convolve(steps, np.ones(window) / window, mode="valid")
            axes[2].plot(np.arange(len(steps)), steps, alpha=0.3, label="step loss")
            axes[2].plot(np.arange(window - 1, len(steps)), rolling, label=f"rolling mean ({window})")
            axes[2].legend()
        axes[2].set_xlabel("training step")
        axes[2].set_title("training loss per step")
        fig.tight_layout()
        path = self.out_dir / "loss_curves.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        return path


# ---- weights on disk ------------------------------------------------------------------------


def state_dict_bytes(model: nn.Module) -> bytes:
    """A model's weights as safetensors bytes (what :func:`save_weights` writes; content hashes use it)."""
    from safetensors.torch import save

    return save({k: v.detach().contiguous() for k, v in model.state_dict().items()})


def save_weights(model: nn.Module, path: Any) -> None:
    """Write a model's weights as one safetensors file (``path``: a local path or any UPath)."""
    with path.open("wb") as handle:
        handle.write(state_dict_bytes(model))


def load_weights(model: nn.Module, path: Any) -> nn.Module:
    """Load a safetensors file written by :func:`save_weights` into ``model`` (strictly); eval mode."""
    from safetensors.torch import load

    with path.open("rb") as handle:
        model.load_state_dict(load(handle.read()))
    return model.eval()
