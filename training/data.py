"""Load labeled data (JSONL, CSV, Parquet) with a column mapping, validate, and split.

Splits are a pure function of each row's ``id``: a hash maps the id to a bucket in
[0, 100) — < 80 train, < 90 validation, else test. Adding rows never moves old ones, and
because the hash ignores the labels, every (severity, language) stratum is split ~80/10/10
(the data tests check the tolerance).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from model.labels import SENTIMENT_LABELS, SEVERITY_LABELS, parse_bool_label
from training.config import ColumnMap
from training.labelmap import LabelMaps, map_value, parse_label_maps

SPLITS = ("train", "validation", "test")
MISSING = -1


class DataError(ValueError):
    """A data file or row is unusable; the message names the file, row and field."""


@dataclass(frozen=True)
class Example:
    """One labeled message; label fields are -1 when the row lacks that label."""

    id: str
    text: str
    lang: str
    severity: int
    followup: int
    sentiment: int
    #: coarse binary complaint label (1 = severity != none) for rows without a severity level
    complaint: int = MISSING
    #: loss weight (user rows mixed with the default corpus can count more)
    weight: float = 1.0

    @property
    def complaint_gold(self) -> int:
        """1/0 complaint label from the severity level, else the coarse label, else MISSING."""
        return int(self.severity > 0) if self.severity != MISSING else self.complaint


def split_of(example_id: str) -> str:
    """Deterministic split for an id (stable under additions)."""
    bucket = int(hashlib.sha256(example_id.encode("utf-8")).hexdigest()[:8], 16) % 100
    if bucket < 80:
        return "train"
    return "validation" if bucket < 90 else "test"


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files named directly, plus every .jsonl/.csv/.parquet file inside named directories."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(q for q in p.iterdir() if q.suffix in {".jsonl", ".json", ".csv", ".parquet"}))
        elif p.is_file():
            out.append(p)
        else:
            raise DataError(f"data path not found: {p}")
    if not out:
        raise DataError(f"no data files found in {', '.join(map(str, paths))}")
    return out


def _builder(path: Path) -> str:
    kinds = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
    if path.suffix not in kinds:
        raise DataError(f"{path}: unsupported file type {path.suffix!r} (use .jsonl, .csv or .parquet)")
    return kinds[path.suffix]


def read_rows(paths: Sequence[str | Path]) -> list[tuple[Path, dict[str, Any]]]:
    """Read raw rows with the ``datasets`` library, remembering each row's file."""
    import datasets

    datasets.disable_progress_bars()
    rows: list[tuple[Path, dict[str, Any]]] = []
    for path in expand_paths(paths):
        try:
            ds = datasets.load_dataset(_builder(path), data_files=str(path), split="train", keep_in_memory=True)
        except Exception as exc:  # datasets wraps parser errors in several exception types
            raise DataError(f"{path}: cannot parse: {exc}") from exc
        rows.extend((path, row) for row in ds)
    return rows


def _label(value: Any, labels: Sequence[str], where: str, field: str) -> int:
    if value is None or (isinstance(value, float) and value != value) or value == "":
        return MISSING
    text = str(value).strip().lower()
    if text not in labels:
        raise DataError(f"{where}: unknown {field} value {value!r} (allowed: {', '.join(labels)})")
    return labels.index(text)


def _binary(head: str, column: str, value: Any, maps: LabelMaps | None, where: str) -> int:
    try:
        parsed = parse_bool_label(map_value(head, value, maps))
    except ValueError:
        raise DataError(f"{where}: {head} must be true/false (or 0/1, yes/no; column {column!r}; or mapped with "
                        f"--label-map {head}=VALUE:true,…), got {value!r}") from None
    return MISSING if parsed is None else int(parsed)


def to_example(row: dict[str, Any], cols: ColumnMap, where: str, index: int,
               maps: LabelMaps | None = None) -> Example:
    """Validate and convert one raw row (label values first mapped through ``maps``)."""
    text = row.get(cols.text)
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"{where}: missing or empty text in column {cols.text!r}")
    ex_id = row.get(cols.id)
    severity = _label(map_value("severity", row.get(cols.severity), maps), SEVERITY_LABELS, where, "severity")
    complaint = _binary("is_complaint", cols.complaint, row.get(cols.complaint), maps, where)
    if severity != MISSING and complaint != MISSING:
        if complaint != int(severity > 0):
            raise DataError(f"{where}: {cols.complaint!r} = {row.get(cols.complaint)!r} contradicts severity "
                            f"{SEVERITY_LABELS[severity]!r} (complaint means severity != none)")
        complaint = MISSING  # the level says it all
    return Example(
        id=str(ex_id) if ex_id not in (None, "") else f"row-{index}",
        text=text,
        lang=str(row.get(cols.lang) or "und"),
        severity=severity,
        followup=_binary("private_followup", cols.private_followup, row.get(cols.private_followup), maps, where),
        sentiment=_label(map_value("sentiment", row.get(cols.sentiment), maps), SENTIMENT_LABELS, where,
                         "sentiment"),
        complaint=complaint,
    )


def load_examples(paths: Sequence[str | Path], cols: ColumnMap | None = None,
                  label_map: Sequence[str] = (), on_error: Callable[[DataError], None] | None = None
                  ) -> list[Example]:
    """Load and validate every row; a row with no label at all is an error. ``label_map`` specs
    (``severity=0:none,…`` or a TOML file) translate the file's label values first (training.labelmap).
    With ``on_error`` (the dry run), a bad row is reported to it and skipped instead of raising."""
    cols = cols or ColumnMap()
    try:
        maps = parse_label_maps(label_map)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    examples: list[Example] = []
    seen: set[str] = set()
    for i, (path, row) in enumerate(read_rows(paths)):
        try:
            ex = to_example(row, cols, f"{path} row {i}", i, maps)
            if ex.severity == ex.followup == ex.sentiment == ex.complaint == MISSING:
                raise DataError(f"{path} row {i} (id {ex.id}): has none of the label columns "
                                f"{cols.severity!r}, {cols.complaint!r}, {cols.private_followup!r}, "
                                f"{cols.sentiment!r}")
            if ex.id in seen:
                raise DataError(f"{path} row {i}: duplicate id {ex.id!r}")
        except DataError as exc:
            if on_error is None:
                raise
            on_error(exc)
            continue
        seen.add(ex.id)
        examples.append(ex)
    return examples


def load_unlabeled(paths: Sequence[str | Path], cols: ColumnMap | None = None) -> list[Example]:
    """Rows with only a text (the student's extra distillation text): every label MISSING, so the
    gold-label loss ignores them and only the teacher's soft labels train on them. Label columns,
    if a file has them, are ignored; ids default to ``unlabeled-<file stem>-<row>``."""
    cols = cols or ColumnMap()
    examples: list[Example] = []
    for i, (path, row) in enumerate(read_rows(paths)):
        # the project's own unlabeled files use the default names even when the labeled data does not
        text = row.get(cols.text, row.get("text"))
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{path} row {i}: missing or empty text in column {cols.text!r}")
        ex_id = row.get(cols.id, row.get("id"))
        examples.append(Example(id=str(ex_id) if ex_id not in (None, "") else f"unlabeled-{path.stem}-{i}",
                                text=text, lang=str(row.get(cols.lang, row.get("lang")) or "und"),
                                severity=MISSING, followup=MISSING, sentiment=MISSING))
    return examples


def drop_overlap(extra: Sequence[Example], reference: Sequence[Example],
                 threshold: float = 0.6) -> tuple[list[Example], int]:
    """``extra`` without the rows that are exact or near-duplicates (training.dedupe) of a
    ``reference`` text, and how many were dropped."""
    from training.dedupe import near_duplicate_pairs, norm

    ref = {norm(e.text) for e in reference}
    kept = [e for e in extra if len(norm(e.text)) <= 3 or norm(e.text) not in ref]
    # near-duplicates as the corpus import judges them: texts of 25+ normalised characters
    long_x = [k for k, e in enumerate(kept) if len(norm(e.text)) >= 25]
    long_r = [e.text for e in reference if len(norm(e.text)) >= 25]
    texts = [kept[k].text for k in long_x] + long_r
    groups = ["x"] * len(long_x) + ["r"] * len(long_r)
    near = {long_x[i] for i, j, _ in near_duplicate_pairs(texts, groups, threshold) if i < len(long_x) <= j}
    out = [e for k, e in enumerate(kept) if k not in near]
    return out, len(extra) - len(out)


def load_optional(path: str | Path, cols: ColumnMap | None = None) -> list[Example]:
    """An evaluation-only set (challenge, field): its examples, or [] when the path does not exist."""
    return load_examples([path], cols) if str(path) and Path(path).exists() else []


def split_examples(examples: Sequence[Example]) -> dict[str, list[Example]]:
    """Group examples by their deterministic split."""
    out: dict[str, list[Example]] = {s: [] for s in SPLITS}
    for ex in examples:
        out[split_of(ex.id)].append(ex)
    return out


def data_hash(examples: Sequence[Example]) -> str:
    """sha256 over ids, texts and labels, order-independent; recorded in the bundle."""
    digest = hashlib.sha256()
    for ex in sorted(examples, key=lambda e: e.id):
        coarse = "" if ex.complaint == MISSING else f"\tc{ex.complaint}"  # old data keeps its old hash
        weight = "" if ex.weight == 1.0 else f"\tw{ex.weight}"
        digest.update(f"{ex.id}\t{ex.text}\t{ex.severity}\t{ex.followup}\t{ex.sentiment}{coarse}{weight}\n".encode())
    return digest.hexdigest()
