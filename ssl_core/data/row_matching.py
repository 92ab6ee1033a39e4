"""Which image each row belongs to: embedding rows to images by name or by order, and rows of
a labels table to images by name, trying the forms of a file name people write."""

from __future__ import annotations

import re
from itertools import islice
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ssl_core.data.user_files import ID_COLUMNS, ImageSource, InvalidImport, shortlist

_FORMS: tuple[tuple[str, Callable[[str], str]], ...] = (
    ("relative path", lambda s: s),
    ("relative path without suffix", lambda s: str(Path(s).with_suffix("")) if Path(s).suffix else s),
    ("file name", lambda s: Path(s).name),
    ("file name without suffix", lambda s: Path(s).stem),
)


def duplicates(names: Sequence[str]) -> list[str]:
    seen, dup = set(), []
    for n in names:
        if n in seen and n not in dup:
            dup.append(n)
        seen.add(n)
    return dup


def match_names(wanted: Sequence[str], available: Sequence[str]) -> tuple[np.ndarray, str, list[str]]:
    """Position in `available` of each name in `wanted` (-1: none) under the first form of name
    (relative path, without suffix, file name, stem) that is unique on both sides and matches
    the most names. Returns (positions, the form's description, the names that found none)."""
    best = None
    for description, form in _FORMS:
        keys = [form(a) for a in available]
        if duplicates(keys) or duplicates([form(w) for w in wanted]):
            continue
        where = {k: i for i, k in enumerate(keys)}
        positions = np.array([where.get(form(w), -1) for w in wanted], dtype=np.int64)
        if best is None or (positions >= 0).sum() > (best[0] >= 0).sum():
            best = (positions, description)
        if (positions >= 0).all():
            break
    if best is None:
        return np.full(len(wanted), -1, dtype=np.int64), "no form of name", list(wanted)
    positions, description = best
    return positions, description, [w for w, p in zip(wanted, positions) if p < 0]


def _natural_key(text: str) -> list:
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text)]


def match_images(count: int, ids: list[str] | None, source: ImageSource, match: str,
                 embeddings_name: str, notes: list[str], warnings: list[str]) -> tuple[np.ndarray, list[str]]:
    """(the image of each of the `count` embedding rows, as a position in `source`; the rows' ids).
    How they were matched goes to `notes`, images left out and a suspicious order to `warnings`."""
    if source.kind == "parquet" and (dup := duplicates(source.names)):
        raise InvalidImport(f"{source.path}: duplicate ids {shortlist(dup)}; each image needs one row")
    described = f"{len(source.names):,} images in {source.path}"
    if (match if match != "auto" else ("name" if ids is not None else "order")) == "name":
        if ids is None:
            raise InvalidImport(f"--match name needs ids in the embeddings (a column named one of "
                                f"{', '.join(ID_COLUMNS)}); {embeddings_name} has none")
        positions, form, missing = match_names(ids, source.names)
        if missing:
            raise InvalidImport(f"{len(missing):,} of {len(ids):,} embedding ids match no image in {source.path} "
                                f"(tried relative path, without suffix, file name, stem): {shortlist(missing)}")
        notes.append(f"matched {len(ids):,} embeddings to images by {form}")
        unused = sorted(set(range(len(source.names))) - set(positions.tolist()))
        if unused:
            warnings.append(f"{len(unused):,} of {described} have no embedding and are left out: "
                            f"{shortlist([source.names[i] for i in unused])}")
        return positions, list(ids)
    if count != len(source.names):
        raise InvalidImport(f"{count:,} embeddings in {embeddings_name} but {described}: matched by "
                            "order, the counts must be equal (or give the embeddings an id column of file "
                            "names to match by name)")
    order = "sorted relative path" if source.kind == "folder" else "row order"
    notes.append(f"matched {count:,} embeddings to images by {order}: row 0 is {source.names[0]}, "
                 f"row {count - 1} is {source.names[-1]}")
    # Pair by pair, two keys at a time: a million names' keys held at once took ~380 MB.
    names = source.names
    if source.kind == "folder" and any(_natural_key(a) > _natural_key(b)
                                       for a, b in zip(names, islice(names, 1, None))):
        natural = sorted(source.names, key=_natural_key)
        first = next(i for i, (a, b) in enumerate(zip(source.names, natural)) if a != b)
        warnings.append(f"file names hold numbers of different lengths, so sorted order puts "
                        f"{source.names[first]} at row {first} (not {natural[first]}); if the embeddings "
                        "follow numeric order, zero-pad the numbers or give the embeddings an id column")
    return np.arange(count), list(ids) if ids is not None else list(source.names)
