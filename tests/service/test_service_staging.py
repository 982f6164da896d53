"""install-service --prefix DIR: the staged files name the final paths, and the message says what was written."""

from __future__ import annotations

import shlex
from pathlib import Path

from governor.cli.install_service import governor_bindir
from governor.cli.main import main


def _unit_lines(root: Path, key: str) -> list[str]:
    unit = (root / "etc/systemd/system/governor.service").read_text()
    return [line.split("=", 1)[1] for line in unit.splitlines() if line.startswith(f"{key}=")]


def test_staged_unit_names_the_final_config_and_the_real_executable(tmp_path: Path) -> None:
    assert main(["install-service", "--prefix", str(tmp_path)]) == 0
    unit = (tmp_path / "etc/systemd/system/governor.service").read_text()
    assert str(tmp_path) not in unit
    assert _unit_lines(tmp_path, "ExecStart") == [f"{governor_bindir()}/governor serve --config "
                                                  "/etc/governor/governor.toml"]
    assert _unit_lines(tmp_path, "ExecStopPost") == [f"{governor_bindir()}/governor restore --config "
                                                     "/etc/governor/governor.toml --quiet"]
    assert str(tmp_path) not in (tmp_path / "etc/governor/governor.toml").read_text()


def test_staging_message_matches_what_was_written_and_how_to_put_it_in_place(tmp_path, capsys) -> None:
    assert main(["install-service", "--prefix", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    note = next(line for line in out if line.startswith("(staged"))
    assert "the unit reads /etc/governor/governor.toml" in note and str(tmp_path) not in note
    steps = out[out.index("next, as root:") + 1:]
    unit, config = tmp_path / "etc/systemd/system/governor.service", tmp_path / "etc/governor/governor.toml"
    assert shlex.split(steps[0]) == ["cp", str(unit), "/etc/systemd/system/governor.service"]
    assert shlex.split(steps[1].split("#")[0]) == ["[", "-e", "/etc/governor/governor.toml", "]", "||", "install",
                                                   "-D", "-m", "0644", str(config), "/etc/governor/governor.toml"]
    assert steps[2].strip() == "systemctl daemon-reload"
    assert unit.is_file() and config.is_file()


def test_without_systemctl_the_serve_command_names_the_final_config(tmp_path: Path, monkeypatch, capsys) -> None:
    import governor.cli.install_service as svc

    real = svc.Host.real()
    monkeypatch.setattr(svc.Host, "real", classmethod(lambda cls: cls(real.is_root, real.run, lambda _name: None)))
    assert main(["install-service", "--prefix", str(tmp_path)]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if "systemctl was not found" in line)
    assert line.endswith("governor serve --config /etc/governor/governor.toml")
