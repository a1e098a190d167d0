"""The experiments' statistics against facts worked out by hand, their designs, and docs/experiments.md's tables."""

import itertools
import math
from pathlib import Path

import pytest
import torch

from groupconv.cli import main
from groupconv.errors import GroupConvError
from groupconv.models import alexnet
from groupconv.training.data.fashion_mnist import DEFAULT_DIR
from groupconv.training.experiments import arms, cardinality, groups, runner, shuffle, specialisation, stats
from groupconv.training.experiments.specialisation import colour_share, permutation_test, plant, power
from groupconv.training.filters import draw_filters, filter_images
from groupconv.training.train import TrainConfig, build_model, count_params

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "experiments.md"
has_fashion_mnist = pytest.mark.skipif(not DEFAULT_DIR.is_dir(), reason="needs dataset-fashion-mnist (make data)")


# Student's t: two-sided 95% and one-sided 95% critical values from the published table.
@pytest.mark.parametrize(
    "p, df, value", [(0.975, 1, 12.706), (0.975, 2, 4.303), (0.975, 4, 2.776), (0.975, 9, 2.262), (0.95, 4, 2.132)]
)
def test_t_quantiles_match_the_published_table(p, df, value):
    assert stats.t_quantile(p, df) == pytest.approx(value, abs=5e-4)


@pytest.mark.parametrize("t", [-3.0, -0.4, 0.0, 1.2, 5.0])
def test_t_cdf_matches_the_closed_forms_for_one_and_two_degrees_of_freedom(t):
    assert stats.t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-10)  # Cauchy
    assert stats.t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-10)


def test_paired_interval_and_tost_by_hand():
    """Differences 0.1, 0.3, 0.2 (df 2): mean 0.2, sd 0.1, se 0.1/sqrt(3)."""
    result = stats.paired([0.1, 0.3, 0.2], margin=0.5)
    error = 0.1 / math.sqrt(3)
    assert result.mean == pytest.approx(0.2) and result.sd == pytest.approx(0.1)
    assert (result.low, result.high) == pytest.approx((0.2 - 4.3027 * error, 0.2 + 4.3027 * error), abs=1e-4)
    upper = (0.2 - 0.5) / error  # the one-sided test against +margin decides here
    assert result.tost_p == pytest.approx(0.5 + upper / (2 * math.sqrt(2 + upper * upper)), abs=1e-9)
    assert stats.paired([0.4], margin=0.5).sd is None


def test_seeds_for_equivalence_is_the_smallest_that_fits():
    needed = stats.seeds_for_equivalence(sd=0.5, margin=0.5)
    fits = lambda n: stats.t_quantile(0.95, n - 1) * 0.5 / math.sqrt(n) < 0.5
    assert fits(needed) and not fits(needed - 1)
    assert stats.seeds_for_equivalence(sd=0.1, margin=0.5, mean=0.6) is None
    # To exclude 0 at mean 0.5, sd 0.22: 3 seeds give 4.303 * 0.22 / sqrt(3) = 0.55 > 0.5; 4 give 3.182 * 0.11 = 0.35
    assert stats.seeds_for_difference(sd=0.22, mean=0.5) == 4 and stats.seeds_for_difference(sd=0.1, mean=0) is None


def summary(arm, errors, seeds=None):
    seeds = seeds or tuple(range(len(errors)))
    return arms.ArmSummary(arm, seeds, tuple(errors), tuple((0.2, e) for e in errors), 100, 1000, 10.0)


def test_comparison_pairs_by_seed_not_by_position():
    base = summary("g1", [0.10, 0.20, 0.30], seeds=(0, 1, 2))
    other = summary("g2", [0.31, 0.11], seeds=(2, 0))  # seed 1 missing, seeds out of order
    result = arms.compare(base, other, margin=0.5)
    assert result.count == 2 and result.mean == pytest.approx(1.0)  # +1 pp at both seeds


def test_summarise_reads_metrics_and_skips_missing_runs():
    def metrics(seed, test_error):
        epochs = [{"epoch": 1, "train_loss": 1.0, "val_error": 0.3, "seconds": 10.0 * (seed + 1)}]
        return {"config": {"seed": seed}, "params": 7, "macs_per_image": 9, "test_error": test_error, "epochs": epochs}

    row = arms.summarise("g2", [metrics(0, 0.1), None, metrics(2, 0.3)])
    assert row.seeds == (0, 2) and row.mean == pytest.approx(0.2) and row.std == pytest.approx(math.sqrt(0.02))
    assert row.seconds_per_epoch == pytest.approx(20.0) and row.val_curves == ((0.3,), (0.3,))
    assert arms.summarise("g4", [None, None]) is None


def test_groups_design_pairs_seeds_and_matches_parameters():
    planned = groups.runs()
    assert [run.name for run in planned[:5]] == ["g1-seed0", "g2-seed0", "g4-seed0", "g2-wide-seed0", "g1-seed1"]
    assert len(planned) == 20 and len({run.config.seed for run in planned}) == 5
    assert all(run.config.validation == 5000 and run.config.test_subset is None for run in planned)
    params = {run.arm: count_params(build_model(run.config)) for run in planned[:4]}
    assert abs(params["g2-wide"] - params["g1"]) / params["g1"] < 0.001
    assert params["g4"] < params["g2"] < params["g1"]


def test_cardinality_arms_hold_the_parameters_within_three_percent():
    planned = cardinality.runs(seeds=(0,))
    params = {run.arm: count_params(build_model(run.config)) for run in planned}
    assert [run.config.groups for run in planned] == [1, 2, 4, 8, 16]
    assert all(abs(count - params["c1"]) / params["c1"] <= 0.03 for count in params.values())


def test_shuffle_arms_differ_only_in_the_switch():
    on, off = shuffle.runs(seeds=(0,))
    assert on.config.shuffle and not off.config.shuffle
    assert {**vars(on.config), "shuffle": False} == vars(off.config)


def test_specialisation_arms_have_a_wide_conv1_and_a_grey_twin():
    planned = specialisation.runs()
    by_arm = {arm: [run for run in planned if run.arm == arm] for arm in specialisation.ARMS}
    assert len(by_arm["g1"]) == len(by_arm["g2"]) == 5 and len(by_arm["g1-grey"]) == specialisation.GREY_SEEDS
    conv1 = build_model(by_arm["g2"][0].config).features.conv1
    assert conv1.out_channels // 2 >= 24 and conv1.in_channels == 3
    assert all(run.layers == ("features.conv1",) for run in planned)


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


def test_planting_scales_only_the_colour_of_the_chosen_filters():
    weight = torch.randn(6, 3, 3, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    first = torch.tensor([True, True, True, False, False, False])
    planted = plant(weight, 0.5, first)
    torch.testing.assert_close(planted.sum(1), weight.sum(1))  # the grey component R + G + B is kept
    torch.testing.assert_close(planted[3:], weight[3:])
    shares, planted_shares = colour_share(weight[:3]), colour_share(planted[:3])
    grey = weight[:3].sum(1).square().sum((1, 2)) / 3
    colour = weight[:3].square().sum((1, 2, 3)) - grey
    torch.testing.assert_close(planted_shares, 0.25 * colour / (grey + 0.25 * colour))
    assert (planted_shares < shares).all()


def test_the_test_detects_a_full_split_and_rarely_an_absent_one():
    """Power: a black-and-white half is always found; with nothing planted, about 5% (the test's size)."""
    weights = [torch.randn(48, 3, 5, 5, generator=torch.Generator().manual_seed(s)) for s in range(3)]
    (_, none_difference, false_alarms), (_, full_difference, detected) = power(weights, (1.0, 0.0), 60, 200)
    assert detected == 1.0 and full_difference > 0.5
    assert false_alarms <= 0.2 and none_difference < 0.1


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


@pytest.mark.slow
@has_fashion_mnist
def test_runner_reuses_finished_runs_and_reports_missing_ones(tmp_path, capsys):
    config = TrainConfig(groups=2, epochs=1, train_subset=64, test_subset=100, batch_size=32, validation=100)
    run = runner.Run("g2", config)
    with pytest.raises(GroupConvError, match=f"^no finished runs for seeds 0 in {tmp_path}; "):
        runner.run_all([run], tmp_path, train=False)  # nothing to report
    first = runner.run_all([run], tmp_path, progress=False)
    written = (tmp_path / "g2-seed0" / "metrics.json").stat().st_mtime_ns
    assert runner.run_all([run], tmp_path, progress=False) == first
    assert (tmp_path / "g2-seed0" / "metrics.json").stat().st_mtime_ns == written
    assert first[0]["commit"] and first[0]["versions"]["torch"] == torch.__version__
    assert (
        main(["filters", str(tmp_path / "g2-seed0"), "--layer", "features.conv2", "-o", str(tmp_path / "c.png")]) == 0
    )
    assert "32 grey filters of features.conv2 ((32, 8, 5, 5)) in 2 group(s)" in capsys.readouterr().out


EXPERIMENTS = {"groups": groups, "cardinality": cardinality, "shuffle": shuffle}


def recomputed(name: str) -> str:
    """An experiment's tables, recomputed from the run files committed under docs/experiments/ (no training)."""
    runs_dir = ROOT / "docs" / "experiments" / name / "runs"
    if name == "specialisation":
        planned = specialisation.runs()
        metrics = runner.run_all(planned, runs_dir, train=False, progress=False)
        return specialisation.analyse(planned, metrics, runs_dir, permutations=10000).tables()
    module = EXPERIMENTS[name]
    planned = module.runs()
    return arms.report(planned, runner.run_all(planned, runs_dir, train=False), module.table, module.MARGIN).text


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_the_docs_tables_are_the_committed_runs(name):
    assert recomputed(name) in DOC.read_text()


@pytest.mark.slow
def test_the_docs_specialisation_tables_are_the_committed_runs():
    """Slow: the planted control runs 1,200 permutation tests."""
    assert recomputed("specialisation") in DOC.read_text()
