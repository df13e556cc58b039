"""The ``complaint-triage`` command: train, evaluate, score, serve, bench, data-stats.

Heavy imports happen inside each subcommand so that ``serve`` and ``score`` never load torch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Sequence


def _train(args: argparse.Namespace) -> int:
    from training.config import config_from_args
    from training.pipeline import build

    build(config_from_args(args))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from training.cli_eval import run_evaluate

    return run_evaluate(args)


def _backbone(args: argparse.Namespace) -> int:
    from training.backbone import resolve

    bb = resolve(args.name)
    print(bb.path)
    return 0


def _data_stats(args: argparse.Namespace) -> int:
    from training.stats import main as stats_main

    return stats_main(args)


def _score(args: argparse.Namespace) -> int:
    from service.batch.job import main as batch_main

    return batch_main(args)


def _serve(args: argparse.Namespace) -> int:
    from service.api.server import main as serve_main

    return serve_main(args)


def _bench(args: argparse.Namespace) -> int:
    from tools.bench import main as bench_main

    return bench_main(args)


def build_parser() -> argparse.ArgumentParser:
    """All subcommands and their flags."""
    from training.config import add_config_args

    parser = argparse.ArgumentParser(prog="complaint-triage", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    commands: dict[str, tuple[Callable[[argparse.Namespace], int], str]] = {
        "train": (_train, "fine-tune, export, quantise and evaluate: writes a bundle"),
        "evaluate": (_evaluate, "evaluate a bundle (default: test + challenge splits, or --data FILE)"),
        "backbone": (_backbone, "resolve/convert a backbone and print its directory"),
        "data-stats": (_data_stats, "print corpus counts per label x language x split"),
        "score": (_score, "score a file of messages (JSONL/CSV/Parquet) locally or on Ray"),
        "serve": (_serve, "run the HTTP API"),
        "bench": (_bench, "benchmark the service, raw ONNX Runtime, torch and the batch CLI"),
    }
    for name, (func, help_text) in commands.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=func)
        if name == "train":
            add_config_args(p)
    _add_evaluate_args(sub.choices["evaluate"])
    sub.choices["backbone"].add_argument("name", nargs="?", default="multilingual-e5-small")
    _add_stats_args(sub.choices["data-stats"])
    from service.api.server import add_args as add_serve_args
    from service.batch.job import add_args as add_score_args
    from tools.bench import add_args as add_bench_args

    add_score_args(sub.choices["score"])
    add_serve_args(sub.choices["serve"])
    add_bench_args(sub.choices["bench"])
    return parser


def _add_evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", "--bundle", dest="bundle", default="artifacts/bundle", type=Path)
    p.add_argument("--data", nargs="+", default=None, help="labeled file(s); default: the corpus test split")
    p.add_argument("--corpus", nargs="+", default=["data/corpus"], help="training corpus (splits, baseline)")
    p.add_argument("--challenge", default="data/challenge")
    p.add_argument("--output", type=Path, default=None, help="write the metrics JSON here")
    for col in ("text", "severity", "private_followup", "sentiment", "lang", "id"):
        p.add_argument(f"--{col.replace('_', '-')}-col", dest=f"col_{col}", default=None)


def _add_stats_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corpus", nargs="+", default=["data/corpus"])
    p.add_argument("--challenge", default="data/challenge")
    p.add_argument("--write-readme", type=Path, default=None,
                   help="replace the generated block of this data card with fresh counts")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
