"""groupconv.parallel against the unsplit model on the same weights and data.

The distributed tests spawn 2 gloo processes once (a module fixture) and train every
model there; the oracle is the same model trained here in one process. They start
processes, so they are in the full suite only (marked slow). Tests that need no
processes (plans, errors, dropout masks) run in this one, in the default tier too.

Float32 results are compared on the first step; the trajectory over several steps is
compared in float64. (In float32, two correct runs that sum in different orders part
ways within a few steps: a pre-activation within rounding of zero makes ReLU or
max-pooling send its gradient elsewhere. Here alexnet-g2 does so at the third step.)
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import groupconv.nn as gnn
from groupconv import GroupConvError
from groupconv.cli import main
from groupconv.models import ChannelShuffle, alexnet, resnext, shufflenet
from groupconv.parallel import CollectiveError, ShardingError, plan, shard
from groupconv.parallel.launch import LaunchError, spawn
from groupconv.parallel.rules import ShardedDropout
from groupconv.training.data import load as load_data
from groupconv.training.data.fashion_mnist import DEFAULT_DIR
from groupconv.training.train import evaluate, load_checkpoint

RANKS, BATCH = 2, 8
DEADLINE = 120  # seconds: spawned ranks still running then are stopped, so no test can hang


def grouped_chain() -> nn.Sequential:
    """A dense stem, then grouped layers whose groups line up: nothing to communicate until the output."""
    return nn.Sequential(
        gnn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),
        gnn.Conv2d(8, 16, 3, padding=1, groups=2), nn.BatchNorm2d(16), nn.ReLU(),
        gnn.Conv2d(16, 16, 3, padding=1, groups=4), nn.ReLU(), nn.MaxPool2d(2),
        gnn.Conv2d(16, 10, 1, groups=2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )  # fmt: skip


def with_a_replicated_layer() -> nn.Sequential:
    """GroupNorm mixes channels in ways groupconv.parallel does not split: kept whole on every rank."""
    return nn.Sequential(
        gnn.Conv2d(1, 8, 3, padding=1), nn.GroupNorm(2, 8), nn.ReLU(),
        gnn.Conv2d(8, 8, 3, groups=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10),
    )  # fmt: skip


class DirectParameter(nn.Module):
    """A forward that reads a parameter itself (torch.fx's get_attr), not through a layer."""

    def __init__(self):
        super().__init__()
        self.body, self.gain = grouped_chain(), nn.Parameter(torch.tensor([1.5]))

    def forward(self, x):
        return self.body(x) * self.gain


class Tied(nn.Module):
    """A layer registered under two names and called twice, and two heads sharing one weight."""

    def __init__(self):
        super().__init__()
        self.stem, self.block = gnn.Conv2d(1, 8, 3, padding=1), gnn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.again = self.block
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head, self.other_head = nn.Linear(8, 10), nn.Linear(8, 10)
        self.other_head.weight = self.head.weight

    def forward(self, x):
        features = self.pool(self.again(F.relu(self.block(F.relu(self.stem(x))))))
        return self.head(features) + self.other_head(features)


REPLICATE = {"replicated-layer": ["1"]}
MODELS = {
    "alexnet-g2": functools.partial(alexnet, groups=2, width=0.125),
    "alexnet-g4": functools.partial(alexnet, groups=4, width=0.125),
    "resnext": functools.partial(resnext, cardinality=4, bottleneck_width=2, stages=((16, 1), (32, 2))),
    "shufflenet": functools.partial(shufflenet, groups=2, repeats=(1, 1, 1)),
    "grouped-chain": grouped_chain,
    "replicated-layer": with_a_replicated_layer,
    "direct-parameter": DirectParameter,
    "tied": Tied,
}
EXAMPLE = torch.zeros(1, 1, 28, 28)


DTYPES = {"float32": torch.float32, "float64": torch.float64}
STEPS = {torch.float32: 1, torch.float64: 3}  # float32: the first step; float64: the trajectory
TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}
CLIP = 0.4  # below every test model's gradient norms (0.43 to 2.0): clipping scales every step


def batch(dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(BATCH, 1, 28, 28, generator=generator, dtype=dtype)
    return images, torch.randint(0, 10, (BATCH,), generator=generator)


def train(model: nn.Module, dtype: torch.dtype, grads, state, clip) -> list[dict]:
    """A few steps of SGD on one batch, in train mode (dropout and batch statistics on); each step's record.

    ``grads(model)`` and ``state(model)`` read the whole model's gradients and state; ``clip(model)``
    clips the gradient to norm CLIP and returns its norm before.
    """
    images, labels = batch(dtype)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    records = []
    for step in range(STEPS[dtype]):
        torch.manual_seed(100 + step)  # the same dropout masks in both runs
        output = model(images)
        loss = F.cross_entropy(output, labels)
        optimizer.zero_grad()
        loss.backward()
        traffic = getattr(model, "traffic", None)
        sent = {"bytes": traffic.bytes, "calls": dict(traffic.calls_by_kind)} if traffic else {}
        records.append({"output": output.detach(), "loss": loss.detach(), "grads": grads(model), **sent})
        records[-1]["norm"] = clip(model).to(dtype)
        optimizer.step()
        if traffic is not None:
            traffic.reset()  # not counting full_grads' own collectives
    records.append({"state": state(model)})
    return records


def rank_trains_every_model(folder: str) -> None:
    """On each rank: shard and train every model; save the records and any wrap-time error."""
    rank = torch.distributed.get_rank()
    torch.manual_seed(rank)  # ranks seeded unlike: shard must refuse a model with dropout
    try:
        shard(MODELS["alexnet-g2"](), EXAMPLE)
    except ShardingError as error:
        Path(folder, f"seed-error-{rank}.txt").write_text(str(error))
    for name, make in MODELS.items():
        for dtype_name, dtype in DTYPES.items():
            torch.manual_seed(0)
            whole = make().to(dtype)
            random_state = torch.get_rng_state()
            model = shard(whole, EXAMPLE.to(dtype), replicate=REPLICATE.get(name, ()))
            untouched = torch.equal(torch.get_rng_state(), random_state)  # so dropout draws as the unsplit model's
            records = train(model, dtype, lambda m: m.full_grads(), lambda m: m.full_state_dict(),
                            lambda m: m.clip_grad_norm_(CLIP))  # fmt: skip
            model.load_full_state_dict(whole.state_dict())  # back to the untrained weights
            reloaded = model.full_state_dict()
            run = {"records": records, "plan_bytes": model.plan.bytes_per_step(BATCH), "untouched": untouched,
                   "reloaded": reloaded, "initial": whole.state_dict()}  # fmt: skip
            torch.save(run, Path(folder, f"{name}-{dtype_name}-{rank}.pt"))


def train_whole(name: str, dtype: torch.dtype) -> list[dict]:
    torch.manual_seed(0)
    model = MODELS[name]().to(dtype)
    grads = lambda m: {key: p.grad.clone() for key, p in m.named_parameters()}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # like each rank; faster than 2 on a busy machine
    clip = lambda m: nn.utils.clip_grad_norm_(m.parameters(), CLIP)
    try:
        return train(model, dtype, grads, lambda m: m.state_dict(), clip)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def split_runs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("parallel")
    spawn(rank_trains_every_model, RANKS, str(folder), timeout=30, deadline=DEADLINE)
    return folder


def load(folder: Path, name: str, dtype: str = "float32", rank: int = 0) -> dict:
    return torch.load(folder / f"{name}-{dtype}-{rank}.pt", weights_only=False)


def close(actual: dict | torch.Tensor, expected: dict | torch.Tensor, what: str) -> None:
    """Equal within rounding of differently ordered sums: relative to the tensor's largest entry (or 1)."""
    if isinstance(expected, dict):
        assert actual.keys() == expected.keys(), what
        for key in expected:
            close(actual[key], expected[key], f"{what} {key}")
        return
    tolerance = TOLERANCE.get(expected.dtype, 0)
    scale = max(expected.abs().max().item(), 1.0) if tolerance else 1.0
    torch.testing.assert_close(actual, expected, rtol=tolerance, atol=tolerance * scale, msg=what)


def compare(mine: dict, expected: dict, what: str) -> None:
    for key in ("output", "loss", "grads", "norm"):
        close(mine[key], expected[key], f"{what} {key}")


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_float32_outputs_loss_and_every_gradient_equal_the_unsplit_models(split_runs, name):
    compare(load(split_runs, name)["records"][0], train_whole(name, torch.float32)[0], "float32:")


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_optimiser_steps_keep_them_equal(split_runs, name):
    split, whole = load(split_runs, name, "float64")["records"], train_whole(name, torch.float64)
    for step in range(STEPS[torch.float64]):
        compare(split[step], whole[step], f"float64 step {step}:")
    close(split[-1]["state"], whole[-1]["state"], f"float64 after {STEPS[torch.float64]} SGD steps:")


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_every_rank_ends_with_the_same_whole_model(split_runs, name):
    states = [load(split_runs, name, rank=rank)["records"][-1]["state"] for rank in range(RANKS)]
    for key, tensor in states[0].items():
        assert torch.equal(states[1][key], tensor), key


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_bytes_sent_are_the_plans(split_runs, name):
    for dtype in DTYPES:
        run = load(split_runs, name, dtype)
        assert {record["bytes"] for record in run["records"][:-1]} == {run["plan_bytes"]}, dtype


@pytest.mark.slow
def test_aligned_grouped_layers_communicate_nothing_until_the_output(split_runs):
    records = load(split_runs, "grouped-chain", "float64")["records"][:-1]
    assert [record["calls"] for record in records] == [{"all_gather": 1}] * len(records)  # the output's gather


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_a_whole_state_dict_loaded_into_the_split_model_comes_back_whole(split_runs, name):
    run = load(split_runs, name, rank=1)
    assert run["reloaded"].keys() == run["initial"].keys()
    for key, tensor in run["initial"].items():
        assert torch.equal(run["reloaded"][key], tensor), key


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_shard_draws_nothing_from_the_random_stream(split_runs, name):
    assert load(split_runs, name)["untouched"]


@pytest.mark.slow
def test_ranks_seeded_unlike_are_refused_when_the_model_has_dropout(split_runs):
    for rank in range(RANKS):
        message = (split_runs / f"seed-error-{rank}.txt").read_text()
        assert "random states differ" in message and "torch.manual_seed" in message


def rank_dies_mid_step(folder: str) -> None:
    """Rank 1 kills itself inside the forward pass; rank 0 records the error it gets."""
    rank = torch.distributed.get_rank()
    torch.manual_seed(0)
    model = shard(MODELS["alexnet-g2"](), EXAMPLE)
    if rank == 1:
        model.module.features.conv4.register_forward_pre_hook(lambda *_: os.kill(os.getpid(), signal.SIGKILL))
    images, labels = batch()
    try:
        F.cross_entropy(model(images), labels).backward()
    except CollectiveError as error:
        Path(folder, "error.txt").write_text(str(error))
        raise


@pytest.mark.slow
def test_a_rank_killed_mid_step_makes_the_other_fail_with_a_clear_error(tmp_path):
    with pytest.raises(LaunchError) as failure:
        spawn(rank_dies_mid_step, RANKS, str(tmp_path), timeout=10, deadline=DEADLINE)
    assert failure.value.exitcodes == [1, -signal.SIGKILL]  # rank 0 raised; it was not stopped by the launcher
    assert "rank 1 was ended by SIGKILL" in str(failure.value)
    message = (tmp_path / "error.txt").read_text()
    assert "failed on rank 0 of 2: another rank stopped" in message
    assert "after classifier.fc6" in message  # fc6's reduce_scatter: rank 0's first collective after conv4


def test_the_plan_splits_alexnets_groups_and_gathers_only_where_layers_mix():
    steps = plan(alexnet(groups=2, width=0.125), EXAMPLE, world_size=2).steps
    assert {name: steps[name].decision.how for name in ("features_conv2", "features_conv4", "features_conv5")} == {
        name: "grouped" for name in ("features_conv2", "features_conv4", "features_conv5")
    }
    communicating = {step.name: [edge.kind for edge in step.edges] for step in steps.values() if step.sent}
    assert communicating == {
        "features.conv3": ["gather_to_mix"],  # 32 channels in, 48 out: gathering the input is cheaper
        "classifier.fc6": ["reduce_scatter"],  # 288 features in, 128 out: reducing the output is cheaper
        "classifier.fc7": ["gather_to_mix"],
        "classifier.fc8": ["all_reduce"],  # 10 classes, needed whole
    }


@pytest.mark.parametrize(
    ("channels", "groups", "how"), [(8, 2, "shuffled"), (16, 4, "shuffled"), (12, 4, "replicated")]
)
def test_a_channel_shuffle_is_one_all_to_all_where_every_rank_sends_every_rank_alike(channels, groups, how):
    model = nn.Sequential(
        gnn.Conv2d(1, channels, 3), ChannelShuffle(groups), gnn.Conv2d(channels, channels, 1, groups=2)
    )
    shuffle = plan(model, EXAMPLE, world_size=2).steps["_1"]
    assert shuffle.decision.how == how  # 12 channels in 4 groups: rank 0 would send 2 and keep 4, so it gathers
    whole = channels * 26 * 26 * 4  # bytes per sample of the shuffled activation
    sent = {"shuffled": 2 * whole / 4, "replicated": whole / 2}[how]  # all_to_all both ways; all_gather forward
    assert shuffle.sent == sent


def test_one_rank_communicates_nothing():
    assert plan(alexnet(groups=2, width=0.125), EXAMPLE, world_size=1).bytes_per_step(BATCH) == 0


def test_the_plan_prints_each_layer_and_its_communication():
    text = str(plan(alexnet(groups=2, width=0.125), EXAMPLE, world_size=2))
    assert "features.conv2  Conv2d 16->32 g=2  grouped" in text
    assert "features.conv3  Conv2d 32->48      by outputs  whole    sharded     all_gather / reduce_scatter" in text
    assert text.endswith("2 ranks; each sends 7,336 bytes per sample per training step")


def test_groups_that_do_not_divide_among_the_ranks_are_refused_naming_the_layer():
    message = (
        "cannot split features.conv2 (Conv2d 16->32, groups=2) across 4 ranks: each rank keeps whole groups, "
        "and 2 groups do not divide among 4. Use a multiple of 4 groups, or 1 or 2 ranks, or pass "
        "replicate=['features.conv2'] to keep a whole copy on every rank"
    )
    with pytest.raises(ShardingError, match=f"^{_escaped(message)}$"):
        plan(alexnet(groups=2, width=0.125), EXAMPLE, world_size=4)


def test_a_layer_it_cannot_split_is_refused_naming_the_layer_and_the_fix():
    model = nn.Sequential(gnn.Conv2d(1, 8, 3, groups=1), nn.GroupNorm(2, 8))
    with pytest.raises(ShardingError, match=r"^cannot split 1 \(GroupNorm\) across 2 ranks: .* replicate=\['1'\]"):
        plan(model, EXAMPLE, world_size=2)
    step = plan(model, EXAMPLE, world_size=2, replicate=["1"]).steps["_1"]
    assert (step.decision.how, [edge.kind for edge in step.before]) == ("replicated", ["gather"])


def test_a_model_torch_fx_cannot_trace_is_refused():
    class Branchy(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    with pytest.raises(ShardingError, match=r"^cannot split Branchy: torch.fx could not trace it"):
        plan(Branchy(), EXAMPLE, world_size=2)


def test_a_tied_tensor_its_layers_split_differently_is_refused_naming_both():
    from groupconv.parallel.group_parallel import _tie
    from groupconv.parallel.rules import Placement

    whole, by_inputs = Placement(torch.Size([10, 8]), torch.float32), Placement(torch.Size([10, 8]), torch.float32, 1)
    placements = {"head.weight": whole, "other_head.weight": by_inputs}
    message = r"other_head.weight is head.weight \(tied\), .* replicate=\['head', 'other_head'\]"
    with pytest.raises(ShardingError, match=message):
        _tie(torch.fx.symbolic_trace(Tied()), placements, {"other_head.weight": "head.weight"})


def test_replicate_must_name_layers_of_the_model():
    with pytest.raises(ShardingError, match=r"^replicate names no layer of the model: conv9;"):
        plan(alexnet(), EXAMPLE, world_size=2, replicate=["conv9"])


def test_shard_without_a_process_group_says_how_to_start_one():
    with pytest.raises(RuntimeError, match=r"call torch\.distributed\.init_process_group first"):
        shard(alexnet(), EXAMPLE)


def test_planning_leaves_the_model_as_it_was():
    model = alexnet(groups=2, width=0.125).train()
    before = {key: tensor.clone() for key, tensor in model.state_dict().items()}
    plan(model, torch.randn(4, 1, 28, 28), world_size=2)
    assert model.training and all(torch.equal(model.state_dict()[key], tensor) for key, tensor in before.items())


@pytest.mark.parametrize("p", [0.3, 0.5])
def test_sharded_dropout_draws_the_unsplit_dropouts_mask(p):
    x = torch.randn(4, 6, 3)
    torch.manual_seed(7)
    whole = F.dropout(x, p, training=True)
    blocks = []
    for rank, block in enumerate(x.chunk(2, 1)):
        torch.manual_seed(7)
        blocks.append(ShardedDropout(p, rank, 2)(block))
    assert torch.equal(torch.cat(blocks, 1), whole)


needs_data = pytest.mark.skipif(not DEFAULT_DIR.is_dir(), reason="needs dataset-fashion-mnist (make data)")
TINY_RUN = ["--groups", "2", "--epochs", "1", "--train-subset", "128", "--test-subset", "100", "--batch-size", "64"]


@pytest.mark.slow
@needs_data
def test_groupconv_train_procs_2_trains_split_and_saves_the_whole_model(tmp_path, capfd):
    main(["train", *TINY_RUN, "--procs", "2", "--out", str(tmp_path)])
    printed = capfd.readouterr().out.splitlines()
    assert [line for line in printed if line.startswith("test error")] == [
        f"test error {100 * json.loads((tmp_path / 'metrics.json').read_text())['test_error']:.2f}% "
        f"after 1 epochs; wrote {tmp_path}/checkpoint.pt and metrics.json"
    ]  # once: rank 0 reports
    model, config = load_checkpoint(tmp_path)  # the unsplit model, from rank 0's whole-model checkpoint
    recorded = json.loads((tmp_path / "metrics.json").read_text())["test_error"]
    assert evaluate(model, load_data("fashion-mnist", "test").subset(100, seed=config.seed)) == recorded


@pytest.mark.slow
@needs_data
def test_torchrun_runs_groupconv_train_group_parallel():
    torchrun = Path(sys.executable).with_name("torchrun")
    command = [str(torchrun), "--nproc-per-node", "2", "-m", "groupconv", "train", *TINY_RUN, "--group-parallel"]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=DEADLINE)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert finished.stdout.count("test error") == 1  # rank 0 reports; rank 1 trains silently


def test_groupconv_train_refuses_a_split_before_starting_processes(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["train", "--groups", "2", "--procs", "4"])
    assert exit.value.code == 2
    assert capsys.readouterr().err.startswith("groupconv train: error: cannot split features.conv2 (Conv2d 16->32")


def test_group_parallel_outside_torchrun_says_how_to_start_it(capsys, monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(SystemExit):
        main(["train", "--group-parallel"])
    assert "torchrun --nproc-per-node R" in capsys.readouterr().err


def _escaped(text: str) -> str:
    import re

    return re.escape(text)


def rank_feeds_its_own_batch(folder: str, same_shape: bool) -> None:
    """Rank 1 trains on other images than rank 0's (of the same shape, or one image fewer)."""
    rank = torch.distributed.get_rank()
    torch.manual_seed(0)
    model = shard(MODELS["alexnet-g2"](), EXAMPLE)
    images, labels = batch()
    if rank == 1:
        images = images.flip(0) if same_shape else images[1:]
        labels = labels.flip(0) if same_shape else labels[1:]
    try:
        F.cross_entropy(model(images), labels).backward()
    except GroupConvError as error:
        Path(folder, f"error{rank}.txt").write_text(str(error))
        raise


@pytest.mark.slow
@pytest.mark.parametrize("same_shape", [True, False])
def test_ranks_given_different_batches_all_stop_with_a_clear_error(tmp_path, same_shape):
    with pytest.raises(LaunchError) as failure:
        spawn(rank_feeds_its_own_batch, RANKS, str(tmp_path), same_shape, timeout=10, deadline=DEADLINE)
    assert failure.value.exitcodes == [1, 1]  # both raised; neither hung nor was stopped
    for rank in range(RANKS):
        message = (tmp_path / f"error{rank}.txt").read_text()
        assert message.startswith(f"rank {rank} of 2: the ranks' inputs differ in shape or data")


def rank_is_interrupted() -> None:
    """What Ctrl-C does to every rank started from a terminal: a KeyboardInterrupt, here between collectives."""
    signal.signal(signal.SIGINT, signal.default_int_handler)  # a background job (CI) starts with SIGINT ignored
    torch.distributed.barrier()
    signal.raise_signal(signal.SIGINT)
    torch.distributed.barrier()


@pytest.mark.slow
def test_ranks_interrupted_stop_without_a_traceback(capfd):
    """Each rank printed its KeyboardInterrupt's traceback (70 to 140 lines under groupconv train --procs 2)."""
    with pytest.raises(LaunchError) as failure:
        spawn(rank_is_interrupted, RANKS, timeout=10, deadline=DEADLINE)
    assert failure.value.exitcodes == [128 + signal.SIGINT] * RANKS
    assert "Traceback" not in capfd.readouterr().err


LAUNCHER = "import time; from groupconv.parallel.launch import spawn; spawn(time.sleep, 2, 120)"


@pytest.mark.slow
def test_ranks_stop_soon_after_their_launcher_is_killed():
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER], stderr=subprocess.PIPE, text=True)
    ranks = _children(launcher.pid, count=RANKS, within=60)
    launcher.kill()
    launcher.wait()
    deadline = time.monotonic() + 15  # the ranks poll every 0.5 s
    while any(_running(pid) for pid in ranks) and time.monotonic() < deadline:
        time.sleep(0.2)
    still = [pid for pid in ranks if _running(pid)]
    for pid in still:  # leave no orphan behind, whatever the outcome
        os.kill(pid, signal.SIGKILL)
    assert still == []


def _children(pid: int, count: int, within: float) -> list[int]:
    """The pids of ``pid``'s child processes once there are ``count`` of them (multiprocessing's resource
    tracker aside: ranks are those running groupconv's spawn entry)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        ranks = [int(c) for c in children if "resource_tracker" not in Path(f"/proc/{c}/cmdline").read_text()]
        if len(ranks) == count:
            time.sleep(3)  # past their imports: the watch thread has started
            return ranks
        time.sleep(0.2)
    raise AssertionError(f"the launcher did not start {count} ranks within {within} s")


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for a reaper that is not ours does not)."""
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
