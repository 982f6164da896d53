"""Run a batch of a dynamic model at (k, mapping) and measure its wall latency.

A mapping is the device (fixed per executor: "cpu" or "cuda[:n]"), the CPU affinity (a set of CPU
ids) and the intra-op thread count. When k, the thread count, the affinity or the batch shape
changes, the next run is preceded by ``warmup_runs`` untimed passes: oneDNN picks kernels per shape,
the thread pool resizes, and moved threads start with cold caches, none of which belongs in a
latency sample.

The mapping is process-wide and sticky: affinity is applied to every thread of the process (torch's
worker threads included, which a plain ``sched_setaffinity(0)`` would miss) and stays until a run
asks for another one or ``close()`` restores the affinity and thread count found at construction.
``cpus=None`` means that original affinity. Latency covers the forward pass only: the input is
already on the device when the clock starts, CUDA work is synchronised before it stops, and the
copy of the outputs back to numpy is excluded.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from governor.core.modelmeta import ModelMeta
from governor.runtime.modelfile import load_model
from governor.runtime.nets import DynamicNet

__all__ = ["Executor", "RunResult", "cuda_available", "set_process_affinity"]


def cuda_available() -> bool:
    """Whether torch can run on a CUDA device here (a Jetson GPU with NVIDIA's torch wheel)."""
    return bool(torch.cuda.is_available())


class RunResult(NamedTuple):
    outputs: np.ndarray  # logits, float32 (N, classes)
    latency_ms: float  # measured wall time of the forward pass


def _thread_ids() -> list[int]:
    try:
        return [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:  # no procfs: only the calling thread can be moved
        return [0]


def set_process_affinity(cpus: Iterable[int]) -> None:
    """Pin every thread of this process to ``cpus`` (threads that exit meanwhile are skipped)."""
    mask = set(cpus)
    for tid in _thread_ids():
        try:
            os.sched_setaffinity(tid, mask)
        except ProcessLookupError:
            continue


class Executor:
    """``Executor(model_path_or_net, device="cpu").run(batch, k, threads=2, cpus=[0, 1])``."""

    def __init__(self, model: str | Path | DynamicNet, *, device: str = "cpu", warmup_runs: int = 2,
                 clock: Callable[[], int] = time.perf_counter_ns):
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but torch sees no CUDA device; use device='cpu'")
        self.meta: ModelMeta | None = None  # the model file's metadata; None when given a module
        if isinstance(model, DynamicNet):
            self.net = model
        else:
            loaded = load_model(Path(model))
            self.net, self.meta = loaded.net, loaded.meta
        self.net.to(self.device).eval()
        self.warmup_runs, self._clock = warmup_runs, clock
        self._original_cpus = os.sched_getaffinity(0)
        self._original_threads = torch.get_num_threads()
        self._applied_cpus: frozenset[int] | None = None
        self._warm_key: tuple[object, ...] | None = None
        self.warmups = 0  # untimed passes run so far

    @property
    def groups(self) -> int:
        return self.net.groups

    def run(self, batch: np.ndarray | torch.Tensor, k: int, *, threads: int | None = None,
            cpus: Sequence[int] | None = None) -> RunResult:
        """Run ``batch`` (N, C, H, W raw pixels) on the first k groups; returns logits and latency in ms."""
        x = self._to_input(batch)
        self.net.set_active_groups(k)
        self._apply_mapping(threads, cpus)
        key = (k, torch.get_num_threads(), self._applied_cpus, tuple(x.shape))
        with torch.inference_mode():
            if key != self._warm_key:
                for _ in range(self.warmup_runs):
                    self._forward(x)
                self.warmups += self.warmup_runs
                self._warm_key = key
            start = self._clock()
            logits = self._forward(x)
            elapsed_ns = self._clock() - start
        return RunResult(logits.float().cpu().numpy(), elapsed_ns / 1e6)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return out

    def _to_input(self, batch: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)) if isinstance(batch, np.ndarray) else batch
        expected = tuple(self.net.input_shape)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"batch has shape {tuple(x.shape)}; this model takes (N, {', '.join(map(str, expected))})")
        return x.to(self.device, torch.float32)

    def _apply_mapping(self, threads: int | None, cpus: Sequence[int] | None) -> None:
        if threads is not None and threads != torch.get_num_threads():
            if threads < 1:
                raise ValueError(f"threads must be >= 1, got {threads}")
            torch.set_num_threads(threads)
        wanted = None if cpus is None else frozenset(cpus)
        if wanted != self._applied_cpus:
            unknown = (wanted or frozenset()) - self._original_cpus
            if unknown or wanted == frozenset():
                raise ValueError(f"cpus {sorted(wanted or ())} are not all available to this process "
                                 f"(allowed: {sorted(self._original_cpus)})")
            set_process_affinity(self._original_cpus if wanted is None else wanted)
            self._applied_cpus = wanted

    def close(self) -> None:
        """Restore the affinity and thread count found at construction."""
        if self._applied_cpus is not None:
            set_process_affinity(self._original_cpus)
            self._applied_cpus = None
        torch.set_num_threads(self._original_threads)
        self._warm_key = None

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
