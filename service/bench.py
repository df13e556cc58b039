"""Benchmarks (written next)."""
import argparse


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", "--bundle", dest="bundle", default="artifacts/bundle")


def main(args: argparse.Namespace) -> int:
    raise SystemExit("not yet")
