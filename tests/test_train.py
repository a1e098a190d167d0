"""groupconv.training.train and `groupconv train`: the loss falls on real data, seeds reproduce, checkpoints reload."""

import json
import math

import pytest
import torch

from groupconv import GroupConvError
from groupconv.cli import main
from groupconv.training.data import ImageSet, load
from groupconv.training.data.fashion_mnist import DEFAULT_DIR
from groupconv.training.train import (
    TrainConfig,
    build_model,
    evaluate,
    load_checkpoint,
    shift_and_flip,
    splits,
    train,
)

pytestmark = pytest.mark.skipif(not DEFAULT_DIR.is_dir(), reason="needs dataset-fashion-mnist (make data)")
SMALL = dict(train_subset=256, test_subset=200, batch_size=32)


@pytest.mark.slow
def test_the_training_loss_falls_on_a_small_real_subset():
    config = TrainConfig(groups=2, epochs=3, lr=2e-3, train_subset=384, test_subset=200, batch_size=16)
    result = train(config, progress=False)
    losses = [epoch.train_loss for epoch in result.history]
    assert losses[0] < math.log(10) + 0.1  # the first epoch starts near chance: ln(10) for 10 classes
    assert losses[-1] < 0.9 * losses[0]
    assert result.test_error < 0.75  # chance is 0.9


@pytest.mark.slow
def test_the_same_seed_gives_the_same_run_and_another_seed_does_not():
    config = TrainConfig(groups=2, epochs=1, train_subset=96, test_subset=100, batch_size=32)
    first, again = train(config, progress=False), train(config, progress=False)
    other = train(TrainConfig(**{**config.__dict__, "seed": 1}), progress=False)
    assert [e.train_loss for e in first.history] == [e.train_loss for e in again.history]
    for (name, value), twin in zip(first.model.state_dict().items(), again.model.state_dict().values()):
        assert torch.equal(value, twin), name
    assert not torch.equal(first.model.features.conv1.weight, other.model.features.conv1.weight)


@pytest.mark.slow
def test_the_checkpoint_reloads_the_model_that_scored_the_recorded_error(tmp_path):
    config = TrainConfig(groups=4, epochs=1, **SMALL)
    result = train(config, out=tmp_path, progress=False)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    model, loaded_config = load_checkpoint(tmp_path)
    assert loaded_config == config and model.features.conv2.groups == 4
    test = load("fashion-mnist", "test").subset(200, seed=0)
    assert evaluate(model, test) == metrics["test_error"] == result.test_error
    assert metrics["epochs"][0]["val_error"] is None  # no validation split asked for
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_validation_is_held_out_of_training_and_the_test_split_is_untouched():
    config = TrainConfig(validation=5000, train_subset=None)
    train_set, validation_set, test_set = splits(config)
    assert (len(train_set), len(validation_set), len(test_set)) == (55000, 5000, 10000)
    seen = {tuple(image.flatten()[::20].tolist()) for image in train_set.images[:2000]}
    assert not any(tuple(image.flatten()[::20].tolist()) in seen for image in validation_set.images[:500])
    _, same_validation, _ = splits(TrainConfig(validation=5000, seed=3))
    assert torch.equal(same_validation.labels, validation_set.labels)  # the same images for every seed


@pytest.mark.slow
def test_the_recipe_runs_and_records_where_it_came_from(tmp_path):
    config = TrainConfig(
        groups=2, epochs=2, validation=200, schedule="one-cycle", weight_decay=0.05, augment=True, **SMALL
    )
    result = train(config, out=tmp_path, progress=False, layers=("features.conv1",))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert all(0 <= epoch["val_error"] <= 1 for epoch in metrics["epochs"]) and 0 <= metrics["test_error"] <= 1
    assert len(metrics["commit"]) == 40 and metrics["versions"]["torch"] == torch.__version__
    assert "routes" in metrics and metrics["train_seconds"] > 0
    layers = torch.load(tmp_path / "layers.pt", weights_only=True)["features.conv1"]
    assert torch.equal(layers["trained"], result.model.features.conv1.weight.detach())
    torch.manual_seed(config.seed)  # as train() does: the same seed rebuilds the initial weights
    assert torch.equal(layers["initial"], build_model(config).features.conv1.weight.detach())
    assert not torch.equal(layers["initial"], layers["trained"])


def test_shift_and_flip_matches_a_slow_loop():
    images = torch.rand(16, 3, 6, 7, generator=torch.Generator().manual_seed(0))
    moved = shift_and_flip(images, torch.Generator().manual_seed(5))
    generator = torch.Generator().manual_seed(5)  # the same draws, in the same order
    top, left = torch.randint(0, 5, (16,), generator=generator), torch.randint(0, 5, (16,), generator=generator)
    mirror = torch.rand(16, generator=generator) < 0.5
    for n in range(16):
        padded = torch.zeros(3, 10, 11)
        padded[:, 2:8, 2:9] = images[n]
        expected = padded[:, top[n] : top[n] + 6, left[n] : left[n] + 7]
        torch.testing.assert_close(moved[n], expected.flip(-1) if mirror[n] else expected, rtol=0, atol=0)


def test_one_cycle_reaches_the_peak_and_ends_near_zero():
    from groupconv.training.train import _scheduler

    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=2e-3)
    scheduler = _scheduler(TrainConfig(lr=2e-3, schedule="one-cycle", epochs=4), optimizer, steps_per_epoch=25)
    rates = []
    for _ in range(100):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert max(rates) == pytest.approx(2e-3, rel=1e-3) and rates.index(max(rates)) == 29  # 30% of 100 steps
    assert rates[-1] < 1e-6
