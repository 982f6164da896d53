"""No traceback reaches a user: every subcommand of `governor` and `governor-client`, given bad arguments
(missing and garbage files, a bad endpoint, bad numbers, unknown flags), ends with one error line on
stderr and a non-zero exit.

The commands run in this process through ``main(argv)`` (an exception that escapes fails the test as a
traceback would reach the user); only what needs a real stdout (a reader that went away) runs in a
subprocess.
"""

import subprocess
import sys

import pytest
from governor_client.cli import main as client_main

from governor.cli import main as main_module
from governor.cli.main import COMMANDS, DEBUG_ENV, main

GARBAGE = "garbage.dgm"  # created in the working directory by the fixture
MISSING = "/nonexistent/governor-test/none"

# Each command with several bad invocations; every command of COMMANDS must be here.
GOVERNOR_CASES: dict[str, list[list[str]]] = {
    "boards": [["--profiles", MISSING], ["--profiles", GARBAGE]],
    "status": [["--board", "nosuch"], ["--sysfs-root", MISSING], ["--interval", "x"],
               ["--board", "sim:jetson-tx2", "--interval", "-1"]],
    "probe-report": [["--sysfs-root", MISSING], ["--max-bytes", "0"], ["--max-bytes", "x"],
                     ["--out", f"{MISSING}/report.json"]],
    "serve": [["--board", "sim:jetson-tx2", "--model", GARBAGE], ["--board", "sim:jetson-tx2", "--model", MISSING],
              ["--board", "sim:jetson-tx2", "--model", "."], ["--endpoint", "foo"], ["--tick-hz", "0"],
              ["--tick-hz", "x"], ["--config", MISSING], ["--config", GARBAGE],
              ["--board", "sim:jetson-tx2", "--state-file", GARBAGE]],
    "demo": [["--endpoint", "foo"], ["--requests", "-1"], ["--requests", "x"]],
    "restore": [["--state-file", GARBAGE], ["--state-file", MISSING], ["--config", GARBAGE]],
    "train": [["--arch", "resnet-small", "--dataset", "nosuch", "--out", "x.dgm"],
              ["--arch", "resnet-small", "--dataset", "digits", "--groups", "0", "--out", "x.dgm"],
              ["--arch", "resnet-small", "--dataset", "digits", "--epochs", "x", "--out", "x.dgm"],
              ["--arch", "resnet-small", "--dataset", "digits", "--out", f"{MISSING}/x.dgm"],
              ["--from", GARBAGE, "--dataset", "digits", "--out", "x.dgm"],
              ["--from", MISSING, "--dataset", "digits", "--out", "x.dgm"],
              ["--from", GARBAGE, "--arch", "resnet-small", "--dataset", "digits", "--out", "x.dgm"]],
    "convert": [["nosuchmodule:build", "--input-shape", "3,8,8", "--out", "x.dgm"],
                ["torchvision", "--input-shape", "3,8,8", "--out", "x.dgm"],
                ["governor.runtime.nets:ARCHS", "--input-shape", "3,8,8", "--out", "x.dgm"],
                ["governor.runtime.nets:DynamicNet", "--input-shape", "3,8", "--out", "x.dgm"],
                ["governor.runtime.nets:build_net", "--input-shape", "3,8,8", "--arg", "bad", "--out", "x.dgm"],
                ["governor.runtime.nets:build_net", "--input-shape", "3,8,8", "--weights", GARBAGE, "--out", "x.dgm"],
                ["governor.runtime.nets:build_net", "--input-shape", "3,8,8", "--normalize", "1/2/3", "--out", "x.dgm"],
                ["governor.runtime.nets:build_net", "--input-shape", "3,8,8", "--out", f"{MISSING}/x.dgm"]],
    "export": [[GARBAGE, "--onnx", "out"], [MISSING, "--onnx", "out"]],
    "plan-training": [[GARBAGE, "--memory-budget", "100"], ["resnet-small", "--memory-budget", "-5"],
                      ["resnet-small", "--memory-budget", "100", "--profile", GARBAGE]],
    "profile": [[GARBAGE, "--board", "sim:jetson-tx2"], [MISSING, "--board", "sim:jetson-tx2"],
                ["x", "--source", f"replay:{MISSING}"], ["x", "--board", "sim:jetson-tx2", "--max-points", "-1"]],
    "predict": [["--profile", GARBAGE, "--grid", GARBAGE, "--out", "o.csv"],
                ["--profile", MISSING, "--grid", GARBAGE, "--out", "o.csv"]],
    "evaluate": [["--board", "nosuch", "--out", "ev"], ["--board", "sim:jetson-tx2", "--model", GARBAGE, "--out", "ev"],
                 ["--seed", "x"], ["--generate", "nosuch", "--out", "t.json"]],
    "install-service": [["--prefix", GARBAGE]],
    "uninstall-service": [["--prefix"]],
    "keys": [["--dir", GARBAGE], ["--dir", GARBAGE, "--client"]],
}

CLIENT_CASES: list[list[str]] = [
    *([*endpoint, command] for endpoint in (["--endpoint", "foo"], ["--endpoint", "tcp://nohost:x"])
      for command in ("status", "profiles", "reload", "advise", "telemetry")),
    ["--endpoint", "foo", "infer", GARBAGE], ["--endpoint", "foo", "infer", MISSING],
    ["--timeout-ms", "x", "status"], ["--timeout-ms", "0", "status"], ["advise", "--deadline-ms", "x"],
    ["telemetry", "--count", "x"], ["--curve-server-key", GARBAGE, "--curve-client-key", GARBAGE, "status"],
]


@pytest.fixture(autouse=True)
def sandbox(tmp_path, monkeypatch):
    """A working directory with a garbage file, and state/runtime directories of its own."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / GARBAGE).write_text("not a model, not JSON, not TOML = [\n")
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path / "run"))
    monkeypatch.delenv("GOVERNOR_ENDPOINT", raising=False)
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    return tmp_path


def _run(entry, argv, capsys) -> tuple[int, str]:
    try:
        code = entry(argv)
    except SystemExit as stop:  # argparse: usage and one error line, exit 2
        code = stop.code
    return code, capsys.readouterr().err


def _assert_one_error_line(code: int, err: str, prefix: str) -> None:
    assert "Traceback" not in err
    assert code not in (0, None), err
    lines = [line for line in err.splitlines() if line.strip()]
    ours = [line for line in lines if line.startswith(prefix)]  # the rest is argparse's usage
    assert len(ours) == 1 and lines[-1] == ours[0], err


def test_every_command_is_covered():
    assert set(GOVERNOR_CASES) == set(COMMANDS)


@pytest.mark.parametrize(("command", "args"), [(c, a) for c, cases in GOVERNOR_CASES.items()
                                                for a in [*cases, ["--no-such-flag"]]])
def test_governor_bad_arguments_give_one_line(command, args, capsys):
    code, err = _run(main, [command, *args], capsys)
    _assert_one_error_line(code, err, f"governor {command}")
    assert code == 2, err  # bad input, not an internal error


@pytest.mark.parametrize("args", CLIENT_CASES)
def test_client_bad_arguments_give_one_line(args, capsys):
    code, err = _run(client_main, args, capsys)
    _assert_one_error_line(code, err, "governor-client")


def test_a_bug_is_one_line_naming_it_and_where_the_traceback_is(monkeypatch, capsys):
    def broken(_args):
        raise TypeError("boom")

    monkeypatch.setattr("governor.cli.boards.run", broken)
    code, err = _run(main, ["boards"], capsys)
    _assert_one_error_line(code, err, "governor boards")
    assert code == 1
    assert "internal error: TypeError: boom" in err and f"{DEBUG_ENV}=1" in err and "test_cli_no_traceback" in err
    monkeypatch.setenv(DEBUG_ENV, "1")
    code, err = _run(main, ["boards"], capsys)
    assert code == 1 and "Traceback" in err and err.rstrip().splitlines()[-1].startswith("governor boards:")


def test_known_errors_are_described_in_one_line():
    assert main_module.describe_error(FileNotFoundError(2, "No such file or directory", "x.toml")) == \
        "x.toml: No such file or directory"
    assert main_module.describe_error(ValueError("first\n  second")) == "first; second"
    assert main_module.describe_error(KeyError("k")) is None


def test_a_reader_that_goes_away_ends_quietly():
    """`governor status --json | head -c 10`: the reader closes the pipe before the output is written."""
    proc = subprocess.Popen([sys.executable, "-m", "governor", "status", "--board", "sim:jetson-tx2", "--json",
                             "--interval", "0.05"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # before the child has written anything: its imports take far longer than this
    err = proc.stderr.read()
    code = proc.wait(60)
    assert err == "", err
    assert code == 141  # 128 + SIGPIPE, what a CLI killed by SIGPIPE reports
