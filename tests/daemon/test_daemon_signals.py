"""A second signal exits at once and says how to put the board back; SIGHUP resets what was learned;
rollback = "not_on_shutdown" leaves the board alone only while the system goes down."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from governor.daemon.app import App
from governor.daemon.config import Config
from governor.daemon.lifecycle import Flags, forced_exit_line, system_shutting_down


def test_a_second_signal_during_a_slow_restore_exits_at_once_naming_the_state_file(tmp_path):
    state = tmp_path / "baseline.json"
    state.write_text(json.dumps({"board": "x"}))
    script = textwrap.dedent(f"""
        import os, signal, time
        from pathlib import Path
        from governor.daemon.lifecycle import Flags, SignalRoute
        route = SignalRoute(Flags(), state_file=Path({str(state)!r})).install()
        route.flag_only()
        os.kill(os.getpid(), signal.SIGTERM)      # the first: a graceful stop begins
        assert route.flags.should_exit
        deadline = time.monotonic() + 10          # a restore stuck on a slow write
        while time.monotonic() < deadline:
            if not getattr(route, "sent", False):
                route.sent = True
                os.kill(os.getpid(), signal.SIGINT)  # the user asks again
            time.sleep(0.01)
        print("restore finished")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 128 + signal.SIGINT, proc.stderr
    assert "restore finished" not in proc.stdout
    assert f"governor restore --state-file {state.resolve()}" in proc.stderr
    assert state.exists()  # what `governor restore` needs stays


def test_the_forced_exit_line_without_a_state_file_says_there_is_nothing_to_restore(tmp_path):
    line = forced_exit_line(signal.SIGTERM, tmp_path / "gone.json")
    assert "SIGTERM" in line and "nothing to restore" in line


class _Stub:
    def __init__(self, **kw):
        self.__dict__.update(kw)


def _app(tmp_path: Path, *, rollback: str = "always", shutting_down: bool = False, steps=None):
    restored: list[object] = []
    calls: list[str] = []
    flags = Flags()
    state = tmp_path / "baseline.json"
    state.write_text("{}")

    def step():
        calls.append("step")
        for action in (steps or {}).get(calls.count("step"), ()):
            action(flags)

    daemon = _Stub(parts=SimpleNamespace(model_name="m"), step=step,
                   reset_learning=lambda: calls.append("reset"))
    target = _Stub(label="sim", board=_Stub(restore=restored.append))
    notifier = _Stub(ready=lambda *_: None, send=lambda *_: None, close=lambda: None)
    config = Config.model_validate({"daemon": {"rollback": rollback}})
    app = App(config, target, daemon, None, notifier, flags, ["baseline"], state,  # type: ignore[arg-type]
              shutting_down=lambda: shutting_down)
    return app, calls, restored, state


def test_sighup_resets_what_was_learned_once_and_the_loop_goes_on(tmp_path):
    app, calls, restored, state = _app(tmp_path, steps={
        1: [lambda f: f.handle(signal.SIGHUP)], 3: [lambda f: f.handle(signal.SIGTERM)]})
    assert app.serve() == 0
    assert calls == ["step", "reset", "step", "step"]
    assert restored == [["baseline"]] and not state.exists()


@pytest.mark.parametrize(("rollback", "shutting_down", "restores"), [
    ("always", True, True), ("always", False, True),
    ("not_on_shutdown", False, True), ("not_on_shutdown", True, False),
    ("never", False, False),
])
def test_rollback_settings(tmp_path, rollback, shutting_down, restores):
    app, _calls, restored, state = _app(tmp_path, rollback=rollback, shutting_down=shutting_down)
    app.shutdown()
    assert bool(restored) is restores
    # Never a state file left behind by a clean stop: at the next boot it would write last boot's values.
    assert not state.exists()


def test_system_shutting_down_only_when_systemd_says_stopping():
    assert system_shutting_down(lambda: "stopping")
    assert not system_shutting_down(lambda: "running")
    assert not system_shutting_down(lambda: "degraded")
    assert not system_shutting_down(lambda: "")  # no systemd: restore, never wrong
