"""Every command: a user's mistake is one ``error:`` line and exit 2, checked before any model
loads; failed inputs exit 1; Ctrl-C exits 130 with a summary line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from abanet.cli.main import app, main
from tests.fixtures import tiny_saved_model, write_rgb

runner = CliRunner()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    return str(tiny_saved_model(tmp_path_factory.mktemp("model") / "tiny"))


@pytest.fixture
def no_model_load(monkeypatch):
    """Loading a model fails the test: the command must refuse its options first."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the options were checked")

    monkeypatch.setattr("abanet.models.hub.load_model", refuse)


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def one_line_error(res, code: int = 2) -> str:
    assert res.exit_code == code, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    return lines[0]


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--backend", "nosuch", "--backend 'nosuch': choose one of eager"),
        ("--detector", "nosuch", "--detector 'nosuch': choose one of default"),
        ("--device", "cuda", "CUDA is not available"),
        ("--threshold", "5", "--threshold"),
    ],
)
def test_predict_bad_choice_is_one_line_before_the_model_loads(
    tmp_path, no_model_load, no_cuda, option, value, expected
) -> None:
    image = write_rgb(tmp_path / "x.jpg")
    res = runner.invoke(app, ["predict", str(image), "-o", str(tmp_path / "o"), option, value])
    assert expected in one_line_error(res)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("command", ["predict", "evaluate", "benchmark", "serve"])
def test_backend_help_lists_every_registered_backend(command) -> None:
    from abanet.inference.backends.registry import list_backends

    res = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.replace("│", " ").split())
    assert "winograd (cpu)" in text and "fp16 (cuda)" in text
    for name in list_backends():
        assert name in text


@pytest.mark.parametrize("command", ["predict", "evaluate", "benchmark", "serve"])
def test_unknown_backend_lists_the_registry(tmp_path, no_model_load, command) -> None:
    from abanet.inference.backends.registry import list_backends

    args = {
        "predict": ["predict", str(write_rgb(tmp_path / "x.jpg"))],
        "evaluate": ["evaluate", "-m", "x", "-d", str(tmp_path), "-o", str(tmp_path / "e")],
        "benchmark": ["benchmark"],
        "serve": ["serve"],
    }[command]
    line = one_line_error(runner.invoke(app, [*args, "--backend", "nosuch"]))
    assert line == f"error: --backend 'nosuch': choose one of {', '.join(list_backends())}"


def test_backend_on_a_device_it_does_not_run_on_before_the_model_loads(
    tmp_path, no_model_load
) -> None:
    image = write_rgb(tmp_path / "x.jpg")
    res = runner.invoke(app, ["predict", str(image), "--device", "cpu", "--backend", "fp16"])
    assert "backend fp16 runs on cuda only, not cpu" in one_line_error(res)


def test_predict_out_that_is_a_file_or_cannot_be_made(tmp_path, no_model_load) -> None:
    image = write_rgb(tmp_path / "x.jpg")
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    res = runner.invoke(app, ["predict", str(image), "-o", str(blocker)])
    assert "exists and is not a folder" in one_line_error(res)
    res = runner.invoke(app, ["predict", str(image), "-o", str(blocker / "sub")])
    assert "cannot be created" in one_line_error(res)


def test_serve_unknown_model_and_missing_cuda(tmp_path, no_cuda) -> None:
    res = runner.invoke(app, ["serve", "--model", "nosuch"])
    assert "nosuch: no such model" in one_line_error(res)
    res = runner.invoke(app, ["serve", "--device", "cuda"])
    assert "CUDA is not available" in one_line_error(res)


def test_evaluate_missing_cuda(tmp_path, model_dir, no_cuda) -> None:
    from tests.fixtures import ellipse_dataset

    data = ellipse_dataset(tmp_path / "d", n=2)
    args = ["evaluate", "-m", model_dir, "-d", str(data), "-o", str(tmp_path / "e")]
    res = runner.invoke(app, [*args, "--device", "cuda"])
    assert "CUDA is not available" in one_line_error(res)


def test_train_gpu_accelerator_without_gpu(tmp_path, no_cuda) -> None:
    res = runner.invoke(app, ["train", f"out={tmp_path / 'run'}", "trainer.accelerator=gpu"])
    assert "trainer.accelerator" in one_line_error(res)
    assert not (tmp_path / "run").exists()


def test_safetensors_beside_an_unrelated_config_json(tmp_path, model_dir) -> None:
    from abanet.errors import ModelError
    from abanet.models.hub import load_model

    weights = tmp_path / "w" / "model.safetensors"
    weights.parent.mkdir()
    weights.write_bytes((Path(model_dir) / "model.safetensors").read_bytes())
    (weights.parent / "config.json").write_text(json.dumps({"architectures": ["Bert"]}))
    assert load_model(weights).config.name == "abanet_lite"  # the header's config is used
    assert load_model(weights.parent).config.name == "abanet_lite"  # the folder too
    from safetensors.torch import load_file, save_file

    save_file(load_file(str(weights)), str(weights))  # no config in the header now
    with pytest.raises(ModelError, match="not an abanet model config"):
        load_model(weights)


def test_unknown_option_and_command_are_one_line(tmp_path) -> None:
    assert "No such option: --nosuch" in one_line_error(runner.invoke(app, ["predict", "--nosuch"]))
    assert "No such command" in one_line_error(runner.invoke(app, ["nosuch"]))


def test_synth_and_data_errors_exit_2(tmp_path) -> None:
    res = runner.invoke(app, ["data", "check", str(tmp_path / "nowhere")])
    one_line_error(res)
    faces = tmp_path / "faces"
    faces.mkdir()
    args = ["synth", "--faces", str(faces), "--out", str(tmp_path / "o"), "-n", "1"]
    one_line_error(runner.invoke(app, [*args, "--templates", str(tmp_path / "missing")]))


def test_main_returns_the_exit_code(tmp_path, capsys, no_model_load) -> None:
    assert main(["predict", str(tmp_path), "--backend", "nosuch"]) == 2
    assert capsys.readouterr().err.startswith("error: --backend 'nosuch'")
    assert main(["models", "--help"]) == 0


def test_interrupt_exits_130_with_a_summary_line(tmp_path, model_dir, monkeypatch) -> None:
    from abanet.inference.segmenter import Segmenter

    (tmp_path / "in").mkdir()
    for i in range(3):
        write_rgb(tmp_path / "in" / f"{i}.jpg", seed=i)

    def ctrl_c(self, crops, timer=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(Segmenter, "segment_crops", ctrl_c)
    args = ["predict", str(tmp_path / "in"), "-o", str(tmp_path / "o"), "--model", model_dir]
    res = runner.invoke(app, [*args, "--whole-image", "--backend", "eager", "-q"])
    assert res.exit_code == 130, res.output
    assert "0 written" in res.output and "interrupted" in res.output


def test_interrupt_of_any_command_exits_130(monkeypatch) -> None:
    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("abanet.models.summary.model_summaries", ctrl_c)
    res = runner.invoke(app, ["models"])
    assert res.exit_code == 130 and res.output.strip() == "interrupted"
