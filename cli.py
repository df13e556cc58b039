"""The ``complaint-triage`` command: train, evaluate, backbone, data-stats, score, serve, feedback.

The composition root, and the only module that imports both ``service`` and ``training``: it
parses the command line, calls one function per subcommand, and maps every error the same way
(``complaint-triage <command>: <message>`` on stderr, no traceback, the exit status of
:class:`service.errors.TriageError`). Heavy imports happen inside the subcommand that needs them:
building the parser loads no onnxruntime and no torch, and ``serve``/``score`` never load torch.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from service.errors import Interrupted, TriageError, UsageError


@contextmanager
def _training_errors() -> Iterator[None]:
    """training/ cannot import service/: its user-facing errors become UsageErrors here."""
    from training.data import DataError

    try:
        yield
    except DataError as exc:
        raise UsageError(str(exc)) from None


def _train(args: argparse.Namespace) -> int:
    from training.config import config_from_args

    try:  # checked before torch is imported: a typo costs no start-up time
        cfg = config_from_args(args)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.dry_run:
        from training.sources import dry_run

        with _training_errors():
            return dry_run(cfg)
    from training.pipeline import build

    with _training_errors():
        build(cfg)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from training.cli_eval import run_evaluate

    with _training_errors():
        return run_evaluate(args)


def _backbone(args: argparse.Namespace) -> int:
    from training.backbone import resolve

    try:
        bb = resolve(args.name)
    except (RuntimeError, OSError, ValueError) as exc:  # a missing package, not a model dir, offline hub
        raise UsageError(str(exc)) from None
    print(bb.path)
    return 0


def _data_stats(args: argparse.Namespace) -> int:
    from training.stats import main as stats_main

    try:
        return stats_main(args)
    except (OSError, ValueError) as exc:  # a missing corpus, a data card without the stats block
        raise UsageError(str(exc)) from None


def _score(args: argparse.Namespace) -> int:
    from service.batch.config import from_args
    from service.batch.job import run

    return run(from_args(args))


def _feedback(args: argparse.Namespace) -> int:
    import os

    from service.store.export import export_feedback

    store = args.store or os.environ.get("CT_STORE") or "var/store.sqlite3"
    rows, skipped = export_feedback(store, args.output)
    print(f"exported {rows} training rows to {args.output}"
          + (f"; {skipped} corrections without a text left out (send the text to make them trainable)"
             if skipped else ""), file=sys.stderr)
    return 0


def _add_feedback_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True)
    exp = sub.add_parser("export", help="write the stored corrections as training rows (corpus JSONL)")
    exp.add_argument("--output", required=True, help="JSONL file for `train --data` ('-' = stdout)")
    exp.add_argument("--store", default=None, help="SQLite file or redis:// URL (default: CT_STORE, else "
                                                   "var/store.sqlite3)")


def _serve(args: argparse.Namespace) -> int:
    from service.api.server import main as serve_main

    return serve_main(args)


def _add_evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", "--bundle", dest="bundle", default="artifacts/bundle", type=Path)
    p.add_argument("--data", nargs="+", default=None, help="labeled file(s); default: the corpus test split")
    p.add_argument("--corpus", nargs="+", default=["data/corpus"], help="training corpus (splits, baseline)")
    p.add_argument("--challenge", default="data/challenge")
    p.add_argument("--output", type=Path, default=None, help="write the metrics JSON here")
    from training.config import HELP, ColumnMap

    for col in ColumnMap.__dataclass_fields__:
        p.add_argument(f"--{col.replace('_', '-')}-col", dest=f"col_{col}", default=None,
                       help=f"input column holding {col} (default {getattr(ColumnMap(), col)!r})")
    p.add_argument("--label-map", nargs="+", default=None, help=HELP["label_map"] + " (default: none)")


def _add_stats_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corpus", nargs="+", default=["data/corpus"])
    p.add_argument("--challenge", default="data/challenge")
    p.add_argument("--write-readme", type=Path, default=None,
                   help="replace the generated block of this data card with fresh counts")


def _add_backbone_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", default="multilingual-e5-small")


def build_parser() -> argparse.ArgumentParser:
    """All subcommands and their flags (standard library and config modules only)."""
    from service.api.server import add_args as add_serve_args
    from service.batch.config import add_args as add_score_args
    from training.config import add_config_args

    parser = argparse.ArgumentParser(prog="complaint-triage", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    commands: dict[str, tuple[Callable[[argparse.Namespace], int], Callable[[argparse.ArgumentParser], None], str]] = {
        "train": (_train, add_config_args, "fine-tune, export, quantise and evaluate: writes a bundle"),
        "evaluate": (_evaluate, _add_evaluate_args,
                     "evaluate a bundle (default: test + challenge splits, or --data FILE)"),
        "backbone": (_backbone, _add_backbone_args, "resolve/convert a backbone and print its directory"),
        "data-stats": (_data_stats, _add_stats_args, "print corpus counts per label x language x split"),
        "score": (_score, add_score_args, "score a file of messages (JSONL/CSV/Parquet) locally or on Ray"),
        "serve": (_serve, add_serve_args, "run the HTTP API"),
        "feedback": (_feedback, _add_feedback_args, "agent feedback: `feedback export` writes training rows"),
    }
    for name, (func, add_args, help_text) in commands.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=func)
        add_args(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; every error it raises is reported the same way."""
    from model.bundle import BundleError  # model/ cannot import service/: a bad bundle is a user mistake

    args = build_parser().parse_args(argv)
    try:
        try:
            return int(args.func(args) or 0)
        except BundleError as exc:
            raise UsageError(str(exc)) from None
        except KeyboardInterrupt:
            raise Interrupted("interrupted") from None
    except TriageError as exc:
        print(f"complaint-triage {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
