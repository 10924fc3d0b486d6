"""The backend interface: ``run(batch) -> probabilities`` over a model on a device."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from abanet.errors import AbanetError

if TYPE_CHECKING:
    from abanet.inference.backends.auto import AutoSelection


class Backend:
    """Runs a segmentation model: ``run(batch)`` -> probabilities ``(B, 1, H, W)`` float32."""

    name = "base"  # the registry names each backend it builds (registry.build_backend)
    reduced_precision = False

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        self.model = model.eval()
        self.device = device
        self.config = getattr(model, "config", None)
        # larger batches are run in chunks of this many images (None: all at once); small
        # chunks can be faster on CPUs whose caches do not hold a whole batch's activations
        self.max_batch: int | None = None
        self.selection: AutoSelection | None = None  # set when ``auto`` picked this backend

    def _check(self, batch: torch.Tensor) -> None:
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise AbanetError(f"expected a (B, 3, H, W) batch, got shape {tuple(batch.shape)}")
        check = getattr(self.model, "check_input", None)
        if check is not None:
            check(batch)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for ``x`` already on ``self.device`` as float32."""
        raise NotImplementedError

    def run(self, batch: torch.Tensor) -> torch.Tensor:
        """Probabilities in [0, 1], float32, shape ``(B, 1, H, W)``, on ``batch``'s device."""
        self._check(batch)
        with torch.inference_mode():
            x = batch.to(self.device, torch.float32)
            step = self.max_batch or x.shape[0]
            if step >= x.shape[0]:
                out = torch.sigmoid(self.logits(x).float())
            else:
                chunks = [x[i : i + step] for i in range(0, x.shape[0], step)]
                out = torch.cat([torch.sigmoid(self.logits(c).float()) for c in chunks])
            return out.to(batch.device)

    __call__ = run

    def describe(self) -> str:
        return f"{self.name} on {self.device}{self._chunk_note()}"

    def _chunk_note(self) -> str:
        return f", chunks of {self.max_batch}" if self.max_batch else ""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"
