"""Measure training steps: latency and peak memory per (active groups k, batch size).

Theory of operation
-------------------
One measured point is one training step, perf4sight style: forward, cross-entropy loss, backward,
optimiser step (SGD lr 0.01, momentum 0.9, weight decay 5e-4, or Adam), on random inputs.

Every point runs in a fresh worker process forked from a server that has imported torch and this
module and done nothing else (multiprocessing "forkserver"), so no allocator state, oneDNN cache or
thread pool leaks from one point to the next, and an out-of-memory failure kills a worker, never
the caller.

Memory on CPU is *measured*: the worker reads its resident set (VmRSS) while idle (torch imported,
model not yet built), builds model, optimiser and batch, runs the steps and reads the kernel's
high-water mark VmHWM. The worker only grows from its idle point on, so VmHWM is the steps' peak
(no reset through ``/proc/self/clear_refs`` is needed; on this VM that write took 2 s). The figure
kept is ``VmHWM - idle VmRSS`` in MB: weights, input batch, gradients, optimiser state,
activations, workspaces and the runtime pages the first step touches, without the idle torch
process (perf4sight's "minus idle used memory"). On CUDA it is the caching allocator's peak
reserved memory (peak allocated is kept too).

The memory cap (MB, same basis) is enforced twice: a watchdog thread ends the worker as soon as the
increment passes the cap, and RLIMIT_AS (address space at the idle point + cap + 1 GiB of slack for
thread stacks and arenas) makes allocations beyond it fail. Either way, like a kernel OOM kill or a
torch "can't allocate memory", the point becomes a row with ``passed=False`` and the sweep of that
k stops at it.

Latency is the median wall time of the timed steps after warm-up, with torch's thread count fixed
(all CPUs of the affinity mask unless told); single-threaded runs also keep the median CPU time of
the step (the time it held a core). Contention is measured, not guessed: from /proc/stat, the share
of the step's cores that other processes took while it was timed. A point measured under more than
``max_contention`` is measured again after a pause (``retries``) and the quietest run is kept.
``passes`` > 1 repeats the whole sweep, so each point is sampled at several moments (contention
comes in bursts of seconds to minutes), and a row reports the median over its passes.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import resource
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from governor.core.training.cost import TrainingProfile, TrainingRow
from governor.core.training.features import LayerShape, NetworkShape, network_from_costs

ModelFactory = Callable[[], nn.Module]
MB = 1024.0 * 1024.0
_EXIT_CAP = 3
_SLACK_BYTES = 1 << 30


class TrainingProfileError(RuntimeError):
    """A training step failed for a reason other than memory; the message says what to fix."""


@dataclass(frozen=True)
class StepOptions:
    """How one point is measured. Times in seconds, memory in MB."""

    warmup: int = 2
    repeats: int = 5
    min_seconds: float = 0.3  # keep timing until this much measured time (small batches are fast)
    max_repeats: int = 50
    threads: int | None = None  # torch intra-op threads; None: every CPU in the affinity mask
    cpus: tuple[int, ...] | None = None  # pin the worker to these CPUs (no migrations mid-step)
    memory_cap_mb: float | None = None
    optimizer: str = "sgd"  # "sgd" or "adam"
    device: str = "cpu"
    timeout_s: float = 600.0
    max_contention: float = 0.2  # re-measure a point while others used more than this share of the CPUs
    retries: int = 2
    retry_wait_s: float = 3.0


def default_memory_cap_mb(fraction: float = 0.8) -> float:
    """``fraction`` of MemAvailable, in MB: the cap when the user gives none."""
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return fraction * int(line.split()[1]) / 1024.0
    raise TrainingProfileError("/proc/meminfo has no MemAvailable; pass an explicit memory cap")


# --- layer shapes --------------------------------------------------------------------------------

class _ShapeRecorder(TorchFunctionMode):
    """Records every conv2d / linear / addmm call, whichever module (or none) issues it."""

    def __init__(self) -> None:
        super().__init__()
        self.layers: list[LayerShape] = []

    def __torch_function__(self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in (F.conv2d, torch.conv2d):
            self.layers.append(_conv_shape(*args, **kwargs))
        elif func in (F.linear, torch.addmm):
            x, w = (args[0], args[1]) if func is F.linear else (args[1], args[2].t())
            self.layers.append(LayerShape("linear", int(x.shape[-1]), int(w.shape[0]), _spatial(x)))
        return out


def _first(value: Any) -> int:
    return int(value[0] if isinstance(value, tuple | list) else value)


def _conv_shape(x: torch.Tensor, weight: torch.Tensor, bias: Any = None, stride: Any = 1, padding: Any = 0,
                dilation: Any = 1, groups: int = 1) -> LayerShape:
    kernel = (int(weight.shape[2]), int(weight.shape[3]))
    if isinstance(padding, str):  # "same" keeps the size at stride 1, "valid" pads nothing
        padding = kernel[0] // 2 if padding == "same" else 0
    return LayerShape("conv", int(x.shape[1]), int(weight.shape[0]), (int(x.shape[2]), int(x.shape[3])),
                      kernel, _first(stride), _first(padding), float(groups))


def _spatial(x: torch.Tensor) -> tuple[int, int]:
    # A linear layer over (N, ..., F) applies to every leading position: count them as pixels.
    positions = int(x[..., 0].numel() // x.shape[0]) if x.dim() > 2 else 1
    return (positions, 1)


def trace_network(model: nn.Module, input_shape: Sequence[int]) -> tuple[NetworkShape, int]:
    """The conv/linear layers one sample passes through, with the stored parameters, and the class count.

    A dynamic network describes itself (``layer_costs``, the shapes its model file stores), so a
    profile and a plan made from model metadata alone see the same layers; any other module is
    traced by recording its conv2d/linear calls on a batch-1 forward pass.
    """
    recorder = _ShapeRecorder()
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), recorder:
            out = model(torch.zeros(1, *input_shape))
    finally:
        model.train(was_training)
    params = sum(p.numel() for p in model.parameters())
    describe = getattr(model, "layer_costs", None)
    if callable(describe) and hasattr(model, "active_groups"):
        return network_from_costs(describe(model.active_groups), params), int(out.shape[-1])
    if not recorder.layers:
        raise TrainingProfileError("the model has no conv2d/linear call to profile")
    return NetworkShape(tuple(recorder.layers), params), int(out.shape[-1])


# --- one point, in a worker ------------------------------------------------------------------------

def _status_kb(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise TrainingProfileError(f"/proc/self/status has no {field}")


def _rss_kb() -> int:
    # statm is far cheaper to read than status, which matters at 1 kHz.
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)


class _CapWatchdog:
    """Samples the resident set every millisecond and calls ``on_cap`` once the increment passes the cap."""

    def __init__(self, idle_kb: int, cap_mb: float, on_cap: Callable[[float], None]) -> None:
        self.idle_kb, self.cap_mb, self.on_cap, self._stop = idle_kb, cap_mb, on_cap, threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while not self._stop.wait(0.001):
            increment_mb = (_rss_kb() - self.idle_kb) / 1024.0
            if increment_mb > self.cap_mb:
                self.on_cap(increment_mb)

    def stop(self) -> None:
        self._stop.set()


def _optimizer(model: nn.Module, name: str) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=5e-4)
    return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)


def _cpu_seconds() -> tuple[float, float]:
    """(busy CPU-seconds of the whole machine, CPU-seconds of this process) so far."""
    with open("/proc/stat", encoding="ascii") as stat:
        ticks = [int(v) for v in stat.readline().split()[1:9]]
    busy = sum(ticks) - ticks[3] - ticks[4]  # everything but idle and iowait
    own = os.times()
    return busy / os.sysconf("SC_CLK_TCK"), own.user + own.system


def _timed_steps(step: Callable[[], None], options: StepOptions,
                 sync: Callable[[], None]) -> tuple[list[float], list[float], float]:
    """Wall and calling-thread CPU times of each step in ms after warm-up, and the contention."""
    for _ in range(options.warmup):
        step()
    wall: list[float] = []
    cpu: list[float] = []
    busy0, own0 = _cpu_seconds()
    while len(wall) < options.max_repeats and (len(wall) < options.repeats or sum(wall) < options.min_seconds):
        sync()
        start, start_cpu = time.perf_counter(), time.thread_time()
        step()
        sync()
        wall.append(time.perf_counter() - start)
        cpu.append(time.thread_time() - start_cpu)
    busy1, own1 = _cpu_seconds()
    return [t * 1000.0 for t in wall], [t * 1000.0 for t in cpu], _contention(
        (busy1 - busy0) - (own1 - own0), sum(wall), torch.get_num_threads())


def _contention(others_cpu_s: float, wall_s: float, threads: int) -> float:
    """Share (0..1) of the cores the step could use that other processes took, assuming the
    scheduler first gives them the cores the step leaves idle."""
    spare = max(0, (os.cpu_count() or 1) - threads)
    return min(1.0, max(0.0, others_cpu_s / max(wall_s, 1e-9) - spare) / threads)


def _measure(factory: ModelFactory, input_shape: Sequence[int], classes: int, batch: int,
             options: StepOptions, report: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    if options.cpus:
        os.sched_setaffinity(0, options.cpus)
    torch.set_num_threads(options.threads or len(os.sched_getaffinity(0)))
    torch.set_flush_denormal(True)  # denormal weights after many steps would slow CPUs, not real data
    idle_kb = _status_kb("VmRSS")
    cuda = options.device.startswith("cuda")
    if options.memory_cap_mb is not None and not cuda:
        limit = _status_kb("VmSize") * 1024 + int(options.memory_cap_mb * MB) + _SLACK_BYTES
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    model = factory().to(options.device).train()
    opt = _optimizer(model, options.optimizer)
    x = torch.randn(batch, *input_shape, device=options.device)
    y = torch.randint(0, classes, (batch,), device=options.device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()  # type: ignore[no-untyped-call]
        opt.step()

    def over_cap(mb: float) -> None:
        report({"passed": False, "reason": f"memory cap {options.memory_cap_mb:.0f} MB exceeded ({mb:.0f} MB)"})
        os._exit(_EXIT_CAP)

    watchdog = None if options.memory_cap_mb is None else _CapWatchdog(idle_kb, options.memory_cap_mb, over_cap)
    if cuda:
        torch.cuda.reset_peak_memory_stats(options.device)
    sync = functools.partial(torch.cuda.synchronize, options.device) if cuda else (lambda: None)
    times, cpu_times, contention = _timed_steps(step, options, sync)
    if watchdog is not None:
        watchdog.stop()
    # The worker is fresh and only grew since it was idle, so its lifetime peak is the steps' peak.
    memory_mb = (_status_kb("VmHWM") - idle_kb) / 1024.0
    single = torch.get_num_threads() == 1 and not cuda  # else the caller's CPU time is not the step's
    result: dict[str, Any] = {"passed": True, "latency_ms": statistics.median(times), "samples_ms": times,
                              "cpu_ms": statistics.median(cpu_times) if single else None,
                              "contention": contention, "idle_rss_mb": idle_kb / 1024.0}
    if cuda:
        memory_mb = torch.cuda.max_memory_reserved(options.device) / MB
        result["peak_allocated_mb"] = torch.cuda.max_memory_allocated(options.device) / MB
    if options.memory_cap_mb is not None and memory_mb > options.memory_cap_mb:
        return {"passed": False, "reason": f"memory cap {options.memory_cap_mb:.0f} MB exceeded ({memory_mb:.0f} MB)"}
    return {**result, "memory_mb": memory_mb}


def _is_out_of_memory(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or "out of memory" in text or "can't allocate memory" in text


def _worker(conn: Any, factory: ModelFactory, input_shape: Sequence[int], classes: int, batch: int,
            options: StepOptions) -> None:
    lock = threading.Lock()

    def report(result: dict[str, Any]) -> None:
        with lock:
            conn.send(result)

    try:
        result = _measure(factory, input_shape, classes, batch, options, report)
    except Exception as exc:  # the worker must always answer; the parent decides what is fatal
        result = {"passed": False, "reason": f"out of memory: {exc}".splitlines()[0]} if _is_out_of_memory(exc) \
            else {"error": f"{type(exc).__name__}: {exc}"}
    report(result)


def _context() -> Any:
    ctx = multiprocessing.get_context("forkserver")
    # torch._dynamo is what the first optimiser pulls in (800 modules, 1.4 s): import it once, here.
    ctx.set_forkserver_preload(["torch", "torch._dynamo", __name__])
    return ctx


def measure_point(factory: ModelFactory, input_shape: Sequence[int], classes: int, batch: int,
                  options: StepOptions = StepOptions()) -> dict[str, Any]:
    """Measure one (model, batch) point in a fresh worker; a memory failure is a ``passed=False`` result.

    ``factory`` must pickle (a module-level function or a ``functools.partial`` of one): it runs in
    the worker so that the model's own memory counts in the increment.
    """
    ctx = _context()
    receive, send = ctx.Pipe(duplex=False)
    worker = ctx.Process(target=_worker, args=(send, factory, tuple(input_shape), classes, batch, options))
    worker.start()
    send.close()
    try:
        result = receive.recv() if receive.poll(options.timeout_s) else {"error": "timed out"}
    except EOFError:
        worker.join(5.0)
        code = worker.exitcode
        why = f"killed by signal {-code} (likely the kernel's out-of-memory killer)" if code and code < 0 \
            else f"worker exited with status {code} before reporting"
        result = {"passed": False, "reason": why}
    finally:
        worker.join(5.0)
        if worker.is_alive():
            worker.kill()
            worker.join()
    if "error" in result:
        raise TrainingProfileError(f"training step at batch {batch} failed: {result['error']}; fix the model")
    return dict(result)


# --- sweeps --------------------------------------------------------------------------------------

def _measure_quietly(factory: ModelFactory, input_shape: Sequence[int], classes: int, batch: int,
                     options: StepOptions, sleep: Callable[[float], None]) -> dict[str, Any]:
    """Re-measure while other processes load the CPUs (up to ``retries``); keep the quietest."""
    best = measure_point(factory, input_shape, classes, batch, options)
    for _ in range(options.retries):
        if not best["passed"] or best["contention"] <= options.max_contention:
            break
        sleep(options.retry_wait_s)
        again = measure_point(factory, input_shape, classes, batch, options)
        best = again if not again["passed"] or again["contention"] < best["contention"] else best
    return best


def _row(k: int, batch: int, results: Sequence[dict[str, Any]]) -> TrainingRow:
    """One row from a point's passes: medians over passes (a pass's fastest runs are its least
    repeatable: the median predicted held-back points far better than the minimum did)."""
    failed = [r for r in results if not r["passed"]]
    if failed:
        return TrainingRow(groups=k, batch=batch, passed=False, reason=failed[0]["reason"])
    per_pass = {key: tuple(r[key] for r in results) for key in ("memory_mb", "latency_ms", "cpu_ms", "contention")}
    cpu = () if None in per_pass["cpu_ms"] else per_pass["cpu_ms"]
    return TrainingRow(
        groups=k, batch=batch, passed=True, memory_mb=statistics.median(per_pass["memory_mb"]),
        latency_ms=statistics.median(per_pass["latency_ms"]), memory_passes_mb=per_pass["memory_mb"],
        latency_passes_ms=per_pass["latency_ms"], idle_rss_mb=results[0]["idle_rss_mb"],
        contention=statistics.median(per_pass["contention"]), cpu_ms=statistics.median(cpu) if cpu else None,
        cpu_passes_ms=cpu,
    )


def _host() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            names = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
    except OSError:
        names = []
    return f"{names[0] if names else 'unknown CPU'} x{os.cpu_count()}"


MEMORY_METRIC_CPU = "peak resident set during the steps minus the idle worker's (torch imported, no model), MB"
MEMORY_METRIC_CUDA = "peak memory reserved by torch's CUDA caching allocator, MB"


def profile_training(
    factories: Mapping[int, ModelFactory], input_shape: Sequence[int], batch_sizes: Iterable[int],
    options: StepOptions = StepOptions(), *, passes: int = 1, model_name: str = "model",
    on_row: Callable[[TrainingRow, int], None] | None = None, sleep: Callable[[float], None] = time.sleep,
) -> TrainingProfile:
    """Measure every (k, batch) point, batches ascending; a k's sweep stops at its first failure.

    ``factories`` maps active groups k to a picklable model factory. ``on_row(row, pass)`` reports
    progress. Passes after the first re-measure the points that passed.
    """
    if passes < 1:
        raise ValueError(f"passes must be >= 1, got {passes}")
    configs, classes = {}, 0
    for k, factory in factories.items():
        configs[k], classes = trace_network(factory(), input_shape)
    results: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for n in range(passes):
        for k, factory in factories.items():
            for batch in sorted(set(batch_sizes)):
                if n and not all(r["passed"] for r in results.get((k, batch), [{"passed": False}])):
                    break
                point = _measure_quietly(factory, input_shape, classes, batch, options, sleep)
                results.setdefault((k, batch), []).append(point)
                row = _row(k, batch, results[(k, batch)])
                if on_row is not None:
                    on_row(row, n + 1)
                if not row.passed:
                    break
    threads = options.threads or len(os.sched_getaffinity(0))
    cuda = options.device.startswith("cuda")
    return TrainingProfile(
        model=model_name, device=options.device, host=_host(), threads=threads, optimizer=options.optimizer,
        input_shape=tuple(input_shape), memory_metric=MEMORY_METRIC_CUDA if cuda else MEMORY_METRIC_CPU,
        configs=configs, rows=tuple(_row(k, b, r) for (k, b), r in results.items()),
    )


# --- dynamic networks ------------------------------------------------------------------------------

def _dynamic_net(arch: str, groups: int, k: int, width: float, classes: int,
                 input_shape: tuple[int, int, int], connectivity: str) -> nn.Module:
    from governor.runtime.nets import build_net, scaled_widths

    widths, fc_widths = scaled_widths(arch, width, groups)
    net = build_net(arch, groups=groups, connectivity=connectivity, input_shape=input_shape, classes=classes,
                    widths=widths, fc_widths=fc_widths, mean=(0.0,) * input_shape[0], std=(1.0,) * input_shape[0])
    net.set_active_groups(k)
    return net


def _model_file_net(path: str, k: int) -> nn.Module:
    from governor.runtime.modelfile import load_model

    net = load_model(Path(path)).net
    net.set_active_groups(k)
    return net


def model_file_factories(path: Path, ks: Iterable[int]) -> dict[int, ModelFactory]:
    """One factory per k that loads the model file (weights included) and runs its first k groups."""
    return {k: functools.partial(_model_file_net, str(path), k) for k in ks}


def dynamic_net_factories(arch: str, groups: int, *, width: float = 1.0, classes: int = 10,
                          input_shape: tuple[int, int, int] = (3, 32, 32),
                          connectivity: str = "grouped") -> dict[int, ModelFactory]:
    """One factory per k for a freshly initialised dynamic network (weights do not change the cost)."""
    return {k: functools.partial(_dynamic_net, arch, groups, k, width, classes, input_shape, connectivity)
            for k in range(1, groups + 1)}
