"""The governor-client command against the fake daemon."""

from __future__ import annotations

import json

import numpy as np
import pytest
from governor_client.cli import main


@pytest.fixture
def image_npy(tmp_path):
    path = tmp_path / "image.npy"
    np.save(path, np.arange(6, dtype=np.float32).reshape(2, 3))
    return path


def test_clients_cli_infer_json_reports_point_budget_and_outputs(daemon, image_npy, capsys):
    code = main(["--endpoint", daemon.endpoint, "infer", str(image_npy), "--deadline-ms", "20", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["simulated"] is True and out["budget_met"] is True
    assert out["point"]["mapping"] == {"unit": "a57", "threads": 4} and out["point"]["k"] == 3
    assert out["outputs"]["doubled_input"]["values"] == [[0, 2, 4], [6, 8, 10]]
    assert daemon.requests("infer")[0].msg.budget.deadline_ms == 20


def test_clients_cli_infer_readable_output_labels_simulation_and_saves(daemon, image_npy, tmp_path, capsys):
    saved = tmp_path / "out.npz"
    code = main(["--endpoint", daemon.endpoint, "infer", str(image_npy), "--deadline-ms", "5", "--save", str(saved)])
    out = capsys.readouterr().out
    assert code == 0
    assert out.splitlines()[0].startswith("simulated    SIMULATED")
    assert "a57 x4 threads, k=3, cpu-a57 2035 MHz" in out and "measured 13.10 ms" in out
    assert "infeasible" in out
    with np.load(saved) as outputs:
        np.testing.assert_array_equal(outputs["doubled_input"], np.arange(6).reshape(2, 3) * 2)


def test_clients_cli_npz_inputs_keep_their_names(daemon, tmp_path, capsys):
    path = tmp_path / "inputs.npz"
    np.savez(path, left=np.zeros(2), right=np.ones(2))
    assert main(["--endpoint", daemon.endpoint, "infer", str(path)]) == 0
    assert list(daemon.requests("infer")[0].tensors) == ["left", "right"]


@pytest.mark.parametrize("command", ["status", "advise", "profiles", "reload"])
def test_clients_cli_other_commands_print_json(daemon, command, capsys):
    assert main(["--endpoint", daemon.endpoint, command, "--json"]) == 0
    assert isinstance(json.loads(capsys.readouterr().out), dict)
    assert daemon.requests(command)


def test_clients_cli_strict_infeasible_exits_1_with_the_daemon_message(daemon, image_npy, capsys):
    code = main(["--endpoint", daemon.endpoint, "infer", str(image_npy), "--deadline-ms", "5", "--strict"])
    assert code == 1
    assert "infeasible: relax deadline_ms" in capsys.readouterr().err


def test_clients_cli_missing_input_fails_before_connecting(daemon, tmp_path, capsys):
    assert main(["--endpoint", daemon.endpoint, "infer", str(tmp_path / "nope.npy")]) == 2
    assert "no such input file" in capsys.readouterr().err
    assert daemon.received == []


def test_clients_cli_refuses_pickled_inputs(daemon, tmp_path, capsys):
    path = tmp_path / "objects.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert main(["--endpoint", daemon.endpoint, "infer", str(path)]) == 2
    assert "plain numeric arrays" in capsys.readouterr().err


def test_clients_cli_unreachable_daemon_says_how_to_start_it(ipc_dir, capsys):
    assert main(["--endpoint", f"ipc://{ipc_dir}/none.sock", "status"]) == 1
    assert "governor serve" in capsys.readouterr().err
