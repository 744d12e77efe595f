"""Ready spaces: YAML files under `configs/spaces/`, loaded by name."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path

from hwnas.errors import SpaceError
from hwnas.search_space._arch import Arch, BlockArch, StageArch
from hwnas.search_space._blocks import block_kind
from hwnas.search_space._space import Space

__all__ = ["PRESETS_DIR", "available_presets", "load_preset", "ofa_arch"]

PRESETS_DIR = Path(__file__).resolve().parent.parent / "configs" / "spaces"


def available_presets() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


@cache
def _load(path: str) -> Space:
    return Space.from_yaml(path)


def load_preset(name: str) -> Space:
    """A preset by name, or a space YAML file by path."""
    if not isinstance(name, str) or not name:
        raise SpaceError(f"space must be a preset name or a YAML path; presets: {available_presets()}")
    p = PRESETS_DIR / f"{name}.yaml"
    if p.is_file():
        return _load(str(p))
    if Path(name).is_dir():
        raise SpaceError(f"space {name!r} is a directory; give a preset name ({', '.join(available_presets())}) "
                         "or a space YAML file")
    if name.endswith((".yaml", ".yml")):
        return _load(str(Path(name).resolve()))
    raise SpaceError(f"unknown space preset {name!r}; available: {available_presets()} (or a path to a .yaml file)")


def ofa_arch(space: Space, resolution: int, ks: Sequence[int], e: Sequence[int], d: Sequence[int]) -> Arch:
    """Build an arch of an OFA-layout space from OFA's flat lists (the form of its published data).

    `ks` and `e` hold one value per block slot of the elastic stages (4 slots each in OFA),
    `d` one depth per elastic stage; slots beyond a stage's depth are ignored. Fixed stages
    (a single choice for everything, like OFA's first block) are filled in.
    """
    elastic = [i for i, st in enumerate(space.stages) if len(st.depths) > 1]
    if len(d) != len(elastic):
        raise SpaceError(f"{len(d)} depths given, space {space.name!r} has {len(elastic)} elastic stages")
    slots = max(space.stages[i].max_depth for i in elastic)
    if len(ks) != len(elastic) * slots or len(e) != len(elastic) * slots:
        raise SpaceError(f"expected {len(elastic) * slots} kernel and expand values, got {len(ks)} and {len(e)}")
    stages = []
    for i, st in enumerate(space.stages):
        if i in elastic:
            n = elastic.index(i)
            depth = int(d[n])
            blocks = tuple(BlockArch(st.kinds[0], int(ks[n * slots + j]), int(e[n * slots + j])) for j in range(depth))
        else:
            blocks = (BlockArch(st.kinds[0], st.kernels[0], block_kind(st.kinds[0]).expand_of(st.expands[0])),) * st.depths[0]
        stages.append(StageArch(st.widths[0], blocks))
    return space.validate(Arch(int(resolution), tuple(stages), space.name))
