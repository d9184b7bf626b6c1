"""Verbs of the data layer: ``table check|build|split``, ``cache``, ``demo-data``."""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

from rxwgan.base.errors import RxwganError
from rxwgan.cli.common import (
    EXIT_USAGE,
    OneLineParser,
    add_setting,
    add_split_flags,
    add_table_flags,
    refuse_existing,
    setting_value,
    split_spec,
)
from rxwgan.data.phantoms import FINDINGS, write_demo_data


def cmd_table_check(args: argparse.Namespace) -> int:
    from rxwgan.data.cache import ImageCache
    from rxwgan.data.images import check_bit_depth
    from rxwgan.data.table import read_rows, validate

    check_bit_depth(args.bit_depth)
    table = read_rows(Path(args.table), args.path_column, args.target_column)
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
    if problems:
        for problem in problems:
            print(f"problem: {problem}", file=sys.stderr)
        return EXIT_USAGE
    print("no problems found")
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
    from rxwgan.data.splits import partition
    from rxwgan.data.table import read_table

    spec = split_spec(args, default_fold=False)
    table = read_table(args.table, args.path_column, args.target_column, check_files=False)
    out = Path(args.output)
    refuse_existing(out, args.overwrite)
    parts = partition(table.targets, spec)
    table.write(out, {"partition": parts.labels(len(table))})
    print(f"wrote {out}: {_describe_partition(table.targets, parts)}")
    return 0


def _describe_partition(targets, parts) -> str:
    pieces = []
    for name in ("train", "val", "test"):
        rows = getattr(parts, name)
        if len(rows) or name != "test":
            per_class = Counter(int(t) for t in targets[rows])
            pieces.append(f"{name} {len(rows)} (target 0: {per_class[0]}, target 1: {per_class[1]})")
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
    parser.add_argument("--cache-dir", "--cache_dir", dest="cache_dir", help="cache folder")
    add_bit_depth_flag(parser)


def register(verbs: argparse._SubParsersAction) -> None:
    """Add ``table check|build|split``, ``cache`` and ``demo-data``."""
    table = verbs.add_parser("table", help="check, build or split a table of images")
    table_verbs = table.add_subparsers(dest="table_verb", required=True, parser_class=OneLineParser)

    check = table_verbs.add_parser("check", help="validate a table and summarise it")
    check.add_argument("table")
    check.add_argument("-t", "--target", type=int, help="also check this class is not empty")
    add_cache_flags(check)
    add_table_flags(check)
    check.set_defaults(handler=cmd_table_check)

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
