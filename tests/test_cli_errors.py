"""Every bad command line is one line on stderr, exit status 2, no traceback, nothing written; Ctrl-C is 130.

Run in-process through ``groupconv.cli.main`` (fast); only Ctrl-C needs a real process to signal.
"""

from __future__ import annotations

import dataclasses
import os
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
    checkpoints (a good one, a crafted one, one that is not a checkpoint)."""
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
    (["explain", *LAYER, "--groups", "-2"], "groupconv explain: error: groups=-2 is invalid"),
    (["explain", "--in", "four", "--out", "8", "--kernel", "3"], "groupconv explain: error: argument "
     "--in/--in-channels: invalid int value: 'four' (see groupconv explain --help)"),
    (["explain", "--in", "4", "--out", "8", "--kernel", "3,x"], "groupconv explain: error: argument "
     "--kernel/--kernel-size: expected an int or comma-separated ints, got '3,x' (see groupconv explain --help)"),
    (["explain", "--in", "4", "--out", "8", "--kernel", "0"], "groupconv explain: error: kernel_size=0 is invalid"),
    (["explain", *LAYER, "--input", "1,5,32,32"], "groupconv explain: error: Given groups=1, weight of size "
     "[8, 4, 3, 3], expected input[1, 5, 32, 32] to have 4 channels, but got 5 channels instead"),
    (["explain", *LAYER, "--dims", "2", "--input", "1,4,32"], "groupconv explain: error: --input 1,4,32 has 3 "
     "sizes; a 2-D convolution takes N,C,H,W (4 sizes)"),
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
    (["demo", "--in-channels", "100000000"], "groupconv demo: error: the example's input would hold "
     "102,400,000,000 numbers"),
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
    (["tune"], "groupconv tune: error: the following arguments are required: MODEL"),
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
    ([*GROUPS, "--out", "a_file"], "groupconv experiment groups: error: argument --out: 'a_file' is a file"),
    # filters: checkpoints
    (["filters", "missing.pt", "-o", "f.png"], "groupconv filters: error: no checkpoint at missing.pt"),
    (["filters", "empty", "-o", "f.png"], "groupconv filters: error: no checkpoint at empty/checkpoint.pt"),
    (["filters", "junk.pt", "-o", "f.png"], "groupconv filters: error: refused to load junk.pt: it is not only "
     "tensors and plain values (Unsupported operand"),
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
    ([*PLAN, "--ranks", "4"], "groupconv parallel: error: cannot split features.conv2 (Conv2d 16->32, groups=2) "
     "across 4 ranks"),
    ([*PLAN, "--width", "40"], "groupconv parallel plan: error: argument --width: expected a number > 0 and <= 4"),
    ([*PLAN, "--batch-size", "0"], "groupconv parallel plan: error: argument --batch-size: expected an int >= 1"),
    ([*PLAN, "--model", "vgg"], "groupconv parallel plan: error: argument --model: invalid choice: 'vgg'"),
    (["parallel", "bytes", "--widths", "0.5", "0"], "groupconv parallel bytes: error: argument --widths: expected "
     "a number > 0"),
    (["parallel", "measure", "--steps", "0"], "groupconv parallel measure: error: argument --steps: expected an "
     "int >= 1"),
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
