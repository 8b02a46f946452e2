"""The data resource catalog (数据资源目录, 福州办法 第九条): datasets and their attributes.

A policy set declares its datasets in `dataset` blocks, and — for catalogs of thousands — in data
files beside the policy files: `*.catalog.csv` (a header row, then one dataset a row) or
`*.catalog.jsonl` (one JSON object a line). Both forms are checked the same way, against the
declared vocabularies, and every problem is a diagnostic at its file and line.

    id,label,catalog_class,tier,personal,owner_org_id,shareable
    ds-cardio-2025,心血管专病数据集 2025,medical_service,conditional,false,fz-hosp-1,false

A `catalog { uncatalogued refuse | as_stated }` block says what a request naming a dataset the
catalog does not list gets: refused (the default once any dataset is declared), or decided on
the attributes it states itself.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Sequence

from tiergate.grammar import ast
from tiergate.diagnostics import Span, did_you_mean
from tiergate.grammar.parser import text_problems

from . import model
from .strict_json import parse_json

DATA_SUFFIXES = (".catalog.csv", ".catalog.jsonl")
COLUMNS = ("id", "label", "catalog_class", "tier", "personal", "owner_org_id", "shareable")
_REQUIRED = ("id", "catalog_class", "tier")
# A dataset block's keywords and the data files' column names for the same fields.
_KEYWORD_COLUMN = {"label": "label", "catalog": "catalog_class", "tier": "tier",
                   "personal": "personal", "owner": "owner_org_id", "shareable": "shareable"}
_COLUMN_KEYWORD = {column: keyword for keyword, column in _KEYWORD_COLUMN.items()}
_ID = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]*")  # as the grammar's IDENT, so grants can name it
_BOOLEANS = {"true": True, "false": False, True: True, False: False}
_UNCATALOGUED = ("refuse", "as_stated")

Report = Callable[..., None]  # (code, message, span, help=None, owner=None)


def is_catalog_data(name: str) -> bool:
    return name.endswith(DATA_SUFFIXES)


class _Row:
    """Where a data file's row is; spans are made from it only for a diagnostic."""

    __slots__ = ("file", "number", "line")

    def __init__(self, file: str, number: int, line: str):
        self.file, self.number, self.line = file, number, line

    def span(self, value: object = None) -> Span:
        return _line_span(self.file, self.number, self.line, value)

    @property
    def location(self) -> tuple[str, int]:
        return (self.file, self.number)


class _Block:
    """Where a dataset block's clauses are."""

    __slots__ = ("spans", "block")

    def __init__(self, spans: dict[str, Span], block: ast.Dataset):
        self.spans, self.block = spans, block

    def span(self, column: str | None = None) -> Span:
        return self.spans.get(column, self.block.id_span) if column else self.block.span

    @property
    def location(self) -> Span:
        return self.block.span


@dataclass(frozen=True, slots=True)
class _Entry:
    """One dataset as written, in either form: column -> value, and where it is."""

    id: str
    fields: Mapping[str, object]
    place: "_Row | _Block"

    def span(self, column: str | None = None) -> Span:
        if isinstance(self.place, _Block):
            return self.place.span(column)
        return self.place.span(self.fields.get(column) if column else None)


def _from_block(block: ast.Dataset, report: Report) -> _Entry | None:
    fields: dict[str, object] = {}
    spans: dict[str, Span] = {}
    for clause in block.clauses:
        column = _KEYWORD_COLUMN[clause.keyword]
        if column in fields:
            report("TG241", f"dataset {block.id} says '{clause.keyword}' twice", clause.span,
                   "keep one line", block.id)
            return None
        if len(clause.values) != 1:
            report("TG241", f"dataset {block.id}: '{clause.keyword}' takes one value",
                   clause.span, owner=block.id)
            return None
        value = clause.values[0]
        fields[column] = value.value if isinstance(value, ast.Text) else value.name
        spans[column] = value.span
    spans["id"] = block.id_span
    return _Entry(block.id, fields, _Block(spans, block))


def _line_span(file: str, number: int, line: str, value: object = None) -> Span:
    """The spot of `value` in a data file's line (the line's start when it cannot be found)."""
    column = line.find(str(value)) + 1 if value not in (None, "") else 0
    if column <= 0:
        return Span(file, number, 1, number, max(len(line), 1) + 1)
    return Span(file, number, column, number, column + len(str(value)))


def _csv_entries(text: str, file: str, report: Report) -> Iterator[_Entry]:
    lines = text.splitlines()
    if not lines:
        report("TG244", f"{file} is empty", Span(file, 1, 1, 1, 2),
               "start with the header row: " + ",".join(COLUMNS))
        return
    header = next(csv.reader([lines[0]]))
    unknown = [c for c in header if c not in COLUMNS]
    missing = [c for c in _REQUIRED if c not in header]
    repeated = {c for c in header if header.count(c) > 1}
    if unknown or missing or repeated:
        problem = "; ".join(filter(None, (
            unknown and f"unknown column {', '.join(map(repr, unknown))}",
            missing and f"no column {', '.join(missing)}",
            repeated and f"column {', '.join(sorted(repeated))} twice")))
        report("TG244", f"{file}: the header row is not a catalog header: {problem}",
               _line_span(file, 1, lines[0]), "columns: " + ",".join(COLUMNS)
               + (f" ({did_you_mean(unknown[0], COLUMNS)})" if unknown
                  and did_you_mean(unknown[0], COLUMNS) else ""))
        return
    # One physical line per record: a quoted field may not span lines, so every diagnostic's
    # line number is the record's.
    for number, (line, row) in enumerate(zip(lines[1:], csv.reader(lines[1:])), start=2):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != len(header):
            report("TG244", f"{file}:{number}: {len(row)} fields where the header has "
                   f"{len(header)}", _line_span(file, number, line),
                   "one value per column; quote a value that holds a comma")
            continue
        values = dict(zip(header, row))
        yield _entry_from_values(values, file, number, line)


def _jsonl_entries(text: str, file: str, report: Report) -> Iterator[_Entry]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = parse_json(line)
        except ValueError as problem:
            report("TG244", f"{file}:{number}: not a JSON object: {problem}",
                   _line_span(file, number, line), "one JSON object per line")
            continue
        if not isinstance(record, dict):
            report("TG244", f"{file}:{number}: a line must hold a JSON object",
                   _line_span(file, number, line), "one JSON object per line")
            continue
        unknown = [k for k in record if k not in COLUMNS]
        if unknown:
            hint = did_you_mean(unknown[0], COLUMNS)
            report("TG244", f"{file}:{number}: unknown field {unknown[0]!r}",
                   _line_span(file, number, line, unknown[0]),
                   hint or "fields: " + ", ".join(COLUMNS))
            continue
        yield _entry_from_values(record, file, number, line)


def _entry_from_values(values: Mapping[str, object], file: str, number: int, line: str) -> _Entry:
    fields = {column: value for column, value in values.items() if value not in ("", None)}
    dataset_id = values.get("id")
    return _Entry(dataset_id if isinstance(dataset_id, str) else "", fields,
                  _Row(file, number, line))


def check_catalog(blocks: Sequence[ast.Dataset], settings: Sequence[ast.CatalogSettings],
                  data_files: Mapping[str, str], vocabularies: Mapping[str, model.Vocabulary],
                  report: Report) -> model.Catalog:
    """The checked catalog; every problem goes to `report` (the checker's diagnostics)."""
    uncatalogued = _settings(settings, report)
    entries: list[_Entry] = [e for e in (_from_block(b, report) for b in blocks) if e is not None]
    for name in sorted(data_files):
        unreadable = text_problems(data_files[name], name)  # a lone CR would move line numbers
        for problem in unreadable:
            report(problem.code, problem.message, problem.span, problem.help)
        if unreadable:
            continue
        reader = _csv_entries if name.endswith(".csv") else _jsonl_entries
        entries.extend(reader(data_files[name], name, report))
    datasets: dict[str, model.Dataset] = {}
    for entry in entries:
        dataset = _dataset(entry, vocabularies, report)
        if dataset is None:
            continue
        if dataset.id in datasets:
            report("TG240", f"dataset '{dataset.id}' is listed twice (first at "
                   f"{datasets[dataset.id].span})", entry.span("id"), "list each dataset once",
                   dataset.id)
            continue
        datasets[dataset.id] = dataset
    if uncatalogued is None:
        uncatalogued = "refuse" if datasets else "as_stated"
    return model.Catalog(datasets, uncatalogued)


def _settings(settings: Sequence[ast.CatalogSettings], report: Report) -> model.Uncatalogued | None:
    chosen = None
    for index, block in enumerate(settings):
        if index:
            report("TG247", f"the catalog settings are declared twice (first at "
                   f"{settings[0].span})", block.span, "keep one `catalog { … }` block")
        for clause in block.clauses:
            value = clause.values[0].name
            if value not in _UNCATALOGUED:
                report("TG247", f"'uncatalogued {value}' is not a choice", clause.values[0].span,
                       did_you_mean(value, _UNCATALOGUED) or "write uncatalogued refuse or "
                       "uncatalogued as_stated")
            elif chosen is not None:
                report("TG247", "the catalog says 'uncatalogued' twice", clause.span)
            else:
                chosen = value
    return chosen


def _dataset(entry: _Entry, vocabularies: Mapping[str, model.Vocabulary],
             report: Report) -> model.Dataset | None:
    fields = entry.fields
    owner = entry.id or None
    if not _ID.fullmatch(entry.id):
        report("TG244", f"{entry.id or 'a dataset'!r} is not a dataset id", entry.span("id"),
               "an id starts with a letter, then letters, digits, '_', '.' or '-'", owner)
        return None
    ok = True
    for column in _REQUIRED[1:]:
        if column not in fields:
            report("TG241", f"dataset {entry.id} has no {_COLUMN_KEYWORD[column]}",
                   entry.span("id"), "every dataset names its catalog class and tier", owner)
            ok = False
    for column, vocabulary in (("catalog_class", "resource.catalog_class"),
                               ("tier", "resource.tier")):
        value = fields.get(column)
        declared = vocabularies.get(vocabulary)
        if value is not None and declared is not None and value not in declared.labels:
            report("TG242", f"dataset {entry.id}: {value!r} is not a declared {vocabulary}",
                   entry.span(column), (did_you_mean(value, declared.labels)
                                        if isinstance(value, str) else None)
                   or "declared: " + ", ".join(declared.labels), owner)
            ok = False
    flags = {}
    for column in ("personal", "shareable"):
        value = fields.get(column, False)
        if not isinstance(value, (str, bool)) or value not in _BOOLEANS:
            report("TG243", f"dataset {entry.id}: {column} is {value!r}; write true or false",
                   entry.span(column), owner=owner)
            ok = False
            continue
        flags[column] = _BOOLEANS[value]
    for column in ("label", "owner_org_id"):
        value = fields.get(column)
        if value is not None and not isinstance(value, str):
            report("TG244", f"dataset {entry.id}: {column} must be a text", entry.span(column),
                   owner=owner)
            ok = False
    if not ok:
        return None
    return model.Dataset(entry.id, fields.get("label") or entry.id, fields["catalog_class"],
                         fields["tier"], flags["personal"], fields.get("owner_org_id"),
                         flags["shareable"], entry.place.location)


def check_grant_datasets(grants: Sequence[model.Grant], catalog: model.Catalog,
                         report: Report) -> None:
    """A grant naming a dataset must name a catalogued one it can cover (when a catalog exists)."""
    if not catalog.exists:
        return
    for grant in grants:
        for dataset_id in sorted(grant.datasets or ()):
            dataset = catalog.datasets.get(dataset_id)
            if dataset is None:
                report("TG245", f"grant {grant.id} names dataset '{dataset_id}', which the catalog "
                       "does not list", grant.span,
                       did_you_mean(dataset_id, catalog.datasets) or "declare the dataset, or "
                       "correct the id", grant.id)
            elif dataset.tier not in grant.tiers or dataset.catalog_class not in grant.catalog:
                report("TG246", f"grant {grant.id} names dataset '{dataset_id}' "
                       f"({dataset.catalog_class} / {dataset.tier}), which its tier and catalog "
                       "do not cover, so it can never apply to it", grant.span,
                       f"add {dataset.tier} and {dataset.catalog_class} to the grant, or name "
                       "another dataset", grant.id)
