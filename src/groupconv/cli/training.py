"""``groupconv train``, ``groupconv experiment`` and ``groupconv filters``.

Each subcommand sets ``args.run``; errors are ``GroupConvError``s, which ``cli.main``
prints as one line.
"""

from __future__ import annotations

import argparse

from ..training.train import MODELS, TrainConfig
from .common import add_command

_DEFAULTS = TrainConfig()


def register(commands) -> None:
    """Add ``train``, ``experiment groups|specialisation`` and ``filters`` to ``commands`` (argparse subparsers)."""
    _add_train(commands)
    experiment = add_command(
        commands,
        "experiment",
        "the claims of A Deeper Understanding of Grouped Convolution, trained and measured",
        "Run one of the Grouped Convolution post's experiments.",
    )
    kinds = experiment.add_subparsers(dest="experiment", required=True, metavar="EXPERIMENT")
    _add_groups(kinds)
    _add_specialisation(kinds)
    _add_filters(commands)


def _add_train(commands) -> None:
    train = add_command(
        commands,
        "train",
        "train a model on Fashion-MNIST or the emoji set",
        "Train one model with a progress bar; print each epoch's training loss and validation error (the error "
        "on the data set's test split); with --out, write DIR/checkpoint.pt and DIR/metrics.json. The same "
        "arguments and seed give the same numbers on the same machine and thread count.",
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


def _training_arguments(parser: argparse.ArgumentParser, dataset: bool = True, **defaults) -> None:
    """The arguments every training command shares; ``defaults`` overrides TrainConfig's."""
    value = lambda name: defaults.get(name, getattr(_DEFAULTS, name))
    if dataset:
        parser.add_argument("--dataset", default=value("dataset"), choices=("fashion-mnist", "emoji"),
                            help="(default: %(default)s)")  # fmt: skip
    parser.add_argument("--epochs", type=int, default=value("epochs"), help="(default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=value("batch_size"), help="(default: %(default)s)")
    parser.add_argument("--lr", type=float, default=value("lr"), help="Adam's learning rate (default: %(default)s)")
    parser.add_argument("--width", type=float, default=value("width"),
                        help="channel multiplier on AlexNet's 96-256-384-384-256 (default: %(default)s)")  # fmt: skip
    parser.add_argument("--train-subset", type=int, metavar="N", default=value("train_subset"),
                        help="train on N random images, a new draw per seed (default: all of them)")  # fmt: skip
    parser.add_argument("--test-subset", type=int, metavar="N", default=value("test_subset"),
                        help="measure the error on N test images (default: the whole test split)")  # fmt: skip
    parser.add_argument("--data-dir", metavar="DIR",
                        help="where the data files are (default: where the Debian packages install them)")  # fmt: skip


def _experiment_arguments(parser: argparse.ArgumentParser, out: str, groups: list[int]) -> None:
    parser.add_argument(
        "--out", default=out, metavar="DIR", help="runs, tables and figures go here (default: %(default)s)"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], metavar="S", help="(default: 0 1 2)")
    parser.add_argument("--groups", type=int, nargs="+", default=groups, metavar="G",
                        help=f"group counts (default: {' '.join(map(str, groups))})")  # fmt: skip
    parser.add_argument("--jobs", type=int, default=1, metavar="J",
                        help="runs trained at once, one process each, sharing the threads (default: 1)")  # fmt: skip


def _add_groups(kinds) -> None:
    groups = add_command(
        kinds,
        "groups",
        "AlexNet with 1, 2, 4 filter groups: error, parameters, MACs, time",
        "Train AlexNet with each group count over several seeds on Fashion-MNIST; write groups.md (validation error "
        "mean ± std, parameters, MACs per image, seconds per epoch, beside the published ImageNet AlexNet table), "
        "groups.json and groups.png to --out, and each run to --out/runs/. Finished runs are reused, so an "
        "interrupted experiment resumes.",
        """examples:
  groupconv experiment groups                                   # 3 seeds x 5 epochs x 60k images per group count
  groupconv experiment groups --train-subset 20000 --jobs 2     # docs/experiments.md's run""",
    )
    _experiment_arguments(groups, "experiments/groups", [1, 2, 4])
    _training_arguments(groups, dataset=False)
    groups.set_defaults(run=_groups)


def _add_specialisation(kinds) -> None:
    specialisation = add_command(
        kinds,
        "specialisation",
        "do conv1's filters split into grey and colour by group? (emoji)",
        "Train AlexNet with 2 filter groups (and a groups=1 control) on the colour emoji set over several seeds; "
        "per conv1 filter, measure the share of its energy outside the grey direction of its RGB weights; test "
        "the difference between the filters feeding group 1 and group 2 against random splits of the same "
        "filters (permutation p-value); write specialisation.md, specialisation.json and one figure of conv1's "
        "filters per run to --out.",
        """examples:
  groupconv experiment specialisation
  groupconv experiment specialisation --seeds 0 1 2 3 --epochs 30 --jobs 2""",
    )
    _experiment_arguments(specialisation, "experiments/specialisation", [2, 1])
    specialisation.add_argument("--permutations", type=int, default=10000, metavar="P",
                                help="random splits for the p-value (default: %(default)s)")  # fmt: skip
    _training_arguments(specialisation, dataset=False, epochs=15, batch_size=64)
    specialisation.set_defaults(run=_specialisation)


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
    filters.add_argument("-o", "--output", required=True, metavar="FILE", help="the image to write (.png, .svg, .pdf)")
    filters.set_defaults(run=_filters)


def _config(args: argparse.Namespace, **fields) -> dict:
    """The TrainConfig fields the shared training arguments set, plus ``fields``."""
    names = ("epochs", "batch_size", "lr", "width", "train_subset", "test_subset")
    return {**{name: getattr(args, name) for name in names}, **fields}


def _train(args: argparse.Namespace) -> None:
    from ..training.train import train

    config = TrainConfig(model=args.model, groups=args.groups, dataset=args.dataset, seed=args.seed, **_config(args))
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
    last = result.history[-1]
    where = f"; wrote {args.out}/checkpoint.pt and metrics.json" if args.out else ""
    print(f"validation error {100 * last.val_error:.2f}% after {last.epoch} epochs{where}")


def _groups(args: argparse.Namespace) -> None:
    from ..training.experiments import groups

    rows = groups.run(args.out, args.groups, args.seeds, args.jobs, args.data_dir, **_config(args))
    print(groups.table(rows))
    print(f"\nwrote {args.out}/groups.md, groups.json, groups.png")


def _specialisation(args: argparse.Namespace) -> None:
    from ..training.experiments import specialisation

    report = specialisation.run(
        args.out, args.groups, args.seeds, args.jobs, args.data_dir, args.permutations, **_config(args)
    )
    print(report)
    print(f"\nwrote {args.out}/specialisation.md, specialisation.json and the conv1 figures")


def _filters(args: argparse.Namespace) -> None:
    from ..training.filters import draw_filters
    from ..training.train import load_checkpoint

    model, config = load_checkpoint(args.checkpoint)
    drawn = draw_filters(model, args.layer, args.output, title=f"{config.model} groups={config.groups} {args.layer}")
    print(f"wrote {args.output}: {drawn}")
