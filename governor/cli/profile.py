"""`governor profile`: fit a network's latency, power and energy models from few measurements.

The active sampler (governor.core.perf.sampling) chooses each point; a measurement source measures it:
a recorded table (``--source replay:TABLE.csv``) or a board (``--board NAME|auto|sim:NAME``). The
result is a profile file (governor.core.perf.schema), by default where ``governor serve`` looks for
it: ``<state dir>/profiles/<model>/<board>.json`` (governor.daemon.config.default_profile_path). No
decision logic lives here.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shlex
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from governor import __version__
from governor.cli.estimates import describe_estimates
from governor.cli.main import CliError
from governor.core.board import profile_label, sim_board_name
from governor.core.modelmeta import ModelMeta
from governor.core.perf.profile import ProfileModel
from governor.core.perf.sampling import ActiveSampler, SamplerSettings
from governor.core.perf.schema import Provenance, build_profile_doc, dump_profile
from governor.core.perf.space import Measurement, MeasurementSource, Space
from governor.daemon.progress import Progress

_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def _names(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


def _groups(text: str) -> tuple[int, ...]:
    """``1,2,4`` or ``1-8`` (or both: ``1-4,8``)."""
    out: list[int] = []
    try:
        for part in _names(text):
            lo, _, hi = part.partition("-")
            out += range(int(lo), int(hi or lo) + 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give group counts like 1,2,4 or 1-8") from None
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: group counts are whole numbers >= 1")
    return tuple(sorted(set(out)))


def _predict_groups(text: str) -> tuple[int, ...] | str:
    """``none``, or group counts to predict like ``--groups`` takes them."""
    return "none" if text.strip().lower() == "none" else _groups(text)


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="the network: a model file, or just a name when replaying")
    parser.add_argument("--board", metavar="NAME|auto|sim:NAME",
                        help="measure on this board (with --source: only labels the profile)")
    parser.add_argument("--sysfs-root", default="/", metavar="DIR", help="root standing in for / (fake trees)")
    parser.add_argument("--source", metavar="replay:TABLE.csv", help="answer measurements from a recorded table")
    parser.add_argument("--mappings", type=_names, default=(), help="compute units to profile, e.g. gpu,a57")
    parser.add_argument("--groups", type=_groups, default=(), help="active group counts, e.g. 1-8 or 1,2,4")
    parser.add_argument("--predict-groups", type=_predict_groups, default=None, metavar="LIST|none",
                        help="group counts to predict, not measure, with the layer-wise model (default: every k of "
                        "the model file that --groups leaves out; none: predict nothing)")
    parser.add_argument("--max-points", type=int, default=48, metavar="N", help="measure at most N points")
    parser.add_argument("--target-mape", type=float, default=2.0, metavar="PCT",
                        help="stop once every model's estimated error is below PCT %% (default 2)")
    parser.add_argument("--targets", type=_names, default=(),
                        help="quantities that steer sampling, e.g. power_mw (default: all measured)")
    parser.add_argument("--out", metavar="PROFILE.json",
                        help="default: <state dir>/profiles/<MODEL>/<board>.json, where `governor serve` looks")
    parser.add_argument("--force", action="store_true", help="replace an existing profile file")
    parser.add_argument("--kernel", default="unknown", help="provenance: kernel of the measured board")
    parser.add_argument("--jetpack", default="unknown", help="provenance: JetPack/L4T release")
    parser.add_argument("--sensor", default="unknown", help="provenance: power sensor and rail")
    parser.add_argument("--seed", type=int, default=0, help="seed of the cross-validation folds")
    parser.add_argument("--profiles", metavar="DIR",
                        help="write DIR/models/<MODEL>/<board>.json instead (serve it with `governor serve --profile`)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.add_argument("--state-file", metavar="FILE", help=(
        "where the board's baseline is kept while profiling writes its clocks (default: the daemon's, where "
        "`governor restore` looks); a profile killed with -9 leaves it there to put back"))
    parser.add_argument("--external", metavar="NAME",
                        help="your application runs the model on its own engine: open a profiling session it drives "
                             "through the client library (Client.profile_session) and write the profile under NAME "
                             "(what `governor serve --engine external --model NAME.dgm` looks for); MODEL is still "
                             "the model file, for its groups and layer costs")
    parser.add_argument("--endpoint", metavar="ENDPOINT",
                        help="with --external: where the session listens (default ipc://<runtime dir>/"
                             "governor-profile.sock)")
    parser.add_argument("--wait-s", type=float, default=300.0, metavar="S",
                        help="with --external: how long to wait for the application at each step (default 300)")
    parser.add_argument("--training", action="store_true",
                        help="profile on-device training steps (memory and latency per k and batch) instead")
    from governor.cli.training_profile import register_training_args

    register_training_args(parser)
    parser.set_defaults(func=run)


def _model_name(model: str) -> str:
    name = Path(model).stem if ("/" in model or os.sep in model or Path(model).suffix) else model
    if not name or set(name) - _NAME_CHARS or name[0] in "._-":
        raise CliError(f"model name {name!r} must be letters, digits, '.', '_' or '-' (it names the profile file)")
    return name


def _board_label(args: argparse.Namespace, fallback: str) -> str:
    board = args.board or fallback
    name = sim_board_name(board)
    return board if name is None else profile_label(name, True)


Opened = tuple[MeasurementSource, Space, dict[str, str], "ModelMeta | None"]


def _check_model_groups(args: argparse.Namespace, meta: ModelMeta) -> None:
    bad = [k for k in args.groups if k > meta.groups]
    if bad:
        raise CliError(f"--groups {','.join(map(str, bad))}: {args.model} has groups 1..{meta.groups}")


def _read_meta(args: argparse.Namespace) -> ModelMeta | None:
    """The model file's metadata when MODEL is a file (a replay may name the model only)."""
    path = Path(args.model)
    if not path.is_file():
        return None
    from governor.core.modelmeta import ModelFileError, read_model_meta

    try:
        with path.open("rb") as handle:
            return read_model_meta(handle)
    except (OSError, ModelFileError) as exc:
        raise CliError(f"{args.model}: {exc}") from exc


def _open_replay(args: argparse.Namespace) -> Opened:
    from governor.drivers.replay import ReplayError, ReplaySource, read_table

    path = args.source.split(":", 1)[1]
    try:
        table = read_table(path)
        space, _ = table.space(args.mappings, args.groups)
    except ReplayError as exc:
        raise CliError(str(exc)) from exc
    absent = [t for t in args.targets if t not in table.values]
    if absent:
        raise CliError(f"--targets {', '.join(absent)}: {path} has no such column; it measures "
                       f"{', '.join(sorted(table.values))}")
    if table.ignored and not args.quiet:
        print(f"governor profile: ignoring columns {', '.join(table.ignored)}", file=sys.stderr)
    label = _board_label(args, Path(path).stem)
    info = {"board": label, "source": f"replay:{path}", "simulated": str(label.startswith("sim-"))}
    meta = _read_meta(args)
    if meta is not None:
        _check_model_groups(args, meta)
    return ReplaySource(table), space, info, meta


class _BoardMeasurement:
    """The daemon's board source, plus putting the board back and closing it when profiling ends.

    ``state``: the baseline state file written before the first write (None on a simulated board), so
    that a profile killed with -9 leaves what ``governor restore`` (or the next ``governor serve``) puts
    back; removed once the board is restored."""

    def __init__(self, source: Any, target: Any, backend: Any, baselines: list[Any], lock: Any = None,
                 state: Path | None = None) -> None:
        self.source, self.target, self.backend, self.baselines = source, target, backend, baselines
        self.lock = lock  # the board lock a daemon takes too; None on a simulated board
        self.state = state

    def measure(self, point: Any) -> Any:
        return self.source.measure(point)

    def close(self) -> None:
        try:
            _restore(self.target, self.baselines, self.state)
        finally:
            self.backend.close()
            self.target.close()
            if self.lock is not None:
                self.lock.release()


def _restore(target: Any, baselines: list[Any], state: Path | None) -> None:
    """Put the board back; the state file goes once that worked, and stays (said so) when it did not."""
    from governor.daemon.statefile import clear_state, unrestored_note

    try:
        if baselines:
            target.board.restore(baselines)
    except BaseException as exc:
        if state is not None and state.exists():
            print(f"governor profile: {unrestored_note(exc, state)}", file=sys.stderr)
        raise
    if state is not None:
        clear_state(state)


def _state_file(args: argparse.Namespace, target: Any) -> Path | None:
    """Where the board's baseline is kept while profiling writes its clocks (None: a simulated board):
    ``--state-file``, else the daemon's, where `governor restore` and `governor serve` look first. A
    baseline left there by a daemon or profile that died is refused: profiling over it would save the
    clocks it left pinned as the board's baseline."""
    from governor.daemon.config import ConfigError, load_config
    from governor.daemon.statefile import StateFileError, load_state

    if target.simulated:
        return None
    try:
        path = Path(args.state_file) if args.state_file else load_config(None).state_file()
        leftover = load_state(path)
    except (ConfigError, StateFileError) as exc:
        raise CliError(str(exc)) from None
    if leftover is not None:
        raise CliError(f"{path} holds the baseline that pid {leftover.pid} left on {leftover.board} when it died; "
                       f"put the board back first (`governor restore --state-file {path}`), then profile")
    return path


def _save_state(path: Path | None, target: Any, baselines: list[Any]) -> None:
    from governor.daemon.statefile import save_state
    from governor.drivers.hotplug import CpuHotplug

    if path is None:
        return
    try:  # the online mask is nvpmodel's: never saved, as the daemon does not save it
        save_state(path, target.spec.name, target.root, [b for b in baselines if b.owner != CpuHotplug.owner])
    except OSError as exc:
        raise CliError(f"cannot write the state file {path} ({exc.strerror}): the board's baseline is kept there "
                       "before profiling writes a clock; give --state-file FILE in a writable place") from None


def _open_board(args: argparse.Namespace) -> Opened:
    import numpy as np

    from governor.daemon.app import open_backend
    from governor.daemon.profiling import board_space
    from governor.daemon.target import TargetError, open_target

    model = Path(args.model)
    if not model.is_file():
        raise CliError(f"{args.model} is not a model file; measuring on a board needs one (see `governor train`)")
    lock = _hold_board(args)
    try:
        target = open_target(args.board, args.sysfs_root, clock="virtual")
    except TargetError as exc:
        if lock is not None:
            lock.release()
        raise CliError(str(exc)) from exc
    baselines: list[Any] = []
    state: Path | None = None
    try:
        state = _state_file(args, target)
        backend, meta = _external_backend(args, target, model) if args.external is not None else \
            open_backend(target, model)
        _check_model_groups(args, meta)
        # As serve does: rail-gating off only after its baseline is taken, so a rail-gated GPU is profiled
        # too; the domain that joins is saved before anything writes its clock.
        baselines = target.board.snapshot()
        _save_state(state, target, baselines)
        if target.board.hold_power():
            baselines = target.board.snapshot()
            _save_state(state, target, baselines)
        domains_hz = {name: tuple(d.available_hz()) for name, d in target.board.domains.items()}
        space = board_space(target.spec, domains_hz, meta, units=args.mappings, groups=args.groups,
                            cpu_count=os.cpu_count() or 1, unit_kinds=backend.unit_kinds)
        from governor.daemon.profiling import BoardSource, sim_time

        source = BoardSource(target.board, backend, np.zeros((1, *meta.input_shape), np.float32), reps=3,
                             **sim_time(target))
        label = profile_label(target.spec.name, target.simulated)
        info = {"board": label, "source": ("sim:" if target.simulated else "board:") + target.spec.name,
                "simulated": str(target.simulated)}
        return _BoardMeasurement(source, target, backend, baselines, lock, state), space, info, meta
    except BaseException:
        try:
            _restore(target, baselines, state if baselines else None)
        finally:
            target.close()
            if lock is not None:
                lock.release()
        raise


def _external_backend(args: argparse.Namespace, target: Any, model: Path) -> tuple[Any, ModelMeta]:
    """The session an application drives (``--external``): the model file's metadata only, no torch."""
    from governor.core.modelmeta import read_model_meta
    from governor.daemon.config import default_runtime_dir
    from governor.daemon.profile_session import SessionBackend
    from governor.transport.zmq_server import TransportError, ZmqServerEnd

    with model.open("rb") as f:
        meta = read_model_meta(f)
    endpoint = args.endpoint or f"ipc://{default_runtime_dir() / 'governor-profile.sock'}"
    try:
        server = ZmqServerEnd(endpoint)
    except TransportError as exc:
        raise CliError(f"--endpoint {endpoint}: {exc}") from exc
    label = profile_label(target.spec.name, target.simulated)
    print(f"profiling session for {args.external} on {endpoint}: start your application now "
          "(Client(endpoint).profile_session(), docs/protocol.md section 10b)", flush=True)
    backend = SessionBackend(server, target.spec, label, wait_s=args.wait_s)
    backend.max_points = args.max_points
    return backend, meta


def _hold_board(args: argparse.Namespace) -> Any:
    """The lock ``governor serve`` holds on a real board (or fake tree), so that profiling and a daemon
    never write one board's clocks against each other; None for a simulated board (its own tree)."""
    from governor.core.board import SIM_PREFIX
    from governor.daemon.boardlock import BoardBusyError, acquire, lock_path
    from governor.daemon.statefile import StateFileError

    if (args.board or "").startswith(SIM_PREFIX):
        return None
    root = os.path.realpath(args.sysfs_root)
    try:
        return acquire(lock_path(args.board or "auto", args.sysfs_root, pid=os.getpid(), state_file=Path("-")),
                       f"the board at {root} (governor profile)")
    except BoardBusyError as exc:
        raise CliError(f"{exc}: profiling writes the clocks it sets; stop it first ({exc.stop_it}), or profile "
                       "while it is stopped") from None
    except StateFileError as exc:
        raise CliError(str(exc)) from None


def _open_source(args: argparse.Namespace) -> Opened:
    if args.source:
        if not args.source.startswith("replay:") or not args.source[7:]:
            raise CliError(f"unknown source {args.source!r}; use --source replay:TABLE.csv")
        return _open_replay(args)
    if not args.board:
        raise CliError("say where to measure: --board NAME|auto|sim:NAME, or --source replay:TABLE.csv")
    return _open_board(args)


def _out_path(args: argparse.Namespace, model: str, board: str) -> Path:
    """--out, else --profiles DIR/models/..., else where `governor serve` looks (config.default_profile_path)."""
    if args.out:
        return Path(args.out)
    if not args.profiles:
        from governor.daemon.config import default_profile_path

        return default_profile_path(model, board)
    from governor.drivers.catalogue import CatalogueError, profiles_dir

    try:
        return profiles_dir(args.profiles) / "models" / model / f"{board}.json"
    except CatalogueError as exc:
        raise CliError(f"{exc}; or pass --out PROFILE.json") from exc


def _serve_hint(args: argparse.Namespace, model: str, board: str, out: Path) -> str:
    """How the daemon picks the profile up: on its own from the default place, else with --profile."""
    from governor.daemon.config import default_profile_path

    if args.external is not None:
        return (f"`governor serve --engine external --model {shlex.quote(args.model)} --board "
                f"{shlex.quote(args.board)} --profile {shlex.quote(str(out))}` serves it as {model!r}")
    cmd = f"governor serve --model {shlex.quote(args.model)} --board {shlex.quote(args.board)}"
    if args.sysfs_root != "/":
        cmd += f" --sysfs-root {shlex.quote(args.sysfs_root)}"
    if out.resolve() != default_profile_path(model, board).resolve():
        return f"`{cmd} --profile {shlex.quote(str(out))}` will load it"
    if os.geteuid() != 0 and not os.environ.get("STATE_DIRECTORY"):  # the state dir is this user's
        return (f"`{cmd}` run as you will load it (the systemd service looks in /var/lib/governor/profiles: "
                "copy it there, or set daemon.profile in its config)")
    return f"`{cmd}` will load it"


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def single_threaded_blas() -> contextlib.AbstractContextManager[object]:
    # many tiny least-squares problems: BLAS threads only contend (50x slower on a loaded 2-core box)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return contextlib.nullcontext()
    limits: contextlib.AbstractContextManager[object] = threadpool_limits(limits=1)
    return limits


def _progress(sampler: ActiveSampler, quiet: bool, progress: Progress) -> None:
    if quiet:
        return
    status = sampler.status()
    est = describe_estimates(status.estimated_mape_pct, sampler.model().models, status.measured)
    print(f"governor profile: {progress.line(status.measured, status.candidates)}; "
          f"est. MAPE {est}", file=sys.stderr)


def _checkpoint_path(out: Path) -> Path:
    return out.with_name(out.name + ".partial.json")


def _save_checkpoint(path: Path, space: Space, sampler: ActiveSampler) -> None:
    """Measured points so far, keyed by candidate index; a rerun with the same arguments resumes from it."""
    rows = {str(i): {"values": m.values(), "simulated": m.simulated} for i, m in sampler.measured.items()}
    doc = {"candidates": len(space.grid), "mappings": list(space.mappings), "domains": list(space.domains),
           "measured": rows}
    write_atomically(path, json.dumps(doc))


def _resume(path: Path, space: Space, sampler: ActiveSampler, quiet: bool) -> int:
    if not path.exists():
        return 0
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if (doc["candidates"], doc["mappings"], doc["domains"]) != (len(space.grid), list(space.mappings),
                                                                     list(space.domains)):
            raise ValueError("it was made for another board, model or set of mappings")
        for index, row in doc["measured"].items():
            v = row["values"]
            rails = {k[:-3]: x for k, x in v.items() if k.endswith("_mw") and k != "power_mw"}
            sampler.record(int(index), Measurement(latency_ms=v.get("latency_ms"), power_mw=v.get("power_mw"),
                                                   energy_mj=v.get("energy_mj"), rails_mw=rails,
                                                   simulated=bool(row["simulated"])))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CliError(f"cannot resume from {path} ({exc}); delete it to start over") from exc
    if not quiet:
        print(f"governor profile: resuming from {path}: {len(doc['measured'])} points already measured",
              file=sys.stderr)
    return len(doc["measured"])


def _to_predict(args: argparse.Namespace, meta: ModelMeta | None, space: Space) -> tuple[int, ...]:
    """The group counts the layer-wise model predicts (checked before anything is measured)."""
    wanted = args.predict_groups
    if wanted == "none" or (wanted is None and meta is None):
        return ()
    if meta is None:
        raise CliError(f"--predict-groups needs MODEL to be a model file (its layers); {args.model} is not one")
    if wanted is None:
        return tuple(k for k in range(1, meta.groups + 1) if k not in space.groups)
    bad = [k for k in wanted if k > meta.groups]
    if bad:
        raise CliError(f"--predict-groups {','.join(map(str, bad))}: {args.model} has groups 1..{meta.groups}")
    clash = [k for k in wanted if k in space.groups]
    if clash:
        raise CliError(f"--predict-groups {','.join(map(str, clash))}: those are measured (--groups); "
                       "predict only group counts left out of --groups")
    if len(space.groups) < 2:
        raise CliError(f"--predict-groups needs at least two measured group counts (--groups), not {space.groups}")
    return tuple(wanted)


def _predict(fitted: ProfileModel, meta: ModelMeta | None, ks: tuple[int, ...]) -> ProfileModel:
    if not ks or meta is None:
        return fitted
    from governor.core.perf.layerwise import predict_unmeasured, shapes_from_levels

    try:
        return predict_unmeasured(fitted, shapes_from_levels(meta.levels), ks)
    except ValueError as exc:
        raise CliError(f"cannot predict group counts {','.join(map(str, ks))}: {exc}") from exc


def _predicted_line(fitted: ProfileModel) -> str:
    parts = []
    for mapping, per_k in sorted(fitted.predicted.items()):
        sd = max(p.fraction_std for p in per_k.values())
        parts.append(f"{mapping} k={','.join(map(str, sorted(per_k)))} (position std <= {sd:.2f} of a measured step)")
    return "predicted, not measured (layer-wise model): " + "; ".join(parts)


def run(args: argparse.Namespace) -> int:
    if args.training:
        from governor.cli.training_profile import run_training

        return run_training(args)
    if args.max_points < 2 or not 0 < args.target_mape < 100:
        raise CliError("--max-points must be >= 2 and --target-mape a percentage in (0, 100)")
    if args.external is not None and (args.source or not args.board):
        raise CliError("--external measures on a board: give --board NAME|auto|sim:NAME (not --source)")
    model = _model_name(args.external if args.external is not None else args.model)
    with _terminated_as_exit():
        return _profile(args, model)


@contextlib.contextmanager
def _terminated_as_exit() -> Iterator[None]:
    """SIGTERM (systemctl stop, timeout) ends profiling as Ctrl-C does, through the board's restore: its
    default action killed the process with the clocks pinned."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminated(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _profile(args: argparse.Namespace, model: str) -> int:
    source, space, info, meta = _open_source(args)
    try:  # from here on, whatever ends profiling (an error, Ctrl-C, SIGTERM) goes through the board's restore
        ks = _to_predict(args, meta, space)
        out = _out_path(args, model, info["board"])
        if out.exists() and not args.force:  # found after the board was opened: it is put back all the same
            raise CliError(f"{out} exists; pass --force to replace it (or --out another path)")
        settings = SamplerSettings(max_points=args.max_points, target_mape_pct=args.target_mape,
                                   targets=args.targets, seed=args.seed)
        sampler = ActiveSampler(space, settings)
        checkpoint = _checkpoint_path(out)
        with single_threaded_blas():
            resumed = _resume(checkpoint, space, sampler, args.quiet)
            idle_power = getattr(source, "idle_power_mw", lambda: None)()  # before anything is written
            progress = Progress(settings.max_points, resumed=resumed)
            while batch := sampler.next_batch():
                for index in batch:
                    sampler.record(index, source.measure(space.point(index)))
                    _save_checkpoint(checkpoint, space, sampler)  # a measurement on a board is dear: keep each
                _progress(sampler, args.quiet, progress)
            fitted = sampler.model()
            status = sampler.status()
            fitted = _predict(fitted, meta, ks)
    finally:  # a board is put back as it was found, also on Ctrl-C or a failed measurement
        close = getattr(source, "close", None)
        if close is not None:
            close()
    simulated = fitted.simulated or info.get("simulated") == "True"
    provenance = Provenance(board=info["board"], kernel=args.kernel, jetpack=args.jetpack, sensor=args.sensor,
                            date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                            simulated=simulated, source=info["source"], tool=f"dnn-governor {__version__}")
    doc = build_profile_doc(model, provenance, space, settings, status, sampler.measured, fitted, idle_power)
    write_atomically(out, dump_profile(doc))
    checkpoint.unlink(missing_ok=True)
    est = describe_estimates(status.estimated_mape_pct, fitted.models, status.measured)
    label = " (SIMULATED measurements)" if provenance.simulated else ""
    if args.source:
        hint = ""
    elif not space.domains and not simulated and args.external is None:  # serve measures its own table then
        hint = ("; this host has no DVFS domain the governor can set, so `governor serve` measures its own "
                "table at start and does not load a profile; this one is for `governor predict`")
    else:
        hint = f"; {_serve_hint(args, model, info['board'], out)}"
    print(f"wrote {out}{label}{hint}")
    print(f"measured {status.measured} of {status.candidates} points; stopped: {status.stopped}; "
          f"estimated MAPE (mean error expected on unmeasured points): {est}")
    if fitted.predicted:
        print(_predicted_line(fitted))
    return 0
