"""Loss modules, the deep-supervision hybrid loss (focal + SSIM + IoU) and ``build_loss``."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from abanet.errors import AbanetError
from abanet.losses.functional import (
    DEFAULT_EPS,
    SSIM_SIGMA,
    SSIM_WINDOW,
    bce_loss,
    dice_loss,
    float32_scope,
    focal_loss,
    iou_loss,
    ssim_loss,
)

#: The paper's hybrid loss (section 4.5): every component with weight 1.
PAPER_WEIGHTS: dict[str, float] = {"focal": 1.0, "ssim": 1.0, "iou": 1.0}
#: Named shorthands accepted by :func:`build_loss` besides ``a+b+c`` component lists.
PRESETS: dict[str, str] = {"hybrid": "focal+ssim+iou"}


class FocalLoss(nn.Module):
    """Binary focal loss on logits; ``alpha`` weights the positive class (see :func:`focal_loss`).

    Shape:
        - **logits** - (B, 1, H, W) logits.
        - **target** - (B, 1, H, W) in {0, 1}.
        - **output** - scalar (mean over all pixels).
    """

    def __init__(self, alpha: float = 0.3, gamma: float = 2.0) -> None:
        super().__init__()
        self.alpha, self.gamma = float(alpha), float(gamma)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return focal_loss(logits, target, alpha=self.alpha, gamma=self.gamma)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, gamma={self.gamma}"


class SSIMLoss(nn.Module):
    """``1 - SSIM(sigmoid(logits), target)`` per image, mean over the batch (see :func:`ssim_loss`).

    Shape:
        - **logits** - (B, 1, H, W) logits.
        - **target** - (B, 1, H, W) in {0, 1}.
        - **output** - scalar.
    """

    def __init__(self, window_size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> None:
        super().__init__()
        self.window_size, self.sigma = int(window_size), float(sigma)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ssim_loss(logits, target, window_size=self.window_size, sigma=self.sigma)


class IoULoss(nn.Module):
    """Soft IoU loss per image, mean over the batch; both empty => 0 (see :func:`iou_loss`).

    Shape:
        - **logits** - (B, 1, H, W) logits.
        - **target** - (B, 1, H, W) in {0, 1}.
        - **output** - scalar.
    """

    def __init__(self, eps: float = DEFAULT_EPS) -> None:
        super().__init__()
        self.eps = float(eps)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return iou_loss(logits, target, eps=self.eps)


class DiceLoss(nn.Module):
    """Soft Dice loss per image, mean over the batch; both empty => 0 (see :func:`dice_loss`).

    Shape:
        - **logits** - (B, 1, H, W) logits.
        - **target** - (B, 1, H, W) in {0, 1}.
        - **output** - scalar.
    """

    def __init__(self, eps: float = DEFAULT_EPS) -> None:
        super().__init__()
        self.eps = float(eps)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return dice_loss(logits, target, eps=self.eps)


class BCELoss(nn.Module):
    """Binary cross-entropy on logits, mean over pixels (see :func:`bce_loss`).

    Shape:
        - **logits** - (B, 1, H, W) logits.
        - **target** - (B, 1, H, W) in {0, 1}.
        - **output** - scalar.
    """

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return bce_loss(logits, target)


def _finite_nonneg(value: float, what: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise AbanetError(f"loss: {what} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0:
        raise AbanetError(f"loss: {what} must be a finite number >= 0, got {value!r}")
    return v


class HybridLoss(nn.Module):
    """Weighted sum of loss components over one or several (deep-supervision) outputs.

    ``loss = sum_n output_weights[n] * sum_c weights[c] * L_c(outputs[n], target)``, where each
    ``L_c`` is a per-image loss averaged over the batch. With the defaults this is the paper's
    hybrid loss (equations 1-5): focal (alpha 0.3 on the positive class, gamma 2) + SSIM + IoU,
    summed (not averaged) over the outputs.

    Args:
        weights: component name -> weight; names from :func:`list_losses`. Default
            ``{"focal": 1, "ssim": 1, "iou": 1}``.
        focal_alpha: focal weight of the positive class (the negative class gets ``1 - alpha``).
        focal_gamma: focal focusing exponent.
        output_weights: one weight per output (default 1 each); its length must match the number
            of outputs given to ``forward``.
        eps: smoothing of the IoU and Dice ratios.

    All outputs are computed in one vectorised pass: they are resized to the target's size when
    they differ (the LOGITS are upsampled bilinearly, ``align_corners=False``; the target is never
    resized), concatenated along the batch, and each component is evaluated once. Everything runs
    in float32 with autocast disabled, so the returned loss is float32 under bf16/fp16 autocast.

    After each forward, ``last_components`` holds detached float32 scalars for logging:
    ``<name>`` (the component on the main output, unweighted), ``<name>_sum`` (the component summed
    over outputs with the output weights), ``main`` (the weighted loss of the main output alone) and
    ``total`` (the returned value).

    Shape:
        - **outputs** - a (B, 1, H', W') logits tensor, or a list/tuple of them (main output
          first; ABANet gives 8). (B, H', W') is accepted too.
        - **target** - (B, 1, H, W) or (B, H, W), values in {0, 1} (bool/int are cast to float).
        - **output** - scalar float32 tensor.
    """

    def __init__(
        self,
        weights: Mapping[str, float] | None = None,
        focal_alpha: float = 0.3,
        focal_gamma: float = 2.0,
        output_weights: Sequence[float] | None = None,
        eps: float = DEFAULT_EPS,
    ) -> None:
        super().__init__()
        weights = dict(PAPER_WEIGHTS if weights is None else weights)
        if not weights:
            raise AbanetError(f"loss: no components given; allowed: {', '.join(list_losses())}")
        unknown = [n for n in weights if n not in _COMPONENTS]
        if unknown:
            raise AbanetError(
                f"loss: unknown component {unknown[0]!r}; allowed: {', '.join(list_losses())}"
            )
        self.weights = {n: _finite_nonneg(w, f"weight of {n!r}") for n, w in weights.items()}
        if not any(self.weights.values()):
            raise AbanetError("loss: every component weight is 0")
        self.focal_alpha = _finite_nonneg(focal_alpha, "focal_alpha")
        if self.focal_alpha > 1:
            raise AbanetError(f"loss: focal_alpha must lie in [0, 1], got {focal_alpha!r}")
        self.focal_gamma = _finite_nonneg(focal_gamma, "focal_gamma")
        self.eps = _finite_nonneg(eps, "eps")
        self.output_weights = (
            None
            if output_weights is None
            else [_finite_nonneg(w, "an output weight") for w in output_weights]
        )
        self.last_components: dict[str, torch.Tensor] = {}

    def extra_repr(self) -> str:
        return (
            f"weights={self.weights}, focal_alpha={self.focal_alpha}, "
            f"focal_gamma={self.focal_gamma}, output_weights={self.output_weights}"
        )

    def _component(self, name: str, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if name == "focal":
            return focal_loss(
                logits, target, alpha=self.focal_alpha, gamma=self.focal_gamma, reduction="none"
            )
        if name in ("iou", "dice"):
            return _COMPONENTS[name](logits, target, eps=self.eps, reduction="none")
        return _COMPONENTS[name](logits, target, reduction="none")

    def forward(
        self, outputs: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor
    ) -> torch.Tensor:
        outs = [outputs] if isinstance(outputs, torch.Tensor) else list(outputs)
        if not outs:
            raise AbanetError("loss: no outputs given")
        n = len(outs)
        if self.output_weights is not None and len(self.output_weights) != n:
            raise AbanetError(f"loss: {len(self.output_weights)} output weights for {n} outputs")
        ow_list = self.output_weights or [1.0] * n
        with float32_scope(target.device):
            target = target.unsqueeze(1) if target.dim() == 3 else target
            if target.dim() != 4:
                raise AbanetError(
                    f"loss: target must be (B, 1, H, W) or (B, H, W), got {tuple(target.shape)}"
                )
            target = target.float()
            b, c, h, w = target.shape
            resized = []
            for i, o in enumerate(outs):
                o = o.unsqueeze(1) if o.dim() == 3 else o
                if o.dim() != 4 or o.shape[:2] != (b, c):
                    raise AbanetError(
                        f"loss: output {i} has shape {tuple(o.shape)}, target {tuple(target.shape)}"
                    )
                o = o.float()
                if o.shape[-2:] != (h, w):
                    o = F.interpolate(o, size=(h, w), mode="bilinear", align_corners=False)
                resized.append(o)
            logits = resized[0] if n == 1 else torch.cat(resized, dim=0)
            tgt = target if n == 1 else target.repeat(n, 1, 1, 1)
            ow = torch.tensor(ow_list, dtype=torch.float32, device=logits.device)

            total = logits.new_zeros(())
            main = logits.new_zeros(())
            comps: dict[str, torch.Tensor] = {}
            for name, cw in self.weights.items():
                if cw == 0:
                    continue
                per_output = self._component(name, logits, tgt).view(n, b).mean(dim=1)  # (n,)
                summed = (ow * per_output).sum()
                total = total + cw * summed
                main = main + cw * per_output[0]
                comps[name] = per_output[0].detach()
                comps[f"{name}_sum"] = summed.detach()
            comps["main"] = main.detach()
            comps["total"] = total.detach()
            self.last_components = comps
            return total


_COMPONENTS: dict[str, Callable[..., torch.Tensor]] = {
    "bce": bce_loss,
    "dice": dice_loss,
    "focal": focal_loss,
    "iou": iou_loss,
    "ssim": ssim_loss,
}

_TERM = re.compile(r"^(?:(?P<w>\d+(?:\.\d*)?(?:e-?\d+)?|\.\d+)\s*\*\s*)?(?P<name>[a-z_]+)$")


def list_losses() -> list[str]:
    """Names of the loss components :func:`build_loss` and :class:`HybridLoss` accept."""
    return sorted(_COMPONENTS)


def parse_loss_spec(spec: str) -> dict[str, float]:
    """``"focal+ssim+iou"`` or ``"0.5*bce+dice"`` or ``"hybrid"`` -> ``{name: weight}``."""
    text = PRESETS.get(spec.strip().lower(), spec.strip().lower())
    allowed = ", ".join(list_losses())
    weights: dict[str, float] = {}
    for term in text.split("+"):
        m = _TERM.match(term.strip())
        if m is None:
            raise AbanetError(
                f"loss: cannot read term {term.strip()!r} of {spec!r}; write components joined "
                f"by '+', optionally weighted like '0.5*dice'; allowed: {allowed}"
            )
        name = m.group("name")
        if name not in _COMPONENTS:
            raise AbanetError(f"loss: unknown component {name!r} in {spec!r}; allowed: {allowed}")
        if name in weights:
            raise AbanetError(f"loss: component {name!r} is listed twice in {spec!r}")
        weights[name] = float(m.group("w")) if m.group("w") else 1.0
    return weights


def build_loss(spec: str | Mapping[str, float] | HybridLoss = "focal+ssim+iou", **kw) -> HybridLoss:
    """Build a :class:`HybridLoss` from text like ``"focal+ssim+iou"`` or a ``{name: weight}`` dict.

    Accepted texts: component names from :func:`list_losses` joined by ``+`` (``"focal"``,
    ``"iou"``, ``"focal+iou"``, ``"focal+ssim+iou"``, ``"bce+dice"``, ``"bce"``...), each optionally
    weighted (``"0.5*bce+dice"``), or the preset ``"hybrid"`` (= ``"focal+ssim+iou"``). Keyword
    arguments go to :class:`HybridLoss` (``focal_alpha``, ``focal_gamma``, ``output_weights``,
    ``eps``). Unknown names raise :class:`abanet.errors.AbanetError` listing the allowed ones.
    """
    if isinstance(spec, HybridLoss):
        if kw:
            raise AbanetError("loss: keyword arguments cannot be applied to a built HybridLoss")
        return spec
    if isinstance(spec, str):
        weights = parse_loss_spec(spec)
    elif isinstance(spec, Mapping):
        weights = {str(k).strip().lower(): v for k, v in spec.items()}
    else:
        raise AbanetError(f"loss: expected a text like 'focal+ssim+iou' or a dict, got {spec!r}")
    return HybridLoss(weights, **kw)
