"""Structure measures from PySODMetrics (``py_sod_metrics``): F-beta, S-measure and E-measure.

The prediction is quantised the way a saved 8-bit map would be (``round(255 * prob)``), the ground
truth is boolean, and each image goes through PySODMetrics' own classes (``FmeasureV2`` with an
``FmeasureHandler`` for beta^2 = 0.3, ``Smeasure(alpha=0.5)``, ``Emeasure``).

``normalize=False`` (our default) hands PySODMetrics the quantised map ``u8 / 255`` as is.
``normalize=True`` hands it the uint8 map, and PySODMetrics then min-max stretches every map to
[0, 1] (MATLAB ``mapminmax``, what the classic SOD toolboxes do); that invents foreground on images
whose prediction is faint everywhere, so we do not do it unless asked. The two agree whenever the
8-bit map spans 0..255 (or is constant).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from abanet.errors import AbanetError
from abanet.metrics.binary import prepare

#: beta^2 of the F-measure (paper section 5.2; PySODMetrics calls beta^2 ``beta``).
FBETA_BETA2 = 0.3
#: S-measure balance between object and region terms.
SMEASURE_ALPHA = 0.5
STRUCTURE_KEYS = (
    "fbeta_adaptive",
    "fbeta_max",
    "smeasure",
    "emeasure_adaptive",
    "emeasure_mean",
    "emeasure_max",
)


def to_uint8(prob: np.ndarray) -> np.ndarray:
    """Probabilities in [0, 1] -> uint8 0..255 (``round(255 * prob)``, as a saved PNG would be)."""
    return np.rint(np.clip(np.asarray(prob, dtype=np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)


@dataclass
class StructureResult:
    """Structure measures of one image, with the 256-threshold curves needed to pool max values."""

    scores: dict[str, float]
    fbeta_curve: np.ndarray  # (256,) F-beta at thresholds 255..0
    emeasure_curve: np.ndarray  # (256,) E-measure at thresholds 255..0


def structure_one(pred_u8: np.ndarray, gt: np.ndarray, normalize: bool = False) -> StructureResult:
    """PySODMetrics' F-beta, S-measure and E-measure of one (H, W) uint8 map and boolean mask."""
    from py_sod_metrics import Emeasure, FmeasureHandler, FmeasureV2, Smeasure

    gt = np.asarray(gt, dtype=bool)
    if normalize:
        pred_in: np.ndarray = pred_u8
        gt_in = gt.astype(np.uint8) * 255
    else:
        pred_in = pred_u8.astype(np.float64) / 255.0
        gt_in = gt
    fm = FmeasureV2(
        {"fm": FmeasureHandler(with_dynamic=True, with_adaptive=True, beta=FBETA_BETA2)}
    )
    sm = Smeasure(alpha=SMEASURE_ALPHA)
    em = Emeasure()
    with warnings.catch_warnings():  # PySOD's divisions on empty masks are handled by PySOD
        warnings.simplefilter("ignore", RuntimeWarning)
        fm.step(pred_in, gt_in, normalize=normalize)
        sm.step(pred_in, gt_in, normalize=normalize)
        em.step(pred_in, gt_in, normalize=normalize)
    fres = fm.get_results()["fm"]
    eres = em.get_results()["em"]
    fcurve = np.asarray(fres["dynamic"], dtype=np.float64)
    ecurve = np.asarray(eres["curve"], dtype=np.float64)
    scores = {
        "fbeta_adaptive": float(fres["adaptive"]),
        "fbeta_max": float(fcurve.max()),
        "smeasure": float(sm.get_results()["sm"]),
        "emeasure_adaptive": float(eres["adp"]),
        "emeasure_mean": float(ecurve.mean()),
        "emeasure_max": float(ecurve.max()),
    }
    return StructureResult(scores, fcurve, ecurve)


def structure_scores(prob: Any, gt: Any, normalize: bool = False) -> dict[str, float]:
    """F-beta (beta^2 = 0.3; adaptive and max), S-measure (alpha = 0.5) and E-measure (adaptive,
    mean and max over thresholds) of ONE image, through PySODMetrics.

    Shape:
        - **prob** - (H, W), (1, H, W) or (1, 1, H, W) probabilities in [0, 1].
        - **gt** - same shape, boolean or values in [0, 1] (binarised at 0.5).
    """
    p, g = prepare(prob, gt)
    if p.shape[0] != 1:
        raise AbanetError(f"metrics: structure_scores takes one image, got {p.shape[0]}")
    return structure_one(to_uint8(p[0].cpu().numpy()), g[0].cpu().numpy(), normalize).scores
