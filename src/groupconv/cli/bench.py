"""``groupconv bench``: the benchmark report, docs/benchmarks.md."""

from __future__ import annotations

import argparse
import shlex

from .common import JSON_HELP, add_command, positive_int, writable_file

DEFAULT_OUT = "docs/benchmarks.md"
DEFAULT_RUNS = 3
_DESCRIPTION = (
    "Measure groupconv on this machine and write a Markdown report with a plot: the machine's floors (a large "
    "SGEMM's GFLOP/s, a large copy's GB/s); a group sweep (256->256, 3x3, 28x28, batch 8, groups 1 to 256); a zoo "
    "of real grouped layers (AlexNet, ResNeXt-50, ShuffleNet, MobileNetV2, ConvNeXt, RegNet, 1-D, 3-D, "
    "transposed); each forward and forward+backward, groupconv and PyTorch each in channels-first and "
    "channels-last, forward against ONNX Runtime and OpenVINO, with each layer's roofline floor; a training step "
    "of three networks against PyTorch in both layouts (zoo and steps: --runs times, each tuned afresh); "
    "and each library's first call in a fresh process. Takes "
    "about 30 minutes on 2 cores; keep the machine otherwise idle. Threads: "
    "torch.get_num_threads() (set OMP_NUM_THREADS to change them)."
)
_EXAMPLES = """examples:
  groupconv bench                          # the full run, writes docs/benchmarks.md and docs/images/
  groupconv bench --quick --out /tmp/b.md  # tiny layers and few repeats: seconds, to check it works
  groupconv bench --json > bench.json      # the numbers as JSON too; the report is written all the same"""


def register(commands) -> None:
    """Add ``bench`` to ``commands`` (argparse subparsers)."""
    bench = add_command(
        commands,
        "bench",
        "time groupconv against PyTorch, ONNX Runtime and the machine's floors",
        _DESCRIPTION,
        _EXAMPLES,
    )
    bench.add_argument(
        "--out",
        type=writable_file,
        default=DEFAULT_OUT,
        metavar="FILE",
        help="the Markdown report to write; the plot goes to images/bench-groups.png beside it (default: %(default)s)",
    )
    bench.add_argument("--quick", action="store_true", help="tiny layers and few repeats (seconds): a smoke test")
    bench.add_argument(
        "--runs",
        type=positive_int,
        default=DEFAULT_RUNS,
        metavar="N",
        help="measure the zoo and the training steps N times, each tuned afresh; the report shows the median run "
        "(default: %(default)s)",
    )
    bench.add_argument("--json", action="store_true", help=JSON_HELP)
    bench.set_defaults(run=_bench)


def _bench(args: argparse.Namespace) -> None:
    from ..bench import run, write
    from ..reports.formats import to_json

    results = run(quick=args.quick, command=_command_line(args), runs=args.runs)
    report, plot = write(results, args.out)
    if args.json:
        print(to_json(results.to_dict()))
    else:
        print(f"wrote {report} and {plot} in {results.wall_s:.0f} s")


def _command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this run, for the report."""
    words = ["groupconv", "bench", *(["--quick"] if args.quick else [])]
    if args.runs != DEFAULT_RUNS:
        words += ["--runs", str(args.runs)]
    if args.out != DEFAULT_OUT:
        words += ["--out", args.out]
    return shlex.join(words)
