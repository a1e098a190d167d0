"""``groupconv train``, ``groupconv experiment`` and ``groupconv filters``.

Each subcommand sets ``args.run``; errors are ``GroupConvError``s, which ``cli.main``
prints as one line.
"""

from __future__ import annotations

import argparse

from ..training.data import DATASETS
from ..training.train import MODELS, SCHEDULES, TrainConfig
from .common import add_command, check_training_fits

_DEFAULTS = TrainConfig()


def register(commands) -> None:
    """Add ``train``, ``experiment <name>`` and ``filters`` to ``commands`` (argparse subparsers)."""
    _add_train(commands)
    experiment = add_command(
        commands,
        "experiment",
        "the claims of A Deeper Understanding of Grouped Convolution, trained and measured",
        "Run one of the Grouped Convolution post's experiments.",
        """examples:
  groupconv experiment groups --jobs 2                 # AlexNet at 1, 2 and 4 groups: docs/experiments.md
  groupconv experiment shuffle --help                  # one experiment's options""",
    )
    kinds = experiment.add_subparsers(dest="experiment", required=True, metavar="EXPERIMENT")
    _add_experiments(kinds)
    _add_filters(commands)


def _add_train(commands) -> None:
    train = add_command(
        commands,
        "train",
        "train a model on Fashion-MNIST, the emoji set or photo patches",
        "Train one model with a progress bar; print each epoch's training loss and, with --validation N, the "
        "error on N held-out training images; measure the test split once at the end; with --out, write "
        "DIR/checkpoint.pt and DIR/metrics.json (config, errors, commit, versions). The same arguments and seed "
        "give the same numbers with the same code and convolution routes on the same machine and thread count.",
        """examples:
  groupconv train --model alexnet --groups 2 --dataset fashion-mnist --epochs 5 --seed 0 --out runs/g2
  groupconv train --dataset emoji --groups 2 --epochs 15 --batch-size 64 --out runs/emoji-g2
  groupconv train --epochs 1 --train-subset 2000 --test-subset 1000    # a quick look
  groupconv train --groups 2 --procs 2                                 # split by groups across 2 processes
  torchrun --nproc-per-node 2 -m groupconv train --groups 2 --group-parallel""",
    )
    train.add_argument("--model", default=_DEFAULTS.model, choices=list(MODELS), help="(default: %(default)s)")
    train.add_argument(
        "--groups",
        type=int,
        default=_DEFAULTS.groups,
        metavar="G",
        help="AlexNet's filter groups in conv2/4/5, ResNeXt's cardinality or ShuffleNet's groups (default: 1)",
    )
    train.add_argument(
        "--seed", type=int, default=_DEFAULTS.seed, help="initial weights, batch order, dropout (default: 0)"
    )
    _training_arguments(train)
    train.add_argument("--out", metavar="DIR", help="write checkpoint.pt and metrics.json here")
    _group_parallel_arguments(train)
    train.set_defaults(run=_train)


def _group_parallel_arguments(train: argparse.ArgumentParser) -> None:
    parallel = train.add_argument_group("group-parallel (docs/parallel.md)")
    parallel.add_argument("--group-parallel", action="store_true",
                          help="split the model by its groups across torchrun's processes")  # fmt: skip
    parallel.add_argument("--procs", type=int, default=1, metavar="R",
                          help="start R processes here and train group-parallel across them (default: 1)")  # fmt: skip


def _training_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments that set TrainConfig's recipe fields."""
    parser.add_argument("--dataset", default=_DEFAULTS.dataset, choices=list(DATASETS),
                        help="(default: %(default)s)")  # fmt: skip
    parser.add_argument("--epochs", type=int, default=_DEFAULTS.epochs, help="(default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=_DEFAULTS.batch_size, help="(default: %(default)s)")
    parser.add_argument("--lr", type=float, default=_DEFAULTS.lr,
                        help="AdamW's learning rate (a one-cycle schedule's peak) (default: %(default)s)")  # fmt: skip
    parser.add_argument("--weight-decay", type=float, default=_DEFAULTS.weight_decay,
                        help="AdamW's decoupled weight decay (default: %(default)s)")  # fmt: skip
    parser.add_argument("--schedule", default=_DEFAULTS.schedule, choices=SCHEDULES, help="(default: %(default)s)")
    parser.add_argument("--augment", action="store_true", help="shift images by up to 2 pixels and mirror half")
    parser.add_argument("--greyscale", action="store_true", help="train and test on grey copies of colour images")
    parser.add_argument("--width", type=float, default=_DEFAULTS.width,
                        help="channel multiplier on AlexNet's 96-256-384-384-256 (default: %(default)s)")  # fmt: skip
    parser.add_argument("--validation", type=int, default=_DEFAULTS.validation, metavar="N",
                        help="hold N training images out for the per-epoch validation error (default: 0)")  # fmt: skip
    parser.add_argument("--train-subset", type=int, metavar="N", default=_DEFAULTS.train_subset,
                        help="train on N random images, a new draw per seed (default: all of them)")  # fmt: skip
    parser.add_argument("--test-subset", type=int, metavar="N", default=_DEFAULTS.test_subset,
                        help="measure the test error on N test images (default: the whole test split)")  # fmt: skip
    parser.add_argument("--data-dir", metavar="DIR",
                        help="where the data files are (default: where the Debian packages install them)")  # fmt: skip


def _add_experiments(kinds) -> None:
    """One subcommand per experiment module, each with the same arguments."""
    from ..training.experiments import EXPERIMENTS

    for name, (summary, description) in EXPERIMENTS.items():
        parser = add_command(kinds, name, summary, description + _EXPERIMENT_EPILOGUE, _experiment_examples(name))
        parser.add_argument("--out", default=f"docs/experiments/{name}", metavar="DIR",
                            help="runs, tables and figures go here (default: %(default)s)")  # fmt: skip
        parser.add_argument("--seeds", type=int, nargs="+", metavar="S", help="(default: the experiment's)")
        parser.add_argument("--jobs", type=int, default=1, metavar="J",
                            help="runs trained at once, one process and one thread each (default: 1)")  # fmt: skip
        parser.add_argument("--report-only", action="store_true",
                            help="train nothing: write the tables and figures from the finished runs")  # fmt: skip
        parser.add_argument("--epochs", type=int, metavar="E", help="override the recipe's epochs (a quick look)")
        parser.add_argument("--train-subset", type=int, metavar="N",
                            help="override: train on N random images (a quick look)")  # fmt: skip
        parser.add_argument("--data-dir", metavar="DIR", help="where the data files are (default: the packages')")
        parser.set_defaults(run=_experiment)


_EXPERIMENT_EPILOGUE = (
    " Finished runs are reused (an interrupted experiment resumes); the runs go to --out/runs/, one folder each "
    "with its metrics.json. Without overrides this is exactly docs/experiments.md's protocol."
)


def _experiment_examples(name: str) -> str:
    return f"""examples:
  nice -n 19 groupconv experiment {name} --jobs 2          # docs/experiments.md's runs
  groupconv experiment {name} --report-only                # tables and figures from the finished runs
  groupconv experiment {name} --out /tmp/{name} --epochs 1 --train-subset 2000 --seeds 0   # a quick look"""


def _add_filters(commands) -> None:
    filters = add_command(
        commands,
        "filters",
        "draw a trained layer's filters, arranged by group",
        "Draw every filter of one convolution layer of a checkpoint, one block per group. A layer without groups "
        "of its own (like AlexNet's conv1) is split by the groups of the next convolution, the one its outputs "
        "feed. Filters with 3 input channels are drawn in colour, 1 in grey, more as their mean over inputs.",
        """examples:
  groupconv filters runs/emoji-g2/checkpoint.pt --layer features.conv1 -o conv1.png
  groupconv filters runs/g2 --layer features.conv2 -o conv2.png""",
    )
    filters.add_argument("checkpoint", metavar="CHECKPOINT", help="checkpoint.pt, or the --out folder of a run")
    filters.add_argument("--layer", default="features.conv1", help="the convolution's name (default: %(default)s)")
    filters.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="FILE",
        help="the image to write, in the format its name ends in (.png, .svg, .pdf, ...)",
    )
    filters.set_defaults(run=_filters)


def _config(args: argparse.Namespace, **fields) -> dict:
    """The TrainConfig fields the training arguments set, plus ``fields``."""
    names = ("epochs", "batch_size", "lr", "weight_decay", "schedule", "augment", "greyscale", "width", "validation",
             "train_subset", "test_subset")  # fmt: skip
    return {**{name: getattr(args, name) for name in names}, **fields}


def _train(args: argparse.Namespace) -> None:
    from ..training.train import train

    config = TrainConfig(model=args.model, groups=args.groups, dataset=args.dataset, seed=args.seed, **_config(args))
    what = f"--batch-size {config.batch_size} (with {config.model}'s activations at --width {config.width})"
    check_training_fits(config, what, "use a smaller --batch-size or --width")
    if args.procs > 1 and not args.group_parallel:  # start R processes, each running this command group-parallel
        from ..parallel import training

        training.spawn(_train, args.procs, config, argparse.Namespace(**{**vars(args), "group_parallel": True}))
        return
    wrap, lead = (None, True)
    if args.group_parallel:
        from ..parallel import training

        wrap, lead = training.join(config)
    result = train(config, args.out if lead else None, args.data_dir, progress=lead, wrap=wrap)
    if not lead:
        return
    where = f"; wrote {args.out}/checkpoint.pt and metrics.json" if args.out else ""
    print(f"test error {100 * result.test_error:.2f}% after {result.history[-1].epoch} epochs{where}")


def _experiment(args: argparse.Namespace) -> None:
    from ..training.experiments import run_experiment

    overrides = {name: getattr(args, name) for name in ("epochs", "train_subset") if getattr(args, name) is not None}
    report = run_experiment(
        args.experiment, args.out, args.seeds, args.jobs, args.data_dir, train=not args.report_only, **overrides
    )
    print(report.tables())
    print(f"\nwrote {args.out}/{args.experiment}.md, {args.experiment}.json and the figures")


def _filters(args: argparse.Namespace) -> None:
    from ..training.filters import draw_filters
    from ..training.train import load_checkpoint

    model, config = load_checkpoint(args.checkpoint)
    drawn = draw_filters(model, args.layer, args.output, title=f"{config.model} groups={config.groups} {args.layer}")
    print(f"wrote {args.output}: {drawn}")
