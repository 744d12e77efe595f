"""`python -m hwnas.pipeline._time_exports SPEC.json`: the child process of
`export_latency_check(..., fresh_process=True)`. It rebuilds each net (a checkpoint folder, or an
arch with its weights from a safetensors file, or an arch with fresh weights), times them all with
the run's protocol in this new process and writes the result list as JSON to the spec's `out`."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    from hwnas.pipeline.profile import export_latency_check

    space = None
    if spec.get("space") is not None:
        from hwnas.search_space import Space

        space = Space.from_dict(spec["space"])
    nets: list = []
    for it in spec["nets"]:
        if "checkpoint" in it:
            nets.append(Path(it["checkpoint"]))
            continue
        from hwnas.supernet import build_static

        assert space is not None
        arch = space.parse(it["arch"])
        net = build_static(space, arch)
        if "weights" in it:
            from safetensors.torch import load_file

            net.load_state_dict(load_file(it["weights"]), strict=True)
        nets.append((net.eval(), arch))
    rows = export_latency_check(Path(spec["run_dir"]), spec["devices"], nets, space=space,
                                progress=spec["progress"], repeats=spec["repeats"], anchors=spec.get("anchors", 0))
    tmp = Path(spec["out"] + ".part")
    tmp.write_text(json.dumps(rows))
    tmp.replace(spec["out"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
