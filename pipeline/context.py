"""`RunContext`: what the stages of one invocation share (the config, the space, the run directory,
the stages' summaries) and the expensive things they load once (data loaders, trained supernet)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwnas.pipeline.config import RunConfig

__all__ = ["RunContext"]


@dataclass
class RunContext:
    """One invocation of the main job. Mutable on purpose: `summaries` fills in stage by stage
    (a skipped stage contributes its stamp's summary) and the loaders and the supernet are loaded
    on first use, at most once, by the stages that need them."""

    cfg: RunConfig
    space: Any  # hwnas.search_space.Space (not imported here: the config side stays light)
    run_dir: Path
    progress: bool = True
    bundle: Path | None = None  # the shipped bundle the run takes its supernet, pairs and predictor from
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)
    _loaders: Any = field(default=None, init=False, repr=False)
    _supernet: Any = field(default=None, init=False, repr=False)
    _pretrained: Any = field(default=None, init=False, repr=False)

    def loaders(self) -> Any:
        """The run's dataset split (train / search-val / test), loaded once."""
        if self._loaders is None:
            from hwnas.data import make_loaders

            cfg = self.cfg
            self._loaders = make_loaders(cfg.dataset, cfg.data_dir, space=self.space, seed=cfg.seed, subset=cfg.subset)
        return self._loaders

    @property
    def supernet_dir(self) -> Path:
        """Where the run's supernet lives: the bundle's folder, or `<run>/supernet` when trained."""
        return self.bundle if self.bundle is not None else self.run_dir / "supernet"

    def pretrained(self) -> Any:
        """The run's bundle (`hwnas.estimators.Bundle`), its hashes and space checked once per invocation."""
        if self.bundle is None:
            raise ValueError("this run trains its supernet: it has no bundle")
        if self._pretrained is None:
            from hwnas.estimators.bundle import load_bundle

            self._pretrained = load_bundle(self.bundle, space=self.space)
        return self._pretrained

    def supernet(self) -> Any:
        """The run's supernet (the bundle's, or the train stage's), in eval mode, loaded once."""
        if self._supernet is None:
            if self.bundle is not None:
                self._supernet = self.pretrained().supernet().eval()
            else:
                from hwnas.supernet import load_supernet

                self._supernet = load_supernet(self.supernet_dir, space=self.space).eval()
        return self._supernet
