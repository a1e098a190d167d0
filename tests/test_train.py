"""groupconv.training.train and `groupconv train`: the loss falls on real data, seeds reproduce, checkpoints reload."""

import json
import math

import pytest
import torch

from groupconv import GroupConvError
from groupconv.cli import main
from groupconv.training.data import ImageSet, load
from groupconv.training.data.fashion_mnist import DEFAULT_DIR
from groupconv.training.train import TrainConfig, evaluate, load_checkpoint, train

pytestmark = pytest.mark.skipif(not DEFAULT_DIR.is_dir(), reason="needs dataset-fashion-mnist (make data)")
SMALL = dict(train_subset=256, test_subset=200, batch_size=32)


def test_the_training_loss_falls_on_a_small_real_subset():
    config = TrainConfig(groups=2, epochs=3, lr=2e-3, train_subset=384, test_subset=200, batch_size=16)
    result = train(config, progress=False)
    losses = [epoch.train_loss for epoch in result.history]
    assert losses[0] < math.log(10) + 0.1  # the first epoch starts near chance: ln(10) for 10 classes
    assert losses[-1] < 0.9 * losses[0]
    assert result.history[-1].val_error < 0.75  # chance is 0.9


def test_the_same_seed_gives_the_same_run_and_another_seed_does_not():
    config = TrainConfig(groups=2, epochs=1, train_subset=96, test_subset=100, batch_size=32)
    first, again = train(config, progress=False), train(config, progress=False)
    other = train(TrainConfig(**{**config.__dict__, "seed": 1}), progress=False)
    assert [e.train_loss for e in first.history] == [e.train_loss for e in again.history]
    for (name, value), twin in zip(first.model.state_dict().items(), again.model.state_dict().values()):
        assert torch.equal(value, twin), name
    assert not torch.equal(first.model.features.conv1.weight, other.model.features.conv1.weight)


def test_the_checkpoint_reloads_the_model_that_scored_the_recorded_error(tmp_path):
    config = TrainConfig(groups=4, epochs=1, **SMALL)
    result = train(config, out=tmp_path, progress=False)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    model, loaded_config = load_checkpoint(tmp_path)
    assert loaded_config == config and model.features.conv2.groups == 4
    test = load("fashion-mnist", "test").subset(200, seed=0)
    assert evaluate(model, test) == metrics["epochs"][0]["val_error"] == result.history[0].val_error
    assert metrics["params"] == sum(p.numel() for p in model.parameters())


def test_evaluate_counts_the_wrong_answers():
    images = torch.zeros(5, 1, 28, 28)
    labels = torch.tensor([0, 0, 3, 0, 9])
    always_zero = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    torch.nn.init.zeros_(always_zero[1].weight)
    with torch.no_grad():
        always_zero[1].bias.copy_(torch.arange(10, 0, -1.0))  # class 0 has the largest logit
    assert evaluate(always_zero, ImageSet(images, labels, None), batch_size=2) == 2 / 5


def test_config_errors_name_the_choices():
    with pytest.raises(GroupConvError, match="unknown model 'vgg'; choose one of alexnet, resnext, shufflenet"):
        TrainConfig(model="vgg")
    with pytest.raises(GroupConvError, match="mobilenet has no groups argument"):
        TrainConfig(model="mobilenet", groups=2)
    with pytest.raises(GroupConvError, match="epochs must be at least 1, got 0"):
        TrainConfig(epochs=0)


def test_groupconv_train_prints_epochs_and_writes_its_files(tmp_path, capsys):
    argv = ["train", "--groups", "2", "--epochs", "1", "--train-subset", "64", "--test-subset", "100", "--out"]
    assert main([*argv, str(tmp_path)]) == 0
    out = capsys.readouterr()
    assert "alexnet g=2 seed=0 epoch 1/1: train loss" in out.err + out.out
    assert out.out.strip().endswith(f"wrote {tmp_path}/checkpoint.pt and metrics.json")
    assert (tmp_path / "checkpoint.pt").is_file()


def test_groupconv_train_without_data_prints_the_install_command(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        main(["train", "--epochs", "1", "--data-dir", str(tmp_path)])
    assert exit.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "apt-get install -y dataset-fashion-mnist" in error
