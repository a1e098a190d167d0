"""The experiments' statistics against facts worked out by hand, and the files they write."""

import itertools

import pytest
import torch

from groupconv.cli import main
from groupconv.models import alexnet
from groupconv.training.data.fashion_mnist import DEFAULT_DIR
from groupconv.training.experiments import groups, runner, specialisation
from groupconv.training.experiments.specialisation import colour_share, permutation_test
from groupconv.training.filters import draw_filters, filter_images
from groupconv.training.train import TrainConfig


def test_colour_share_of_random_filters_averages_two_thirds():
    """Isotropic random RGB weights put 1/3 of their energy on the grey axis, one direction of three."""
    shares = colour_share(torch.randn(20000, 3, 5, 5, generator=torch.Generator().manual_seed(0)))
    assert shares.mean().item() == pytest.approx(2 / 3, abs=0.005)


def test_colour_share_ignores_scale_and_brightness_and_sees_hue():
    generator = torch.Generator().manual_seed(1)
    brightness = torch.randn(4, 1, 5, 5, generator=generator).expand(-1, 3, -1, -1)
    assert colour_share(brightness).abs().max() < 1e-12
    filters = torch.randn(4, 3, 5, 5, generator=generator)
    torch.testing.assert_close(colour_share(7.5 * filters), colour_share(filters))
    opponent = torch.randn(4, 1, 5, 5, generator=generator) * torch.tensor([1.0, -2.0, 1.0]).view(1, 3, 1, 1)
    torch.testing.assert_close(colour_share(opponent), torch.ones(4, dtype=torch.float64))  # sums to 0 per pixel


def test_permutation_p_value_matches_exact_enumeration():
    """Shares [0, 0, 1, 1]: of the C(4, 2) = 6 first halves, {0, 1} and {2, 3} split them fully apart."""
    shares = torch.tensor([0.0, 0.0, 1.0, 1.0])
    statistic, p = permutation_test([shares], permutations=20000)
    assert statistic == 1.0
    assert p == pytest.approx(2 / 6, abs=0.01)
    halves = [set(c) for c in itertools.combinations(range(4), 2)]
    assert sum(h in ({0, 1}, {2, 3}) for h in halves) / len(halves) == pytest.approx(1 / 3)


def test_permutation_statistic_averages_over_runs():
    statistic, p = permutation_test([torch.tensor([0.2, 0.4, 0.6, 0.6]), torch.tensor([0.5, 0.5, 0.5, 0.5])], 2000)
    assert statistic == pytest.approx((abs(0.3 - 0.6) + 0) / 2)
    assert p == pytest.approx(1 / 3, abs=0.03)  # run 1's observed split is one of its 2 most extreme of 6


def test_groups_aggregate_and_table_from_metrics():
    def metrics(seed, errors, params=1000, macs=2_000_000):
        seconds = 10.0 * (seed + 1)
        epochs = [{"epoch": i + 1, "train_loss": 1.0, "val_error": e, "seconds": seconds} for i, e in enumerate(errors)]
        return {"config": {"seed": seed}, "params": params, "macs_per_image": macs, "epochs": epochs}

    row = groups.aggregate(2, [metrics(0, [0.5, 0.1]), metrics(1, [0.5, 0.2]), metrics(2, [0.5, 0.3])])
    assert row.mean == pytest.approx(0.2) and row.std == pytest.approx(0.1)  # sample std of 0.1, 0.2, 0.3
    assert row.seconds_per_epoch == pytest.approx(20.0)
    dense = groups.aggregate(1, [metrics(0, [0.2], params=2000, macs=4_000_000)])
    lines = groups.table([dense, row]).splitlines()
    assert lines[2].startswith("| 1 | 20.00 (1 seed) | 2,000 | 4.00M | 10 | 18.97 / 41.80 |")
    assert lines[3].startswith("| 2 | 20.00 ± 10.00 | 1,000 (-50.0%) | 2.00M (-50.0%) | 20 | 18.14 / 41.84 |")


def test_filter_images_keep_zero_at_mid_grey_and_grey_filters_grey():
    weight = torch.randn(6, 1, 3, 3).expand(-1, 3, -1, -1)
    images = filter_images(weight)
    assert images.shape == (6, 3, 3, 3) and images.min() >= 0 and images.max() <= 1
    assert (images[..., 0] == images[..., 2]).all()
    assert filter_images(torch.zeros(1, 3, 2, 2)).tolist() == [[[[0.5] * 3] * 2] * 2]


def test_draw_filters_draws_conv1_by_the_groups_of_conv2(tmp_path):
    model = alexnet(groups=2, in_channels=3, image_size=32, width=0.125)
    drawn = draw_filters(model, "features.conv1", tmp_path / "conv1.png")
    assert drawn == "16 RGB filters of features.conv1 ((16, 3, 5, 5)) in 2 group(s)"
    assert (tmp_path / "conv1.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.skipif(not DEFAULT_DIR.is_dir(), reason="needs dataset-fashion-mnist (make data)")
def test_runner_reuses_finished_runs_and_filters_draws_them(tmp_path, capsys):
    config = TrainConfig(groups=2, epochs=1, train_subset=64, test_subset=100, batch_size=32)
    first = runner.run_all([config], tmp_path, progress=False)
    written = (tmp_path / "alexnet-g2-seed0" / "metrics.json").stat().st_mtime_ns
    again = runner.run_all([config], tmp_path, progress=False)
    assert again == first and (tmp_path / "alexnet-g2-seed0" / "metrics.json").stat().st_mtime_ns == written
    run = str(tmp_path / "alexnet-g2-seed0")
    assert main(["filters", run, "--layer", "features.conv2", "-o", str(tmp_path / "c2.png")]) == 0
    assert "32 grey filters of features.conv2 ((32, 8, 5, 5)) in 2 group(s)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["filters", run, "--layer", "conv9", "-o", str(tmp_path / "x.png")])
    assert "no 2-D convolution named 'conv9'; the model has features.conv1," in capsys.readouterr().err


def test_specialisation_report_lists_runs_and_tests():
    runs = (specialisation.RunShares(2, 0, 0.25, 0.70, 0.40, 0.5, 0.66, "conv1-alexnet-g2-seed0.png"),)
    report = specialisation.Report(runs, (specialisation.GroupsResult(2, 0.3, 0.0123),), 1000)
    text = str(report)
    assert "| 2 | 0 | 25.00 | 0.700 | 0.400 | 0.300 | 50% | 0.660 |" in text
    assert "| 2 | 0.300 | 0.0123 |" in text
