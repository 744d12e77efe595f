"""`hwnas space`: inspect search spaces (presets or YAML files)."""

from __future__ import annotations

import argparse
import json

from hwnas._cli_choices import SEED, Int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("space", help="show a search space, sample or check archs",
                       description="Inspect a search space: its stages and size, random archs, or check an arch string.")
    p.add_argument("name", nargs="?", help="preset name or path to a space YAML (omit to list presets)")
    p.add_argument("--sample", type=Int(0, 1_000_000), default=0, metavar="N", help="print N random archs (0..1000000)")
    p.add_argument("--seed", type=SEED, default=0, help="seed for --sample, 0..2**32-1 (default 0)")
    p.add_argument("--check", metavar="ARCH", help="validate an arch string against the space")
    p.add_argument("--json", action="store_true", help="print the space as JSON")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from hwnas.search_space import Space, available_presets

    if not args.name:
        if args.check or args.sample or args.json:
            from hwnas.errors import SpaceError

            flag = "--check" if args.check else "--sample" if args.sample else "--json"
            raise SpaceError(f"{flag} needs a space: `hwnas space NAME {flag} ...` (NAME a preset: "
                             f"{', '.join(available_presets())}, or a YAML path)")
        for n in available_presets():
            s = Space.preset(n)
            print(f"{n:16s} size {s.size():.3e}  {s.description}")
        return 0
    space = Space.preset(args.name)
    if args.check:
        arch = space.parse(args.check)
        print(f"ok: {arch}")
        return 0
    if args.json:
        print(json.dumps(space.to_dict(), indent=2))
    elif not args.sample:
        print(f"{space.name}: {space.description}")
        print(f"  input {space.in_channels}ch, resolutions {list(space.resolutions)}, {space.num_classes} classes")
        print(f"  stem {space.stem}")
        for i, st in enumerate(space.stages, start=1):
            print(f"  s{i}: kinds {list(st.kinds)} depth {list(st.depths)} k {list(st.kernels)} e {list(st.expands)} "
                  f"w {list(st.widths)} stride {st.stride} se {st.se} {st.act}")
        print(f"  head {space.head}")
        print(f"  size {space.size():.4e} archs; {len(space.distinct_block_configs())} distinct block configs")
        print(f"  min {space.min_arch()}")
        print(f"  max {space.max_arch()}")
    for a in space.sample_many(args.sample, args.seed):
        print(a)
    return 0
