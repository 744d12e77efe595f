"""Memory model: weights, peak live activations (inference), and training memory of a subnet.

Inference peak is a liveness simulation over the block graph (MCUNet-style: what is alive while
each operator runs, residual inputs included), in one of two policies:

- `eager`  what PyTorch eager mode actually holds, so it can be checked against a measurement:
           a module's input stays alive until the module returns (the caller's argument keeps it),
           so the stem's output lives through all blocks and a block's input through its body;
           conv -> BN -> activation allocates the conv output and the BN output (BN is not fused,
           activations are in place); SE allocates its small pooled/gate tensors and the gated map;
           the CPU slow convolution path (`thnn_conv2d`, chosen by PyTorch for small single-thread
           batch-1 convs) allocates an im2col buffer of cin*k*k*hout*wout, which we add where
           PyTorch's dispatch rule (ConvUtils `use_mkldnn`) would take that path.
- `ideal`  what an inference engine with a memory planner needs (MCUNetV2's definition): conv+BN+act
           fused, each tensor freed right after its last consumer, residual inputs kept until the add.

Training memory = parameters + gradients + optimizer state (`optimizer_slots` copies, 2 for Adam,
1 for SGD with momentum) + every activation autograd keeps for backward (the outputs of each conv,
BN and SE step, plus the input) + the inference-style transient peak.

Every part of the network (stem, each block kind, head) is simulated from the layers the block-kind
registry lists for it (`hwnas.search_space.block_layers`): the rules below are per layer, never per
kind, so a new kind gets its memory from its record.

Units: bytes. `dtype_bytes` 4 for float32 (parameters and activations alike). `target="cuda"` rounds
every allocation up to the CUDA caching allocator's 512-byte granule and drops the CPU im2col buffer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from hwnas.search_space import (
    Arch,
    BlockConfig,
    Layer,
    Space,
    block_kind,
    block_layers,
    se_channels,
)

__all__ = ["MemoryModel", "MemoryEstimate", "measure_peak_memory", "measure_param_bytes", "measure_training_peak_memory"]

_POLICIES = ("eager", "ideal")


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes of one arch: weights (params + buffers), inference peak activations, training total."""

    params_bytes: int
    buffers_bytes: int
    peak_activation_bytes: int
    training_bytes: int

    @property
    def weights_bytes(self) -> int:
        return self.params_bytes + self.buffers_bytes

    @property
    def inference_bytes(self) -> int:
        return self.weights_bytes + self.peak_activation_bytes

    def to_dict(self) -> dict[str, int]:
        return {"params_bytes": self.params_bytes, "buffers_bytes": self.buffers_bytes,
                "peak_activation_bytes": self.peak_activation_bytes, "training_bytes": self.training_bytes,
                "inference_bytes": self.inference_bytes}


class _Sim:
    """Running total and peak of live bytes (each allocation rounded up to `granule` bytes)."""

    def __init__(self, start: int = 0, granule: int = 1):
        self.granule = granule
        self.cur = self._round(start)
        self.peak = self.cur

    def _round(self, n: int) -> int:
        g = self.granule
        return -(-n // g) * g if n > 0 else n

    def alloc(self, n: int) -> int:
        n = self._round(n)
        self.cur += n
        self.peak = max(self.peak, self.cur)
        return n

    def free(self, n: int) -> None:
        self.cur -= self._round(n)


class MemoryModel:
    """Analytic memory of archs of one space at a batch size, dtype and policy."""

    def __init__(self, space: Space, *, batch_size: int = 1, dtype_bytes: int = 4, policy: str = "eager",
                 threads: int = 1, optimizer_slots: int = 1, target: str = "cpu"):
        if policy not in _POLICIES:
            raise ValueError(f"policy={policy!r}; allowed: {_POLICIES}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r} must be an int >= 1")
        if dtype_bytes not in (1, 2, 4, 8):
            raise ValueError(f"dtype_bytes={dtype_bytes!r}; allowed: 1, 2, 4, 8")
        if optimizer_slots not in (0, 1, 2):
            raise ValueError(f"optimizer_slots={optimizer_slots!r}; allowed 0 (SGD), 1 (momentum), 2 (Adam)")
        if target not in ("cpu", "cuda"):
            raise ValueError(f"target={target!r}; allowed: cpu, cuda")
        self.target = target
        # CUDA's caching allocator hands out blocks in multiples of 512 bytes; cuDNN picks its own
        # algorithms (no im2col buffer of PyTorch's slow CPU path)
        self._granule = 512 if target == "cuda" else 1
        self.space = space
        self.batch_size = batch_size
        self.dtype_bytes = dtype_bytes
        self.policy = policy
        self.threads = threads
        self.optimizer_slots = optimizer_slots
        self._weights: dict[str, tuple[int, int]] = {}

    # ---- weights ------------------------------------------------------------------------------------
    def _block_weights(self, c: BlockConfig) -> tuple[int, int]:
        """(param bytes, buffer bytes) of one block, from the real module (cached per configuration)."""
        w = self._weights.get(c.key)
        if w is None:
            from hwnas.supernet.static import build_block

            m = build_block(self.space, c)
            p = sum(t.numel() for t in m.parameters()) * self.dtype_bytes
            b = sum(t.numel() * t.element_size() for t in m.buffers())
            w = self._weights[c.key] = (int(p), int(b))
        return w

    # ---- activations ----------------------------------------------------------------------------------
    def _t(self, c: int, h: int) -> int:
        return self.batch_size * c * h * h * self.dtype_bytes

    def _uses_columns(self, cin: int, cout: int, k: int, stride: int, groups: int, h: int) -> bool:
        """Whether PyTorch's CPU conv takes the slow im2col path (mirrors ConvUtils.h use_mkldnn, fp32)."""
        if self.policy != "eager" or self.dtype_bytes != 4 or self.target != "cpu":
            return False
        strided = stride > 1
        first = strided or self.batch_size >= 16 or k != 1 or self.threads > 1
        second = groups > 1 or k > 3 or self.batch_size > 1 or self.batch_size * cin * h * h > 20480
        mkldnn = first and second
        return not mkldnn and (k != 1 or stride != 1)

    def _conv_bn(self, sim: _Sim, cin: int, cout: int, k: int, stride: int, h: int, groups: int = 1) -> int:
        """Eager ConvBNAct with its input held by the caller; returns the output bytes (left allocated)."""
        ho = -(-h // stride)
        cols = self._t(cin // groups * k * k, ho) if self._uses_columns(cin, cout, k, stride, groups, h) else 0
        sim.alloc(cols)
        a = sim.alloc(self._t(cout, ho))
        sim.free(cols)
        b = sim.alloc(self._t(cout, ho))  # BN output (not in place); activation runs in place on it
        sim.free(a)
        return b

    def _se(self, sim: _Sim, ch: int, h: int) -> int:
        small = self.batch_size * ch * self.dtype_bytes
        mid = self.batch_size * se_channels(ch) * self.dtype_bytes
        pooled = sim.alloc(small)
        r = sim.alloc(mid)
        e = sim.alloc(small)
        sim.free(r)
        g1 = sim.alloc(small)  # x + 3
        g2 = sim.alloc(small)  # relu6
        sim.free(g1)
        g3 = sim.alloc(small)  # / 6
        sim.free(g2)
        sim.free(e)
        out = sim.alloc(self._t(ch, h))  # x * gate
        sim.free(g3)
        sim.free(pooled)
        return out

    def _block_eager(self, sim: _Sim, c: BlockConfig) -> int:
        """Run one stage block on the simulator (input already live and held); return output bytes."""
        prev = 0  # the block input: held by the caller, never freed here
        for layer in block_layers(self.space, c):
            if layer.op == "conv":
                y = self._conv_bn(sim, layer.cin, layer.cout, layer.kernel, layer.stride, layer.in_size, layer.groups)
            elif layer.op == "se":
                y = self._se(sim, layer.cout, layer.in_size)
            else:
                raise ValueError(f"block {c.key}: no eager memory rule for a {layer.op!r} layer inside a stage block")
            sim.free(prev)
            prev = y
        if _residual(c):  # residual add allocates the sum, then the body output dies
            out = sim.alloc(self._t(c.cout, c.out_size))
            sim.free(prev)
            return out
        return prev

    def _block_ideal(self, sim: _Sim, c: BlockConfig, x: int) -> int:
        """Fused operators, tensors freed after their last consumer; `x` (live input) is freed here.

        Each conv (+BN +activation) writes one tensor; SE gating and the residual add run in place.
        """
        res = _residual(c)
        prev = None
        for layer in block_layers(self.space, c):
            if layer.op != "conv":
                continue
            y = sim.alloc(self._t(layer.cout, layer.out_size))
            if prev is not None:
                sim.free(prev)
            elif not res:  # the input dies once the first conv has read it, unless the residual needs it
                sim.free(x)
            prev = y
        if res:
            sim.free(x)
        return int(prev or 0)

    def activation_peak(self, arch: Arch | str) -> int:
        """Peak live activation bytes of one inference, the input tensor and the logits included."""
        sp = self.space
        cfgs = sp.block_configs(sp.parse(arch))
        stem, blocks, head = cfgs[0], cfgs[1:-1], cfgs[-1]
        x_in = self._t(sp.in_channels, stem.in_size)
        sim = _Sim(x_in, self._granule)
        if self.policy == "ideal":
            cur = sim.alloc(self._t(stem.cout, stem.out_size))
            sim.free(x_in)
            for c in blocks:
                cur = self._block_ideal(sim, c, cur)
            h = sp.head
            if h.expand_channels:
                e = sim.alloc(self._t(h.expand_channels, head.in_size))
                sim.free(cur)
                cur = e
            pooled = sim.alloc(self.batch_size * (h.expand_channels or head.cin) * self.dtype_bytes)
            sim.free(cur)
            sim.alloc(self.batch_size * sp.num_classes * self.dtype_bytes)
            sim.free(pooled)
            return int(sim.peak)
        s = self._conv_bn(sim, sp.in_channels, stem.cout, stem.kernel, stem.stride, stem.in_size)
        prev = s  # the stem output: held by the blocks Sequential's caller until all blocks return
        for i, c in enumerate(blocks):
            out = self._block_eager(sim, c)
            if i > 0:
                sim.free(prev)
            prev = out
        if blocks:
            sim.free(s)
        # head: expand ConvBNAct, mean-pool, (feature), dropout (identity in eval), linear
        h = sp.head
        ch = head.cin
        e = 0
        if h.expand_channels:
            e = self._conv_bn(sim, head.cin, h.expand_channels, 1, 1, head.in_size)
            ch = h.expand_channels
        pooled = sim.alloc(self.batch_size * ch * self.dtype_bytes)
        sim.free(e)
        f = 0
        if h.feature_channels:
            f = sim.alloc(self.batch_size * h.feature_channels * self.dtype_bytes)
        sim.alloc(self.batch_size * sp.num_classes * self.dtype_bytes)
        sim.free(f)
        sim.free(pooled)
        return int(sim.peak)

    def training_activations(self, arch: Arch | str) -> int:
        """Bytes autograd keeps for backward: the input and every conv/BN/SE/pool/residual output of the net.

        Per layer: a conv keeps its output and, with BN, the BN output too; SE keeps the gated map;
        pooling keeps the pooled vector; the classifier's logits are not counted. A residual block
        keeps its sum where its kind's record says so (`training_keeps_sum`).
        """
        sp = self.space
        cfgs = sp.block_configs(sp.parse(arch))
        total = self._t(sp.in_channels, cfgs[0].in_size)
        for c in cfgs:
            total += sum(self._kept(layer) for layer in block_layers(sp, c))
            if _residual(c) and block_kind(c.kind).training_keeps_sum:
                total += self._t(c.cout, c.out_size)
        return int(total)

    def _kept(self, layer: Layer) -> int:
        if layer.op == "conv":
            return (2 if layer.bn else 1) * self._t(layer.cout, layer.out_size)
        if layer.op in ("se", "pool"):
            return self._t(layer.cout, layer.out_size)
        return 0

    # ---- public -------------------------------------------------------------------------------------
    def estimate(self, arch: Arch | str) -> MemoryEstimate:
        arch = self.space.parse(arch)
        p = b = 0
        for c in self.space.block_configs(arch):
            wp, wb = self._block_weights(c)
            p, b = p + wp, b + wb
        peak = self.activation_peak(arch)
        train = p * (2 + self.optimizer_slots) + b + self.training_activations(arch) + peak
        return MemoryEstimate(int(p), int(b), peak, int(train))

    def predict(self, arch: Arch | str) -> float:
        """Inference memory in MB (weights + peak activations), the searchers' `memory_mb` objective."""
        return self.estimate(arch).inference_bytes / 2**20

    def predict_many(self, archs: list[Arch | str]) -> np.ndarray:
        return np.array([self.predict(a) for a in archs])


def _residual(c: BlockConfig) -> bool:
    """Whether a stage block adds its input back (stride 1, same width), as every static block does."""
    return c.stage is not None and c.stride == 1 and c.cin == c.cout


# ---- measurements --------------------------------------------------------------------------------------
def measure_param_bytes(module: Any) -> tuple[int, int]:
    return (int(sum(p.numel() * p.element_size() for p in module.parameters())),
            int(sum(b.numel() * b.element_size() for b in module.buffers())))


def measure_peak_memory(module: Any, input_shape: tuple[int, ...], *, threads: int = 1, device: str = "cpu") -> int:
    """Measured peak activation bytes of one inference (input included).

    CPU: the PyTorch profiler's memory events (every allocation and free of the CPU allocator,
    with time stamps), replayed in time order; an operator's own net allocation is placed at its
    start when positive and at its end when negative (a buffer it frees before returning).
    CUDA: `torch.cuda.max_memory_allocated` around the call, minus what was allocated before.
    """
    import torch

    module = module.eval()
    if device == "cuda":
        module = module.cuda()
        x = torch.randn(*input_shape, device="cuda")
        with torch.inference_mode():
            module(x)
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            y = module(x)
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated() - base
        del y
        return int(peak + x.numel() * x.element_size())
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as tprofile

    x = torch.randn(*input_shape)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            module(x)  # first call: one-time allocations (weight reorders, caches) stay out of the count
            with tprofile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
                y = module(x)
        del y
    finally:
        torch.set_num_threads(old)
    return int(_replay_peak(prof) + x.numel() * x.element_size())


def _replay_peak(prof: Any) -> int:
    """Peak of the CPU allocator's live bytes, from the profiler's memory events in time order."""
    deltas = []
    for e in prof.events():
        m = e.self_cpu_memory_usage
        if not m:
            continue
        t = e.time_range.start if (m > 0 or e.name == "[memory]") else e.time_range.end
        deltas.append((t, 0 if m > 0 else 1, m))
    deltas.sort()
    cur = peak = 0
    for _, _, m in deltas:
        cur += m
        peak = max(peak, cur)
    return int(peak)


def measure_training_peak_memory(module: Any, input_shape: tuple[int, ...], *, threads: int = 1) -> int:
    """Measured peak bytes of one CPU training step's forward + backward (gradients included, weights and
    optimizer state excluded), input included; compare with
    `training_bytes - params_bytes * (1 + optimizer_slots) - buffers_bytes` of the model."""
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as tprofile

    module = module.train()
    x = torch.randn(*input_shape)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        module(x).sum().backward()  # warm-up; then start from no gradients, as the first step does
        module.zero_grad(set_to_none=True)
        with tprofile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            module(x).sum().backward()
        module.zero_grad(set_to_none=True)
    finally:
        torch.set_num_threads(old)
    return int(_replay_peak(prof) + x.numel() * x.element_size())
