"""The users' CSV tables: one row per image, read, validated, and written.

A table is the unit every later step works on. Validation happens here, before any
decoding or training, and reports every problem found at once.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rxwgan.base import atomic
from rxwgan.base.errors import RxwganError, first_line

DEFAULT_PATH_COLUMN = "raw_image_path"
DEFAULT_TARGET_COLUMN = "target"
TABLE_COLUMNS = ["target", "image_ID", "raw_image_path", "raw_image_md5", "age", "sex", "comment"]
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm", ".dicom"}
MAX_LISTED = 10


@dataclass
class Table:
    """A validated table: the rows as read (extra columns kept) and where they came from."""

    frame: pd.DataFrame
    source: Path
    path_column: str = DEFAULT_PATH_COLUMN
    target_column: str = DEFAULT_TARGET_COLUMN
    has_index_column: bool = False  # a leading unnamed index column, written back as read

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def paths(self) -> list[Path]:
        """Absolute image paths; relative ones resolve against the CSV's folder."""
        base = self.source.parent
        return [_resolve(base, value) for value in self.frame[self.path_column]]

    @property
    def targets(self) -> np.ndarray:
        return self.frame[self.target_column].to_numpy(dtype=np.int64)

    def row_label(self, position: int) -> str:
        """How messages name a row: its 1-based data row and its line in the CSV file."""
        return f"row {position + 1} (line {position + 2})"

    def paths_from(self, folder: str | Path) -> list[str]:
        """The path column re-expressed for a table in ``folder``: relative paths are
        rebased so they still name the same files, absolute ones stay as written."""
        out_dir = Path(folder).resolve()
        base = self.source.parent
        return [str(value) if Path(str(value)).expanduser().is_absolute() or not str(value).strip()
                else _relative_or_absolute(base / str(value), out_dir)
                for value in self.frame[self.path_column]]

    def write(self, path: str | Path, extra: dict[str, Iterable] | None = None) -> None:
        """Write the rows (with any extra columns) in the users' format, atomically.

        Relative image paths are rebased onto the new file's folder, so a copy written
        elsewhere (a run's split.csv, ``table split -o``) still finds every image.
        """
        frame = self.frame.copy()
        frame[self.path_column] = self.paths_from(Path(path).resolve().parent)
        for name, values in (extra or {}).items():
            frame[name] = list(values)
        write_frame(frame, path, index=self.has_index_column)


def _resolve(base: Path, value: object) -> Path:
    path = Path(str(value)).expanduser()
    return path if path.is_absolute() else base / path


def _relative_or_absolute(path: Path, folder: Path) -> str:
    try:
        return Path(os.path.relpath(path, folder)).as_posix()
    except ValueError:  # another drive on Windows: no relative path exists
        return str(path)


def write_frame(frame: pd.DataFrame, path: str | Path, index: bool = False) -> None:
    """Write a table CSV atomically (``index``: with a leading unnamed index column)."""
    buffer = io.StringIO()
    frame.to_csv(buffer, index=index)
    atomic.write_text(path, buffer.getvalue())


def read_table(
    csv_path: str | Path,
    path_column: str = DEFAULT_PATH_COLUMN,
    target_column: str = DEFAULT_TARGET_COLUMN,
    target: int | None = None,
    check_files: bool = True,
) -> Table:
    """Read and validate a table; raise one RxwganError listing every problem found.

    ``target`` only checks that the class is not empty: filtering by class happens
    after splitting (as the old tool did), so both classes share fold assignments.
    """
    table = read_rows(Path(csv_path), path_column, target_column)
    problems = validate(table, target=target, check_files=check_files)
    if problems:
        raise RxwganError(f"{table.source}: " + "; ".join(problems))
    return table


def read_rows(csv_path: Path, path_column: str = DEFAULT_PATH_COLUMN,
              target_column: str = DEFAULT_TARGET_COLUMN) -> Table:
    """Read a table without validating it (``validate`` lists its problems)."""
    if not csv_path.is_file():
        raise RxwganError(f"{csv_path}: table not found")
    try:
        frame = pd.read_csv(csv_path, dtype={path_column: str}, keep_default_na=False,
                            na_values={target_column: [""]})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise RxwganError(f"{csv_path}: not a readable CSV table ({first_line(exc)})") from None
    first = frame.columns[0] if len(frame.columns) else None
    has_index = isinstance(first, str) and first.startswith("Unnamed: 0")
    if has_index:
        # The users' tables often carry pandas' own index as a nameless first column.
        frame = frame.set_index(first)
        frame.index.name = None
    return Table(frame, csv_path.resolve(), path_column, target_column, has_index)


def validate(table: Table, target: int | None = None, check_files: bool = True) -> list[str]:
    """Every problem with the table, as short sentences (empty when it is sound)."""
    frame = table.frame
    missing = [c for c in (table.path_column, table.target_column) if c not in frame.columns]
    if missing:
        found = ", ".join(map(str, frame.columns)) or "none"
        return [f"missing column(s) {', '.join(missing)} (found: {found}; "
                f"rename with --path-column/--target-column)"]
    if len(frame) == 0:
        return ["the table has no rows"]

    problems = []
    targets = pd.to_numeric(frame[table.target_column], errors="coerce")
    bad_targets = [i for i, value in enumerate(targets) if value not in (0, 1)]
    if bad_targets:
        problems.append(_listed(
            f"{len(bad_targets)} target(s) not 0/1",
            [f"{table.row_label(i)}: {frame[table.target_column].iloc[i]}" for i in bad_targets]))

    empty_paths = [i for i, value in enumerate(frame[table.path_column]) if not str(value).strip()]
    if empty_paths:
        problems.append(_listed(f"{len(empty_paths)} empty image path(s)",
                                [table.row_label(i) for i in empty_paths]))

    paths = table.paths
    seen: dict[Path, int] = {}
    duplicates = []
    for i, path in enumerate(paths):
        key = Path(os.path.realpath(path))  # unlike Path.resolve, never raises on a symlink loop
        if key in seen:
            duplicates.append(f"{table.row_label(i)} repeats {table.row_label(seen[key])}: "
                              f"{frame[table.path_column].iloc[i]}")
        else:
            seen[key] = i
    if duplicates:
        problems.append(_listed(f"{len(duplicates)} duplicate image path(s)", duplicates))

    if check_files:
        absent = [f"{table.row_label(i)}: {path}{_why_absent(path)}" for i, path in enumerate(paths)
                  if i not in empty_paths and not path.is_file()]
        if absent:
            problems.append(_listed(f"{len(absent)} image file(s) not found", absent))

    if target is not None:
        if target not in (0, 1):
            problems.append(f"--target must be 0 or 1, not {target}")
        elif not bad_targets and int((targets == target).sum()) == 0:
            problems.append(f"no rows with target {target} (the class is empty)")
    return problems


def _why_absent(path: Path) -> str:
    """Why a path is not a file, when it is more than plain absence (a symlink loop, a folder)."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return ""
    except OSError as exc:
        return f" ({exc.strerror or exc})"
    return " (not a file)"


def _listed(headline: str, items: list[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    more = f", and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
    return f"{headline}: {shown}{more}"


def md5_of_file(path: str | Path) -> str:
    """The file's md5, read once per process while its size and mtime stay the same: a run's
    table fingerprint and its image cache both need every image's md5."""
    stat = os.stat(path)
    return _md5(os.path.realpath(path), (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns))


@functools.lru_cache(maxsize=1 << 16)
def _md5(path: str, version: tuple[int, int, int, int]) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "md5").hexdigest()


# --- building a table from a folder of images -----------------------------------------

_SUFFIX_TARGET = re.compile(r"_([01])$")


def build_table(image_root: str | Path, out_csv: str | Path,
                classes: dict[str, int] | None = None) -> pd.DataFrame:
    """Write a table for a folder of images and return it.

    Two layouts: the public Shenzhen/Montgomery set (``images/*.png`` whose names end
    in ``_0``/``_1``, optional ``clinical/*.txt`` beside them) and one sub-folder per
    class (folder names ``0``/``1``, or mapped by ``classes``).
    """
    root = Path(image_root)
    if not root.is_dir():
        raise RxwganError(f"{root}: folder not found")
    out_csv = Path(out_csv)
    if (root / "images").is_dir() and any(_SUFFIX_TARGET.search(p.stem)
                                           for p in _images_in(root / "images")):
        records = _shenzhen_records(root)
    else:
        records = _class_folder_records(root, classes)
    if not records:
        raise RxwganError(f"{root}: no images found in either layout")
    base = out_csv.resolve().parent
    for record in records:
        path = Path(record["raw_image_path"]).resolve()
        record["raw_image_md5"] = md5_of_file(path)
        record["raw_image_path"] = _relative_if_below(path, base)
    frame = pd.DataFrame.from_records(records, columns=TABLE_COLUMNS)
    write_frame(frame, out_csv)
    return frame


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _relative_if_below(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return str(path)


def _shenzhen_records(root: Path) -> list[dict]:
    clinical = root / "clinical"
    records = []
    for path in _images_in(root / "images"):
        match = _SUFFIX_TARGET.search(path.stem)
        if not match:
            raise RxwganError(f"{path}: name does not end in _0 or _1 (the target)")
        age, sex, comment = None, None, ""
        text_file = clinical / f"{path.stem}.txt"
        if text_file.is_file():
            age, sex, comment = parse_clinical_text(text_file.read_text(errors="replace"))
        records.append({"target": int(match.group(1)), "image_ID": path.stem,
                        "raw_image_path": str(path), "age": age, "sex": sex, "comment": comment})
    return records


_AGE = re.compile(r"(\d{1,3})\s*(?:y|yr|yrs|years?)?\b", re.IGNORECASE)
_SEX = re.compile(r"\b(female|male|f|m)\b", re.IGNORECASE)


def parse_clinical_text(text: str) -> tuple[int | None, str | None, str]:
    """Age and sex from a clinical note's first line; the rest of the note is the comment.

    Shenzhen notes read ``male 35yrs`` then the finding; Montgomery notes have
    ``Patient's Sex: M`` and ``Patient's Age: 035Y`` lines, which are read too.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return None, None, ""
    header_lines = [lines[0]] + [line for line in lines[1:] if line.lower().startswith("patient's")]
    header = " ".join(header_lines).replace("Patient's Sex:", "").replace("Patient's Age:", "")
    sex_match = _SEX.search(header)
    age_match = _AGE.search(header)
    sex = sex_match.group(1)[0].upper() if sex_match else None
    age = int(age_match.group(1)) if age_match else None
    comment = " ".join(line for line in lines[1:] if line not in header_lines)
    return age, sex, comment


def _class_folder_records(root: Path, classes: dict[str, int] | None) -> list[dict]:
    records = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if classes is not None:
            if folder.name not in classes:
                continue
            target = classes[folder.name]
        elif folder.name in ("0", "1"):
            target = int(folder.name)
        else:
            raise RxwganError(f"{folder}: class folders must be named 0 and 1 "
                              f"(or map names with --classes NAME=0,NAME=1)")
        for path in _images_in(folder):
            records.append({"target": target, "image_ID": path.stem, "raw_image_path": str(path),
                            "age": None, "sex": None, "comment": ""})
    return records
