"""Every bad command line is one line on stderr, exit status 2, no traceback, nothing written; Ctrl-C is 130.

Run in-process through ``groupconv.cli.main`` (fast); only Ctrl-C needs a real process to signal.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from test_cli import BUILDER, LAYER, run
from tiers import fast_every

from groupconv.training.train import TrainConfig, build_model

BROKEN = "import torch\nraise RuntimeError('the GPU cluster is down')\n"


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """The current directory for a test: user modules (one that builds, one whose import raises) and
    checkpoints (a good one, crafted ones, files that are not checkpoints)."""
    (tmp_path / "cli_models.py").write_text(textwrap.dedent(BUILDER) + "NOT_CALLABLE = 3\n")
    (tmp_path / "broken_models.py").write_text(BROKEN)
    for name in ("cli_models", "broken_models"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    config = dataclasses.asdict(TrainConfig())
    state = build_model(TrainConfig()).state_dict()
    torch.save({"config": config, "state_dict": state}, tmp_path / "good.pt")
    torch.save({"config": {**config, "width": 40.0}, "state_dict": state}, tmp_path / "wide.pt")
    torch.save({"config": {**config, "colour": "red"}, "state_dict": state}, tmp_path / "unknown.pt")
    torch.save({"config": _Crafted(), "state_dict": {}}, tmp_path / "crafted.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    (tmp_path / "some.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(16))
    (tmp_path / "code.pkl").write_bytes(pickle.dumps(_Crafted(), protocol=2))  # a plain pickle, not torch.save's
    (tmp_path / "empty").mkdir()
    (tmp_path / "a_file").write_text("")
    monkeypatch.chdir(tmp_path)
    return tmp_path


class _Crafted:
    """A pickle that would run a command when loaded without weights_only."""

    def __reduce__(self):
        return (os.system, ("echo crafted",))


PLAN = ["parallel", "plan"]
TRAIN = ["train", "--epochs", "1"]
GROUPS = ["experiment", "groups"]
BAD_ARGUMENTS = [
    ([], "groupconv: error: the following arguments are required: COMMAND (see groupconv --help)"),
    (["bogus"], "groupconv: error: argument COMMAND: invalid choice: 'bogus'"),
    # explain and diagram: the layer
    (["explain"], "groupconv explain: error: the following arguments are required: --in/--in-channels, "
                  "--out/--out-channels, --kernel/--kernel-size (see groupconv explain --help)"),
    (["explain", *LAYER, "--groups", "3"], "groupconv explain: error: groups=3 is invalid: in_channels=4 and "
     "out_channels=8 are not divisible by 3; nearest valid: 2 or 4 (valid groups: 1, 2, 4; the largest is "
     "gcd(4, 8) = 4)"),
    (["explain", *LAYER, "--groups", "0"], "groupconv explain: error: groups=0 is invalid: groups must be an int >= 1"),
    (["explain", "--in", "4", "--out", "8", "--kernel", "3,3,3,3"], "groupconv explain: error: --kernel 3,3,3,3 has "
     "4 sizes; groupconv supports 1-, 2- and 3-D convolution: give 1 to 3 sizes\n"),
    (["explain", *LAYER, "--groups", "-2"], "groupconv explain: error: groups=-2 is invalid"),
    (["explain", "--in", "four", "--out", "8", "--kernel", "3"], "groupconv explain: error: argument "
     "--in/--in-channels: invalid int value: 'four' (see groupconv explain --help)"),
    (["explain", "--in", "4", "--out", "8", "--kernel", "3,x"], "groupconv explain: error: argument "
     "--kernel/--kernel-size: expected an int or comma-separated ints, got '3,x' (see groupconv explain --help)"),
    (["explain", "--in", "4", "--out", "8", "--kernel", "0"], "groupconv explain: error: kernel_size=0 is invalid"),
    (["explain", *LAYER, "--input", "1,5,32,32"], "groupconv explain: error: --input 1,5,32,32 gives C = 5 input "
     "channels, but --in is 4: a 2-D layer takes N,C,H,W or unbatched C,H,W, with C = 4\n"),
    (["explain", *LAYER, "--input", "4,32,32"], "groupconv explain: error: --input 4,32,32 gives C = 32 input "
     "channels, but --in is 4: a 1-D layer takes N,C,L or unbatched C,L, with C = 4 (3 sizes made the layer 1-D; a "
     "2-D layer takes N,C,H,W or unbatched C,H,W: give 1,4,32,32, or add --dims 2)\n"),
    (["explain", *LAYER, "--dims", "2", "--input", "1,4,32"], "groupconv explain: error: --input 1,4,32 gives C = 1 "
     "input channels, but --in is 4: a 2-D layer takes N,C,H,W or unbatched C,H,W, with C = 4\n"),
    (["explain", *LAYER, "--dims", "2", "--input", "4,32"], "groupconv explain: error: --input 4,32 has 2 sizes; a "
     "2-D layer takes N,C,H,W or unbatched C,H,W\n"),
    (["explain", *LAYER, "--input", "1,2,3,4,5,6"], "groupconv explain: error: --input 1,2,3,4,5,6 has 6 sizes; a "
     "2-D layer takes N,C,H,W or unbatched C,H,W\n"),
    (["explain", *LAYER, "--input", "1,4,a,b"], "groupconv explain: error: argument --input: expected a shape such "
     "as 1,4,32,32, got '1,4,a,b' (see groupconv explain --help)"),
    (["explain", *LAYER, "--input", "1,4,0,32"], "groupconv explain: error: argument --input: expected sizes >= 1"),
    (["explain", *LAYER, "--input", "1,4,2,2"], "groupconv explain: error: input of size [1, 4, 2, 2] gives an "
     "output of size 0 in spatial dim 0"),
    (["explain", *LAYER, "--padding", "same", "--stride", "2"], "groupconv explain: error: padding='same' is not "
     "supported for strided convolutions"),
    (["explain", *LAYER, "--padding", "-1"], "groupconv explain: error: padding=-1 is invalid"),
    (["explain", *LAYER, "--stride", "0"], "groupconv explain: error: stride=0 is invalid"),
    (["explain", *LAYER, "--dilation", "0"], "groupconv explain: error: dilation=0 is invalid"),
    (["explain", *LAYER, "--output-padding", "1"], "groupconv explain: error: output_padding=(1, 1) is only for "
     "transposed convolution"),
    (["explain", *LAYER, "--padding-mode", "mirror"], "groupconv explain: error: argument --padding-mode: invalid "
     "choice: 'mirror'"),
    (["explain", *LAYER, "--dtype", "int8"], "groupconv explain: error: argument --dtype: invalid choice: 'int8'"),
    (["explain", *LAYER, "--dims", "4"], "groupconv explain: error: argument --dims: invalid choice: 4"),
    (["explain", *LAYER, "--in", "0"], "groupconv explain: error: in_channels=0 is invalid: in_channels must be "
     "an int >= 1"),
    (["explain", *LAYER, "--in", str(2**63)], "groupconv explain: error: in_channels=9223372036854775808 is too "
     "large"),
    (["diagram", *LAYER, "-o", "layer.gif"], "groupconv diagram: error: cannot draw to 'layer.gif': the file name "
     "must end in .png or .svg"),
    (["diagram", *LAYER], "groupconv diagram: error: the following arguments are required: -o/--output"),
    (["diagram", *LAYER, "-o", "empty"], "groupconv diagram: error: argument -o/--output: 'empty' is a folder"),
    (["diagram", *LAYER, "-o", "/proc/layer.png"], "groupconv diagram: error: argument -o/--output: cannot write "
     "'/proc/layer.png'"),
    # demo
    (["demo", "--size", "x"], "groupconv demo: error: argument --size: expected an int >= 1, got 'x'"),
    (["demo", "--size", "-3"], "groupconv demo: error: argument --size: expected an int >= 1, got -3"),
    (["demo", "--size", "2"], "groupconv demo: error: input of size [1, 4, 2, 2] gives an output of size 0"),
    (["demo", "--in-channels", "0"], "groupconv demo: error: in_channels=0 is invalid"),
    (["demo", "--kernel", "0"], "groupconv demo: error: kernel_size=0 is invalid"),
    (["demo", "--in-channels", "100000000"], "groupconv demo: error: the example's input needs 381.5 GiB, "
     "over the 0.5 GiB allowed; use fewer channels or a smaller --size\n"),
    (["demo", "--in-channels", "-4"], "groupconv demo: error: in_channels=-4 is invalid"),
    (["demo", "--in-channels", "100000000", "--out-channels", "0"], "groupconv demo: error: out_channels=0 is "
     "invalid"),  # the layer is checked before its sizes
    # summary and tune: models
    (["summary"], "groupconv summary: error: the following arguments are required: MODEL"),
    (["summary", "resnet"], "groupconv summary: error: unknown model 'resnet': use a built-in name"),
    (["summary", "alexnet", "--input", "1,3,28,28"], "groupconv summary: error: the model failed on an input of "
     "shape (1, 3, 28, 28): Given groups=1, weight of size [48, 1, 5, 5]"),
    (["summary", "alexnet", "--input=-1,1,28,28"], "groupconv summary: error: argument --input: expected sizes"),
    (["summary", "cli_models:build"], "groupconv summary: error: model 'cli_models:build' has no default input "
     "shape; give --input N,C,H,W"),
    (["summary", "no_such_package.models:build"], "groupconv summary: error: cannot import 'no_such_package.models': "
     "ModuleNotFoundError: No module named 'no_such_package'"),
    (["summary", "broken_models:build", "--input", "1,4,6,6"], "groupconv summary: error: cannot import "
     "'broken_models': RuntimeError: the GPU cluster is down"),
    (["summary", "cli_models:missing"], "groupconv summary: error: cli_models:missing: 'cli_models' has no attribute"),
    (["summary", "cli_models:NOT_CALLABLE"], "groupconv summary: error: cli_models:NOT_CALLABLE is a int"),
    (["summary", "alexnet", "--width", "0"], "groupconv summary: error: argument --width: expected a number > 0"),
    (["summary", "alexnet", "--width", "40"], "groupconv summary: error: argument --width: expected a number > 0 "
     "and <= 4, got 40"),
    (["summary", "resnext", "--width", "2"], "groupconv summary: error: --width: the built-in model 'resnext' has "
     "no width"),
    (["summary", "cli_models:build", "--width", "1"], "groupconv summary: error: --width applies to the built-in "
     "models only"),
    (["summary", "alexnet", "--input", "100000000,1,28,28"], "groupconv summary: error: --input 100000000,1,28,28 "
     "(with alexnet's activations) needs 28,"),
    (["summary", "alexnet", "--input", "1,1,28,99999999999999999999"], "groupconv summary: error: --input "
     "1,1,28,99999999999999999999 (with alexnet's activations) needs"),
    (["tune"], "groupconv tune: error: the following arguments are required: MODEL"),
    (["tune", "alexnet", "--input", "100000000,1,28,28"], "groupconv tune: error: --input 100000000,1,28,28 (with "
     "alexnet's activations) needs 147,"),
    (["tune", "cli_models:build"], "groupconv tune: error: model 'cli_models:build' has no default input shape"),
    (["tune", "broken_models:build"], "groupconv tune: error: cannot import 'broken_models': RuntimeError"),
    (["tune", "cli_models:build", "--input", "2,4,6,6"], "groupconv tune: error: the model failed on an input of "
     "shape (2, 4, 6, 6): mat1 and mat2 shapes cannot be multiplied"),
    # train: checked before any data is read or any step taken
    ([*TRAIN, "--lr", "-1"], "groupconv train: error: argument --lr: expected a number > 0, got -1"),
    ([*TRAIN, "--lr", "0"], "groupconv train: error: argument --lr: expected a number > 0, got 0"),
    ([*TRAIN, "--lr", "nan"], "groupconv train: error: argument --lr: expected a number > 0, got nan"),
    ([*TRAIN, "--lr", "inf"], "groupconv train: error: argument --lr: expected a number > 0, got inf"),
    (["train", "--epochs", "0"], "groupconv train: error: argument --epochs: expected an int >= 1, got 0"),
    (["train", "--epochs", "1.5"], "groupconv train: error: argument --epochs: expected an int >= 1, got '1.5'"),
    ([*TRAIN, "--batch-size", "0"], "groupconv train: error: argument --batch-size: expected an int >= 1, got 0"),
    ([*TRAIN, "--batch-size", str(10**23)], "groupconv train: error: argument --batch-size: expected an int >= 1 and "
     "<= 1,048,576, got 100000000000000000000000 (see groupconv train --help)"),
    ([*TRAIN, "--seed", str(2**64)], "groupconv train: error: argument --seed: expected an int >= 0 and <= "
     "18,446,744,073,709,551,615, got 18446744073709551616"),
    ([*TRAIN, "--seed", "-1"], "groupconv train: error: argument --seed: expected an int >= 0, got -1"),
    ([*TRAIN, "--epochs", str(2**63)], "groupconv train: error: argument --epochs: expected an int >= 1 and <= "
     "9,223,372,036,854,775,807"),
    ([*TRAIN, "--json"], "groupconv train: error: unrecognized arguments: --json (see groupconv train --help)\n"),
    ([*TRAIN, "--train-subset", "0"], "groupconv train: error: argument --train-subset: expected an int >= 1"),
    ([*TRAIN, "--train-subset", "-5"], "groupconv train: error: argument --train-subset: expected an int >= 1"),
    ([*TRAIN, "--test-subset", "0"], "groupconv train: error: argument --test-subset: expected an int >= 1"),
    ([*TRAIN, "--width", "0"], "groupconv train: error: argument --width: expected a number > 0"),
    ([*TRAIN, "--width", "40"], "groupconv train: error: argument --width: expected a number > 0 and <= 4"),
    ([*TRAIN, "--weight-decay", "-1"], "groupconv train: error: argument --weight-decay: expected a number >= 0"),
    ([*TRAIN, "--validation", "-1"], "groupconv train: error: argument --validation: expected an int >= 0"),
    ([*TRAIN, "--procs", "0"], "groupconv train: error: argument --procs: expected an int >= 1, got 0"),
    ([*TRAIN, "--groups", "0"], "groupconv train: error: groups=0 is invalid"),
    ([*TRAIN, "--model", "vgg"], "groupconv train: error: argument --model: invalid choice: 'vgg'"),
    ([*TRAIN, "--dataset", "cifar10"], "groupconv train: error: argument --dataset: invalid choice: 'cifar10'"),
    ([*TRAIN, "--out", "a_file"], "groupconv train: error: argument --out: 'a_file' is a file, not a folder"),
    ([*TRAIN, "--out", "/proc/run"], "groupconv train: error: argument --out: cannot write '/proc/run'"),
    # experiments
    (["experiment"], "groupconv experiment: error: the following arguments are required: EXPERIMENT"),
    (["experiment", "nosuch"], "groupconv experiment: error: argument EXPERIMENT: invalid choice: 'nosuch'"),
    ([*GROUPS, "--jobs", "0"], "groupconv experiment groups: error: argument --jobs: expected an int >= 1, got 0"),
    ([*GROUPS, "--epochs", "0"], "groupconv experiment groups: error: argument --epochs: expected an int >= 1"),
    ([*GROUPS, "--train-subset", "-1"], "groupconv experiment groups: error: argument --train-subset: expected an "
     "int >= 1"),
    ([*GROUPS, "--seeds", "-1"], "groupconv experiment groups: error: argument --seeds: expected an int >= 0"),
    ([*GROUPS, "--seeds", "0", str(2**64)], "groupconv experiment groups: error: argument --seeds: expected an int "
     ">= 0 and <= 18,446,744,073,709,551,615"),
    ([*GROUPS, "--out", "a_file"], "groupconv experiment groups: error: argument --out: 'a_file' is a file"),
    # filters: checkpoints
    (["filters", "missing.pt", "-o", "f.png"], "groupconv filters: error: no checkpoint at missing.pt"),
    (["filters", "empty", "-o", "f.png"], "groupconv filters: error: no checkpoint at empty/checkpoint.pt"),
    (["filters", "junk.pt", "-o", "f.png"], "groupconv filters: error: junk.pt is not a groupconv checkpoint (nor "
     "any file torch.save writes)"),
    (["filters", "some.png", "-o", "f2.png"], "groupconv filters: error: some.png is not a groupconv checkpoint (nor "
     "any file torch.save writes)"),
    (["filters", "code.pkl", "-o", "f.png"], "groupconv filters: error: refused to load code.pkl: it is not only "
     "tensors and plain values (Trying to load unsupported GLOBAL posix.system"),
    (["filters", "list.pt", "-o", "f.png"], "groupconv filters: error: list.pt is not a groupconv checkpoint"),
    (["filters", "crafted.pt", "-o", "f.png"], "groupconv filters: error: refused to load crafted.pt: it is not only "
     "tensors and plain values (Trying to load unsupported GLOBAL posix.system"),
    (["filters", "wide.pt", "-o", "f.png"], "groupconv filters: error: wide.pt: its weights do not fit its config "
     "(alexnet, width 40.0"),
    (["filters", "unknown.pt", "-o", "f.png"], "groupconv filters: error: unknown.pt: its config has fields this "
     "groupconv does not know: colour"),
    (["filters", "good.pt", "-o", "empty"], "groupconv filters: error: argument -o/--output: 'empty' is a folder"),
    (["filters", "good.pt", "--layer", "features.conv9", "-o", "f.png"], "groupconv filters: error:"),
    # group-parallel
    ([*PLAN, "--ranks", "0"], "groupconv parallel plan: error: argument --ranks: expected an int >= 1, got 0"),
    ([*PLAN, "--ranks", "4"], "groupconv parallel plan: error: cannot split features.conv2 (Conv2d 16->32, "
     "groups=2) across 4 ranks: each rank keeps whole groups, and 2 groups do not divide among 4. Use a multiple of 4 "
     "groups, or 1 or 2 ranks\n"),  # not the Python API's replicate=[...], which the command line cannot pass
    ([*TRAIN, "--groups", "2", "--procs", "3"], "groupconv train: error: cannot split features.conv2 (Conv2d 16->32, "
     "groups=2) across 3 ranks: each rank keeps whole groups, and 2 groups do not divide among 3. Use a multiple of 3 "
     "groups, or 1 or 2 ranks\n"),
    ([*PLAN, "--json"], "groupconv parallel plan: error: unrecognized arguments: --json (see groupconv parallel plan "
     "--help)\n"),
    ([*PLAN, "--width", "40"], "groupconv parallel plan: error: argument --width: expected a number > 0 and <= 4"),
    ([*PLAN, "--batch-size", "0"], "groupconv parallel plan: error: argument --batch-size: expected an int >= 1"),
    (["parallel", "bytes", "--batch-size", "10000000"], "groupconv parallel bytes: error: argument --batch-size: "
     "expected an int >= 1 and <= 1,048,576, got 10000000"),
    (["parallel", "bytes", "--batch-size", str(10**26)], "groupconv parallel bytes: error: argument --batch-size: "
     "expected an int >= 1 and <= 1,048,576, got 100000000000000000000000000 (see groupconv parallel bytes --help)\n"),
    ([*PLAN, "--model", "vgg"], "groupconv parallel plan: error: argument --model: invalid choice: 'vgg'"),
    (["parallel", "bytes", "--widths", "0.5", "0"], "groupconv parallel bytes: error: argument --widths: expected "
     "a number > 0"),
    (["parallel", "measure", "--steps", "1"], "groupconv parallel measure: error: argument --steps: expected an "
     "int >= 2, got 1"),
    (["parallel", "measure", "--warmup", "-1"], "groupconv parallel measure: error: argument --warmup: expected an "
     "int >= 0"),
    # bench
    (["bench", "--out", "empty"], "groupconv bench: error: argument --out: 'empty' is a folder; name a file"),
    (["bench", "--out", "/proc/bench.md"], "groupconv bench: error: argument --out: cannot write '/proc/bench.md'"),
]  # fmt: skip


@pytest.mark.parametrize(
    "argv, message", fast_every(BAD_ARGUMENTS, 4), ids=[" ".join(a) or "(none)" for a, _ in BAD_ARGUMENTS]
)
def test_bad_arguments_are_one_clear_line_and_exit_2(argv, message, workdir, capsys):
    before = sorted(path.name for path in workdir.iterdir())
    status, out, err = run(argv, capsys)
    assert (status, out) == (2, "")
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith(message), err
    assert sorted(path.name for path in workdir.iterdir()) == before  # nothing written


TOO_BIG = [  # (argv needing a few GiB, the fix its message gives)
    (["summary", "alexnet", "--input", "10000,1,28,28"], "use a smaller batch N or image"),
    (["tune", "alexnet", "--input", "2000,1,28,28"], "use a smaller batch N or image"),
    (["parallel", "measure", "--batch-size", "10000"], "use a smaller --batch-size"),
    (["train", "--batch-size", "20000", "--width", "1"], "use a smaller --batch-size or --width"),
]


@pytest.mark.parametrize("argv, fix", TOO_BIG, ids=lambda value: " ".join(value[:2]) if isinstance(value, list) else "")
def test_a_run_that_would_not_fit_in_memory_is_refused_before_any_output(argv, fix, workdir, capsys, monkeypatch):
    monkeypatch.setattr("groupconv.training.train.free_memory", lambda: 2**30)
    status, out, err = run(argv, capsys)
    assert (status, out) == (2, "")
    assert err.count("\n") == 1 and err.endswith(f"more than the 1.0 GiB of memory free; {fix}\n"), err


def test_memory_running_out_mid_run_is_one_line(workdir, capsys, monkeypatch):
    """An allocation that fails despite the estimate (another process took the memory) is one line, exit 2."""

    def allocate(*args, **kwargs):
        torch.empty(2**62, dtype=torch.uint8)  # PyTorch's CPU allocator refuses 4 EiB

    monkeypatch.setattr("groupconv.training.train.train", allocate)
    status, out, err = run(["train", "--epochs", "1"], capsys)
    assert (status, out) == (2, "")
    assert (
        err == "groupconv train: error: out of memory: an allocation of 4,294,967,296.0 GiB failed; use a smaller "
        "batch, input or model\n"
    ), err


# Conv2d(4, 8, 3, groups=2) -> Flatten -> Linear(32, 3) on 2,4,4,4: float32 input 128 numbers, outputs 64, 64, 6
SUMMARY_BYTES = 4 * (128 + 2 * 64)  # the input, and the largest output read and written
TUNE_BYTES = 4 * (128 + 2 * (64 + 64 + 6))  # the input, and every output kept for backward, with its gradient


@pytest.mark.parametrize("command, needed", [("summary", SUMMARY_BYTES), ("tune", TUNE_BYTES)])
def test_the_memory_estimate_is_the_input_and_the_activations(command, needed, workdir, capsys, monkeypatch):
    from groupconv.cli.common import check_model_fits
    from groupconv.reports.summary import load_model

    model, _ = load_model("cli_models:build")
    monkeypatch.setattr("groupconv.training.train.free_memory", lambda: needed)
    check_model_fits(model, (2, 4, 4, 4), "--input 2,4,4,4", "fix", training=command == "tune")  # fits, just
    monkeypatch.setattr("groupconv.training.train.free_memory", lambda: needed - 1)
    status, out, err = run([command, "cli_models:build", "--input", "2,4,4,4"], capsys)
    assert (status, out) == (2, "") and "more than the 0.0 GiB of memory free" in err, err


def test_parallel_bytes_at_the_largest_batch_is_arithmetic_not_an_allocation(capsys):
    """Bytes scale with the batch: group-parallel's by 2**20 / 128, data-parallel's (gradients) not at all."""
    rows = {}
    for batch in (128, 2**20):
        status, out, _ = run(["parallel", "bytes", "--batch-size", str(batch), "--widths", "0.125"], capsys)
        assert status == 0
        rows[batch] = [int(cell.replace(",", "")) for cell in out.splitlines()[-1].split("|")[2:4]]
    assert rows[2**20] == [rows[128][0] * 2**20 // 128, rows[128][1]]


def test_the_largest_seed_is_the_largest_torch_takes():
    from groupconv.cli.common import MAX_SEED

    torch.Generator().manual_seed(MAX_SEED)
    with pytest.raises(ValueError, match="Overflow"):
        torch.Generator().manual_seed(MAX_SEED + 1)


@pytest.mark.parametrize("experiment", ["groups", "specialisation", "cardinality", "shuffle"])
def test_report_only_without_finished_runs_refuses_and_keeps_the_report(experiment, workdir, capsys):
    """Seeds with no finished run: nothing to report, so the report of the runs that did finish stays."""
    out = workdir / "exp"
    (out / "runs").mkdir(parents=True)
    (out / f"{experiment}.md").write_text("the real report\n")
    status, stdout, err = run(["experiment", experiment, "--out", "exp", "--report-only", "--seeds", "5"], capsys)
    message = "no finished runs for seeds 5 in exp/runs; train them first, or name seeds that have"
    assert (status, stdout, err) == (2, "", f"groupconv experiment {experiment}: error: {message}\n")
    assert {path.name for path in out.iterdir()} == {f"{experiment}.md", "runs"}
    assert (out / f"{experiment}.md").read_text() == "the real report\n"


def test_ctrl_c_while_the_parser_is_built_is_one_line(monkeypatch, capsys):
    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr("groupconv.cli.main._build_parser", interrupted)
    assert run(["demo"], capsys) == (130, "", "groupconv: interrupted\n")


def test_version_is_one_line_on_stdout(capsys):
    status, out, err = run(["--version"], capsys)
    assert status == 0 and err == "" and out.startswith("groupconv ") and out.count("\n") == 1


def test_a_local_module_does_not_shadow_an_installed_package(workdir, capsys):
    """A ``json.py`` in the current directory must not run in place of the standard library's json."""
    (workdir / "json.py").write_text("raise SystemExit('the local json.py ran')\n")
    status, _, err = run(["summary", "json:JSONDecoder"], capsys)
    assert status == 2 and "the local json.py ran" not in err
    assert err.startswith("groupconv summary: error: json:JSONDecoder gave a JSONDecoder, not a torch.nn.Module")


def _default_sigint() -> None:
    """Ctrl-C's default action in the child: a shell's background job (nohup, CI runners) inherits it ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_ctrl_c_is_one_line_and_exit_130(tmp_path):
    """SIGINT to a long command (tuning a model from scratch): status 130 and one line, no traceback."""
    command = [Path(sys.executable).with_name("groupconv"), "tune", "mobilenet", "--input", "64,1,28,28", "--retune"]
    env = {**os.environ, "GROUPCONV_CACHE": str(tmp_path / "tune.json")}
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=_default_sigint
    )
    time.sleep(6)  # past the imports: in the middle of the timing
    assert process.poll() is None, "the command ended before it could be interrupted"
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert err.splitlines()[-1:] == ["groupconv: interrupted"] and "Traceback" not in err


@pytest.mark.slow
def test_groupconvs_warnings_are_their_line_alone(tmp_path):
    """An unusable cache warns in one line: no source file, line number and code behind it."""
    (tmp_path / "tune.json").mkdir()
    command = [Path(sys.executable).with_name("groupconv"), "tune", "shufflenet", "--input", "1,1,8,8", "--json"]
    env = {**os.environ, "GROUPCONV_CACHE": str(tmp_path / "tune.json")}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    warned = [line for line in done.stderr.splitlines() if "tuning cache" in line]
    assert done.returncode == 0 and len(warned) == 1
    assert warned[0].startswith("groupconv: the tuning cache") and "UserWarning" not in done.stderr


@pytest.mark.slow
def test_a_path_the_terminal_cannot_encode_is_escaped_not_an_error(tmp_path):
    """A cache path that is no UTF-8 (bytes 0xff) under a strict UTF-8 stdout: the report printed, exit 0 (it was
    exit 2, "'utf-8' codec can't encode", after the tuning had succeeded)."""
    command = [Path(sys.executable).with_name("groupconv"), "tune", "shufflenet", "--input", "1,1,8,8"]
    env = {**os.environ, "GROUPCONV_CACHE": os.fsdecode(bytes(tmp_path) + b"/t\xff.json"), "PYTHONIOENCODING": "utf-8"}
    done = subprocess.run(command, capture_output=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
