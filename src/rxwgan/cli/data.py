"""Verbs of the data layer: ``table check|build|split|dedupe``, ``cache``, ``demo-data``."""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from rxwgan.base.errors import RxwganError
from rxwgan.cli.common import (
    EXIT_USAGE,
    Lazy,
    OneLineParser,
    add_setting,
    add_split_flags,
    add_table_flags,
    refuse_existing,
    setting_value,
    split_spec,
)
from rxwgan.data.phantoms import FINDINGS, write_demo_data
from rxwgan.data.splits import SplitSpec
from rxwgan.data.table import Table

MAX_GROUPS_LISTED = 20  # twin groups ``table check`` lists of each kind; it counts them all
MAX_ROWS_LISTED = 10  # rows listed of one group


def cmd_table_check(args: argparse.Namespace) -> int:
    from rxwgan.data.cache import ImageCache
    from rxwgan.data.duplicates import check_near_threshold, find_duplicates
    from rxwgan.data.images import check_bit_depth
    from rxwgan.data.splits import table_groups
    from rxwgan.data.table import read_rows, validate

    check_bit_depth(args.bit_depth)
    twins = {name: setting_value(args, find_duplicates, name) for name in ("near_threshold", "near")}
    check_near_threshold(twins["near_threshold"])
    spec = split_spec(args, default_fold=False) if _names_a_split(args) else None
    table = read_rows(Path(args.table), args.path_column, args.target_column)
    if spec is not None:
        table_groups(table, spec)  # a bad --group-column is refused before any image is read
    problems = validate(table, target=args.target)
    print(f"{table.source}: {len(table)} rows")
    if args.target_column in table.frame.columns:
        counts = table.frame[args.target_column].value_counts().sort_index()
        print("rows per class: " + ", ".join(f"target {k}: {v}" for k, v in counts.items()))
    if args.path_column in table.frame.columns:
        every_path = table.paths
        present = [i for i, path in enumerate(every_path) if path.is_file()]
        paths = [every_path[i] for i in present]
        cache = ImageCache(args.cache_dir)
        headers = cache.headers(paths)
        depths = cache.bit_depths(paths, args.bit_depth, headers)
        shapes: Counter[str] = Counter()
        for header, depth in zip(headers, depths, strict=True):
            if header is not None:  # an unreadable file is reported by decoding it below
                decoded = f", decoded as {depth.bits}-bit ({depth.source})" if depth else ""
                shapes[f"{header.width}x{header.height} {header.bit_depth}-bit {header.kind}"
                       f"{decoded}"] += 1
        for shape, count in shapes.most_common():
            print(f"images: {count} x {shape}")
        # Decoding every image is the only sure check; it also fills the cache for train.
        failures = cache.fill(paths, args.size, [table.row_label(i) for i in present], depths=depths)
        if failures:  # every one listed: this is the report a user fixes the table from
            problems.append(f"{len(failures)} unreadable image(s): " + "; ".join(failures))
        found = find_duplicates(cache, paths, args.size, depths, **twins)
        exact = [[present[i] for i in group] for group in found.exact]
        near = None if found.near is None else [[present[i] for i in group] for group in found.near]
        _print_twins(table, exact, near, twins["near_threshold"])
        if spec is not None:
            _print_straddling(table, spec, exact, near, sound=not problems)
    if problems:
        for problem in problems:
            print(f"problem: {problem}", file=sys.stderr)
        return EXIT_USAGE
    print("no problems found")
    return 0


def _names_a_split(args: argparse.Namespace) -> bool:
    """Whether the split flags name a partition to check the twins against."""
    flags = ("fold", "n_splits", "test", "sort", "group_column")
    return any(getattr(args, name) is not None for name in flags)


def _print_twins(table: Table, exact: list[list[int]], near: list[list[int]] | None,
                 threshold: float) -> None:
    """The twins section of ``table check``: counts, then the groups (row positions) of each kind."""
    counts = f"{_count(exact, 'exact group')} ({sum(map(len, exact))} rows)"
    if near is None:
        counts += "; near twins not searched (--no-near)"
    else:
        counts += (f", {_count(near, 'near group')} ({sum(map(len, near))} rows) within {threshold:g} "
                   f"grey levels")
    print(f"duplicates: {counts}")
    for kind, groups in (("exact", exact), ("near", near or [])):
        for number, group in enumerate(groups[:MAX_GROUPS_LISTED], 1):
            rows = "; ".join(_row(table, i) for i in group[:MAX_ROWS_LISTED])
            more = f"; and {len(group) - MAX_ROWS_LISTED} more" if len(group) > MAX_ROWS_LISTED else ""
            print(f"{kind} {number}: {len(group)} rows{_classes_differ(table, group)}: {rows}{more}")
        if len(groups) > MAX_GROUPS_LISTED:
            print(f"and {_count(groups[MAX_GROUPS_LISTED:], f'more {kind} group')}")


def _print_straddling(table: Table, spec: SplitSpec, exact: list[list[int]], near: list[list[int]] | None,
                      sound: bool) -> None:
    """How many twin groups have rows on both sides of the split the flags name."""
    from rxwgan.data.duplicates import straddling
    from rxwgan.data.splits import partition_table

    name = (f"fold {spec.fold} of {spec.n_splits}" if spec.scheme == "kfold"
            else f"test {spec.test} sort {spec.sort}")
    name += f" grouped by {spec.group_column}" if spec.group_column else ""
    if not sound:
        print(f"split {name}: not checked against the twins until the problems are fixed")
        return
    parts = partition_table(table, spec).labels(len(table))
    counts = [f"{straddling(exact, parts)} of {_count(exact, 'exact group')}"]
    if near is not None:
        counts.append(f"{straddling(near, parts)} of {_count(near, 'near group')}")
    print(f"split {name}: {' and '.join(counts)} straddle the partitions")


def _count(items: Sequence, noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


def _row(table: Table, position: int) -> str:
    """A row as listings name it: its numbers, its image path as written, and its class."""
    frame = table.frame
    target = (f" (target {frame[table.target_column].iloc[position]})"
              if table.target_column in frame.columns else "")
    return f"{table.row_label(position)} {frame[table.path_column].iloc[position]}{target}"


def _classes_differ(table: Table, group: list[int]) -> str:
    if table.target_column not in table.frame.columns:
        return ""
    classes = sorted({str(value) for value in table.frame[table.target_column].iloc[group]})
    return f", classes differ ({', '.join(classes)})" if len(classes) > 1 else ""


def cmd_table_dedupe(args: argparse.Namespace) -> int:
    from rxwgan.data.cache import ImageCache
    from rxwgan.data.duplicates import exact_groups, pixel_hashes
    from rxwgan.data.images import check_bit_depth
    from rxwgan.data.table import read_table

    check_bit_depth(args.bit_depth)
    table = read_table(args.table, args.path_column, args.target_column)
    out = Path(args.output)
    if out.resolve() == table.source:
        raise RxwganError(f"-o {out} is the table itself: dedupe writes a new table, name another file")
    refuse_existing(out, args.overwrite)
    cache = ImageCache(args.cache_dir)
    paths = table.paths
    hashes = pixel_hashes(cache, paths, cache.bit_depths(paths, args.bit_depth))
    unreadable = [table.row_label(i) for i, key in enumerate(hashes) if key is None]
    if unreadable:
        raise RxwganError(f"{len(unreadable)} image(s) could not be decoded (first: {unreadable[0]}); "
                          f"rxwgan table check lists why")
    groups = exact_groups(hashes)
    dropped = {i for group in groups for i in group[1:]}
    replace(table, frame=table.frame.iloc[[i for i in range(len(table)) if i not in dropped]]).write(out)
    for group in groups:
        print(f"kept {_row(table, group[0])}{_classes_differ(table, group)}; dropped "
              + "; ".join(_row(table, i) for i in group[1:]))
    print(f"wrote {out}: {len(table) - len(dropped)} of {len(table)} rows, one per exact group "
          f"({len(dropped)} dropped); no image was deleted")
    return 0


def cmd_table_build(args: argparse.Namespace) -> int:
    from rxwgan.data.table import build_table

    out = Path(args.output)
    refuse_existing(out, args.overwrite)
    classes = _parse_classes(args.classes) if args.classes else None
    frame = build_table(args.folder, out, classes=classes)
    counts = frame["target"].value_counts().sort_index()
    print(f"wrote {out}: {len(frame)} rows (" +
          ", ".join(f"target {k}: {v}" for k, v in counts.items()) + ")")
    return 0


def _parse_classes(text: str) -> dict[str, int]:
    mapping = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        if not sep or value.strip() not in ("0", "1"):
            raise RxwganError(f"--classes: expected NAME=0,NAME=1, got {item!r}")
        mapping[name.strip()] = int(value)
    return mapping


def cmd_table_split(args: argparse.Namespace) -> int:
    from rxwgan.data.splits import partition, table_groups
    from rxwgan.data.table import read_table

    spec = split_spec(args, default_fold=False)
    table = read_table(args.table, args.path_column, args.target_column, check_files=False)
    out = Path(args.output)
    refuse_existing(out, args.overwrite)
    groups = table_groups(table, spec)
    parts = partition(table.targets, spec, groups)
    table.write(out, {"partition": parts.labels(len(table))})
    print(f"wrote {out}: {_describe_partition(table.targets, parts, groups, spec.group_column)}")
    return 0


def _describe_partition(targets, parts, groups=None, group_column: str | None = None) -> str:
    pieces = []
    for name in ("train", "val", "test"):
        rows = getattr(parts, name)
        if len(rows) or name != "test":
            per_class = Counter(int(t) for t in targets[rows])
            whole = "" if groups is None else f"{len(set(groups[rows]))} {group_column} groups, "
            pieces.append(f"{name} {len(rows)} ({whole}target 0: {per_class[0]}, target 1: {per_class[1]})")
    return ", ".join(pieces)


def cmd_cache(args: argparse.Namespace) -> int:
    from rxwgan.data.cache import ImageCache
    from rxwgan.data.table import read_table

    table = read_table(args.table, args.path_column, args.target_column)
    cache = ImageCache(args.cache_dir)
    start = time.perf_counter()
    cache.load(table.paths, args.size, labels=[table.row_label(i) for i in range(len(table))],
               bit_depth=args.bit_depth)
    seconds = time.perf_counter() - start
    print(f"{len(table)} images at {args.size}px ready in {cache.root} ({seconds:.1f} s)")
    return 0


def cmd_demo_data(args: argparse.Namespace) -> int:
    out = Path(args.output)
    refuse_existing(out / "table.csv", args.overwrite)
    start = time.perf_counter()
    settings = {name: setting_value(args, write_demo_data, name)
                for name in ("n_images", "size", "seed", "findings")}
    table = write_demo_data(out, **settings)
    print(f"wrote {table} ({settings['n_images']} phantoms at {settings['size']}px, "
          f"{settings['findings']} findings, {time.perf_counter() - start:.1f} s)")
    return 0


def add_bit_depth_flag(parser: argparse.ArgumentParser, owner: Any = None) -> None:
    """``--bit-depth`` for every verb that decodes images (table check, cache, train, sweep),
    bound to ``owner``'s setting when it has one."""
    flags, options = ("--bit-depth", "--bit_depth"), {"type": int, "metavar": "N"}
    text = "significant bits of images stored in over 8 bits (e.g. 12-bit X-rays in 16-bit PNGs)"
    unset = "the PNG's sBIT chunk, else the table's largest pixel rounded up to 8/10/12/14/16 bits"
    if owner is None:
        parser.add_argument(*flags, dest="bit_depth", help=f"{text} (default: {unset})", **options)
    else:
        add_setting(parser, owner, "bit_depth", *flags, help=text, unset=unset, **options)


def add_cache_flags(parser: argparse.ArgumentParser) -> None:
    """What fills the image cache; ``table check`` fills it too, so train decodes nothing."""
    parser.add_argument("--size", type=int, default=128,
                        help="square size in pixels to cache (the model's: v1 128, small 64)")
    add_cache_dir_flag(parser)
    add_bit_depth_flag(parser)


def add_cache_dir_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache-dir", "--cache_dir", dest="cache_dir", help="cache folder")


def _find_duplicates() -> Any:
    """The owner of the twin flags, imported when read (it loads the image cache)."""
    from rxwgan.data.duplicates import find_duplicates

    return find_duplicates


def register(verbs: argparse._SubParsersAction) -> None:
    """Add ``table check|build|split|dedupe``, ``cache`` and ``demo-data``."""
    table = verbs.add_parser("table", help="check, build, split or dedupe a table of images")
    table_verbs = table.add_subparsers(dest="table_verb", required=True, parser_class=OneLineParser)

    check = table_verbs.add_parser("check", help="validate a table and summarise it")
    check.add_argument("table")
    check.add_argument("-t", "--target", type=int, help="also check this class is not empty")
    add_cache_flags(check)
    add_table_flags(check)
    twins = partial(add_setting, check, Lazy(_find_duplicates))
    twins("near_threshold", "--near-threshold", "--near_threshold", type=float, metavar="GREY",
          help="near twins: largest RMS difference between two images, in grey levels of 255, after "
               "the best shift by a pixel or so")
    twins("near", "--no-near", "--no_near", action="store_false",
          help="skip the search for near twins (exact twins are still listed)")
    add_split_flags(check, "count twins across a split, ", default_fold=False)
    check.set_defaults(handler=cmd_table_check)

    dedupe = table_verbs.add_parser("dedupe", help="write the table keeping one row per exact twin group")
    dedupe.add_argument("table")
    dedupe.add_argument("-o", "--output", required=True, help="CSV to write (never the table itself)")
    dedupe.add_argument("--overwrite", action="store_true")
    add_cache_dir_flag(dedupe)
    add_bit_depth_flag(dedupe)
    add_table_flags(dedupe)
    dedupe.set_defaults(handler=cmd_table_dedupe)

    build = table_verbs.add_parser("build", help="write a table for a folder of images")
    build.add_argument("folder", help="Shenzhen/Montgomery folder (images/, clinical/) "
                       "or one sub-folder per class")
    build.add_argument("-o", "--output", required=True, help="CSV to write")
    build.add_argument("--classes", help="map class folder names to targets: normal=0,tb=1")
    build.add_argument("--overwrite", action="store_true")
    build.set_defaults(handler=cmd_table_build)

    split = table_verbs.add_parser("split", help="write the table with each row's partition")
    split.add_argument("table")
    split.add_argument("-o", "--output", required=True, help="CSV to write")
    split.add_argument("--overwrite", action="store_true")
    add_split_flags(split, default_fold=False)
    add_table_flags(split)
    split.set_defaults(handler=cmd_table_split)

    cache = verbs.add_parser("cache", help="decode a table's images into the cache")
    cache.add_argument("table")
    add_cache_flags(cache)
    add_table_flags(cache)
    cache.set_defaults(handler=cmd_cache)

    demo = verbs.add_parser("demo-data", help="write procedural chest X-ray phantoms and their table")
    demo.add_argument("-o", "--output", required=True, help="folder to write")
    setting = partial(add_setting, demo, write_demo_data)
    setting("n_images", "-n", type=int, metavar="N", help="number of images")
    setting("size", "--size", type=int, help="square size in pixels")
    setting("seed", "--seed", type=int, help="seed of every image and of the table")
    setting("findings", "--findings", choices=tuple(FINDINGS),
            help="TB findings drawn to be seen (clear), or fewer, smaller and fainter (subtle: a "
                 "classifier trained on real rows stays well below AUC 1, so synthetic rows have room "
                 "to help; use it with fewer rows, e.g. -n 120)")
    demo.add_argument("--overwrite", action="store_true")
    demo.set_defaults(handler=cmd_demo_data)
