"""abanet plot (training curves from run logs) and the experiment bar figure (Figure 7)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from PIL import Image

from abanet.errors import AbanetError
from abanet.plots.bars import bars_figure
from abanet.plots.curves import curves_figure, find_runs, read_run_logs, smooth
from tests.fixtures import ellipse_dataset
from tests.test_engine import tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")

HEADER = "epoch,lr-Adam,step,train/loss_epoch,train/loss_step,val/iou,val/loss\n"


def _run(folder: Path, versions: list[str], global_step: int | None) -> Path:
    for k, rows in enumerate(versions):
        d = folder / "csv" / f"version_{k}"
        d.mkdir(parents=True)
        (d / "metrics.csv").write_text(HEADER + rows)
    if global_step is not None:
        (folder / "result.json").write_text(json.dumps({"global_step": global_step}))
    return folder


def test_resumed_versions_join_and_revalidations_are_left_out(tmp_path: Path) -> None:
    # version 0 ran to step 4 (validated at 1 and 3) and was resumed from step 2; version 1
    # ends at step 4: its fit validated after the last step (logged at 3), then the best
    # checkpoint was validated again at step 4 (not a curve point)
    v0 = "0,,0,,1.0,,\n0,,1,,0.9,,\n0,,1,,,0.5,2.0\n1,,2,,0.8,,\n1,,3,,0.7,,\n1,,3,,,0.6,1.9\n"
    v1 = "1,,2,,0.75,,\n1,,3,,0.65,,\n1,,3,,,0.7,1.8\n2,,4,,,0.7,1.8\n"
    log = read_run_logs(_run(tmp_path / "r", [v0, v1], global_step=4))
    assert log.get("train/loss_step").x == [0, 1, 2, 3]
    assert log.get("train/loss_step").y == [1.0, 0.9, 0.75, 0.65]
    assert log.get("val/iou").x == [1, 3] and log.get("val/iou").y == [0.5, 0.7]
    assert log.best() == (3, 0.7)
    # stopped between validations: the final weights' validation (first at the last step) stays
    v = "0,,0,,1.0,,\n0,,1,,,0.4,2.0\n0,,2,,0.8,,\n1,,3,,,0.3,2.1\n1,,3,,,0.4,2.0\n"
    log = read_run_logs(_run(tmp_path / "s", [v], global_step=3))
    assert log.get("val/iou").x == [1, 3] and log.get("val/iou").y == [0.4, 0.3]
    by_epoch = read_run_logs(tmp_path / "s", x="epoch")
    assert by_epoch.get("val/iou").x == [0, 1]
    assert smooth([1.0, 0.0]).tolist() == pytest.approx([1.0, 0.6 * 0.4 / (0.6 * 0.4 + 0.4)])
    with pytest.raises(AbanetError, match="no training log"):
        read_run_logs(tmp_path)


def test_plot_a_tiny_run_and_an_experiment_folder(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from abanet.cli.main import app
    from abanet.engine.training import train

    data = ellipse_dataset(tmp_path / "d", n=8)
    run = tmp_path / "exp" / "0.3" / "trial0" / "train"
    cfg = tiny_config(data, run)
    cfg["trainer"] |= {"max_steps": 4, "val_every_n_steps": 2}
    train(cfg)
    r = CliRunner().invoke(app, ["plot", str(run)])
    assert r.exit_code == 0, r.output
    with Image.open(run / "curves.png") as im:
        assert im.size == (1400, 420)
    assert "0.3/trial0: 4 loss points" in r.output
    log = read_run_logs(run)
    assert len(log.get("val/iou").y) == 2  # after steps 2 and 4; the export's check left out
    fig = curves_figure([log])
    assert [ax.get_title() for ax in fig.axes] == ["loss", "validation", "learning rate"]
    legend = fig.axes[1].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == list(
        ("iou", "f1", "precision", "recall", "accuracy")
    )
    # an experiment folder: one curve per run
    shutil.copytree(tmp_path / "exp" / "0.3", tmp_path / "exp" / "0.9")
    out = tmp_path / "curves.png"
    r = CliRunner().invoke(app, ["plot", str(tmp_path / "exp"), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert [label for label, _ in find_runs(tmp_path / "exp")] == ["0.3/trial0", "0.9/trial0"]
    fig = curves_figure([read_run_logs(p, label) for label, p in find_runs(tmp_path / "exp")])
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["0.3/trial0", "0.9/trial0"]
    r = CliRunner().invoke(app, ["plot", str(tmp_path / "exp"), "-o", str(out)])
    assert r.exit_code == 2 and "file exists" in r.output
    r = CliRunner().invoke(app, ["plot", str(data)])
    assert r.exit_code == 2 and "no training run below it" in r.output


def test_bars_figure_heights_error_bars_and_legend() -> None:
    rows = [
        {"label": "0.3", "scores": {"iou": (0.9, 0.01), "f1": (0.95, math.nan)}},
        {"label": "0.9", "scores": {"iou": (0.8, math.nan), "f1": (0.9, math.nan)}},
    ]
    fig = bars_figure(rows, ["iou", "f1"], {"iou": "IoU", "f1": "F1"}, "Figure 7", "alpha")
    ax = fig.axes[0]
    heights = [round(p.get_height(), 6) for p in ax.patches]
    assert heights == [90.0, 95.0, 80.0, 90.0]
    legend = ax.get_legend()
    assert legend.get_title().get_text() == "alpha"
    assert [t.get_text() for t in legend.get_texts()] == ["0.3", "0.9"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["IoU (%)", "F1 (%)"]
    assert ax.get_ylim()[0] < 80 - 1 and ax.get_ylim()[1] > 95


def test_figure7_preset_draws_its_figure(tmp_path: Path) -> None:
    from abanet.engine.experiments import load_preset, run_experiment

    assert load_preset("figure7").figure == "bars"
    preset = tmp_path / "fig.yaml"
    preset.write_text(
        "title: alpha\nrow_header: alpha\ncolumns: [iou, f1]\nfigure: bars\n"
        "runs:\n  - label: '0.3'\n    set: {loss.focal_alpha: 0.3}\n"
        "  - label: '0.9'\n    set: {loss.focal_alpha: 0.9}\n"
    )
    data = ellipse_dataset(tmp_path / "d", n=10)
    res = run_experiment(str(preset), data, tmp_path / "exp", scale="smoke", log=lambda s: None)
    assert res.figure == tmp_path / "exp" / "fig.png"
    with Image.open(res.figure) as im:
        assert im.format == "PNG"
    preset.write_text(preset.read_text().replace("figure: bars", "figure: pie"))
    with pytest.raises(AbanetError, match="figure 'pie' is not one of bars"):
        load_preset(str(preset))
