"""install-service / uninstall-service: files, idempotence, groups, rival daemons, refusal without root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from governor.cli import CliError
from governor.cli.install_service import Host, Layout, install, render_unit, uninstall
from governor.cli.main import main

REPO = Path(__file__).resolve().parents[2]
SHIPPED_TOML = (REPO / "systemd" / "governor.toml").read_text()


class FakeHost:
    """Records commands; answers `systemctl is-active NAME` from ``active``."""

    def __init__(self, active=(), enabled=(), systemctl=True, is_root=True):
        self.calls: list[list[str]] = []
        self.active, self.enabled, self.systemctl = set(active), set(enabled), systemctl
        self.host = Host(is_root, self.run, self.which)

    def which(self, name):
        return f"/usr/bin/{name}" if self.systemctl or name != "systemctl" else None

    def run(self, cmd):
        self.calls.append(list(cmd))
        if cmd[:2] == ["systemctl", "is-active"]:
            return (0, "active") if cmd[2] in self.active else (3, "inactive")
        if cmd[:2] == ["systemctl", "is-enabled"]:
            return (0, "enabled") if cmd[2] in self.enabled else (1, "disabled")
        return 0, ""


def system_layout(tmp_path: Path) -> Layout:
    """A layout that behaves like the real system (groups, systemctl) but writes into tmp_path."""
    return Layout(tmp_path / "unit" / "governor.service", tmp_path / "etc", tmp_path / "state", manage_system=True)


def test_prefix_install_renders_unit_and_config_then_keeps_an_edited_config(tmp_path, capsys):
    assert main(["install-service", "--prefix", str(tmp_path)]) == 0
    unit = (tmp_path / "etc/systemd/system/governor.service").read_text()
    config = tmp_path / "etc/governor/governor.toml"
    assert "@" not in unit.replace("file://", "")
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    binary = exec_start.split("=", 1)[1].split()[0]
    assert os.access(binary, os.X_OK) and Path(binary).name == "governor"
    assert exec_start.endswith(" serve --config /etc/governor/governor.toml")  # the final path, not the staging one
    assert config.read_text() == SHIPPED_TOML
    out = capsys.readouterr().out
    assert "systemctl enable --now governor" in out and "usermod -aG governor" in out
    assert "journalctl -u governor" in out and "governor-client status" in out

    config.write_text(SHIPPED_TOML.replace("tick_hz = 10.0", "tick_hz = 5.0"))
    assert main(["install-service", "--prefix", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "tick_hz = 5.0" in config.read_text()
    assert "kept the existing config" in out and "unchanged:" in out


def test_invalid_existing_config_is_kept_and_reported(tmp_path, capsys):
    (tmp_path / "etc/governor").mkdir(parents=True)
    (tmp_path / "etc/governor/governor.toml").write_text("[daemon]\ntick_hz = -1\n")
    assert main(["install-service", "--prefix", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "tick_hz" in out and "refuse this config" in out
    assert (tmp_path / "etc/governor/governor.toml").read_text() == "[daemon]\ntick_hz = -1\n"


def test_root_install_creates_the_configured_group_and_warns_about_rivals(tmp_path):
    layout = system_layout(tmp_path)
    layout.conf_dir.mkdir(parents=True)
    layout.config_path.write_text('[access]\nsocket_group = "gov-test-no-such-group"\n')
    fake = FakeHost(active={"tuned.service", "power-profiles-daemon.service"})
    lines = install(layout, fake.host)
    assert ["groupadd", "--system", "gov-test-no-such-group"] in fake.calls
    warned = [line for line in lines if line.startswith("WARNING")]
    assert len(warned) == 2
    assert "systemctl disable --now tuned" in warned[0] and "power-profiles-daemon" in warned[1]
    assert any("usermod -aG gov-test-no-such-group" in line for line in lines)


def test_prefix_never_creates_groups_and_no_systemctl_means_no_checks(tmp_path):
    layout = Layout.for_prefix(str(tmp_path))
    fake = FakeHost(systemctl=False)
    lines = install(layout, fake.host)
    assert fake.calls == []
    assert any("groupadd --system governor" in line for line in lines if line.startswith("note"))
    assert any("governor serve --config" in line for line in lines)


def test_failed_groupadd_is_a_warning_not_a_failure(tmp_path):
    layout = system_layout(tmp_path)
    layout.conf_dir.mkdir(parents=True)
    layout.config_path.write_text('[access]\nsocket_group = "gov-test-no-such-group"\n')
    fake = FakeHost()
    fake.run = lambda cmd: (9, "groupadd: cannot lock /etc/group")  # type: ignore[method-assign]
    lines = install(layout, Host(True, fake.run, fake.which))
    assert any("could not create group" in line and "cannot lock" in line for line in lines)
    assert layout.unit_path.is_file()


def test_system_install_without_root_refuses_before_writing(tmp_path):
    with pytest.raises(CliError, match=r"needs root.*--prefix"):
        install(Layout.for_prefix(None), FakeHost(is_root=False).host)
    with pytest.raises(CliError, match="needs root"):
        uninstall(Layout.for_prefix(None), FakeHost(is_root=False).host)


def test_protect_home_opens_read_only_for_code_under_a_home_directory():
    template = "ExecStart=@BINDIR@/governor --config @CONFDIR@/x\nDocumentation=file://@DOCDIR@/a\n" \
               "ProtectHome=@PROTECT_HOME@\n"
    text = render_unit(template, Path("/home/pi/.local/bin"), Path("/etc/governor"), Path("/d"))
    assert text == "ExecStart=/home/pi/.local/bin/governor --config /etc/governor/x\nDocumentation=file:///d/a\n" \
                   "ProtectHome=read-only\n"
    if str(REPO).startswith(("/home/", "/root/", "/run/user/")):
        pytest.skip(f"this checkout lives under a home directory ({REPO}), so ProtectHome is always read-only")
    assert "ProtectHome=true" in render_unit(template, Path("/usr/local/bin"), Path("/etc/governor"), Path("/d"))
    with pytest.raises(CliError, match="unknown placeholders"):
        render_unit(template + "@OTHER@\n", Path("/usr/bin"), Path("/etc/governor"), Path("/d"))


def test_uninstall_keeps_config_unless_purged_and_is_idempotent(tmp_path, capsys):
    prefix = str(tmp_path)
    assert main(["install-service", "--prefix", prefix]) == 0
    (tmp_path / "var/lib/governor").mkdir(parents=True)
    (tmp_path / "var/lib/governor/baseline.json").write_text("{}")
    capsys.readouterr()
    assert main(["uninstall-service", "--prefix", prefix]) == 0
    out = capsys.readouterr().out
    assert not (tmp_path / "etc/systemd/system/governor.service").exists()
    assert (tmp_path / "etc/governor/governor.toml").read_text() == SHIPPED_TOML
    assert "kept the config" in out and "run governor restore" in out
    assert main(["uninstall-service", "--prefix", prefix]) == 0
    assert "nothing to remove" in capsys.readouterr().out
    (tmp_path / "etc/governor/keys").mkdir()
    assert main(["uninstall-service", "--prefix", prefix, "--purge"]) == 0
    assert not (tmp_path / "etc/governor/governor.toml").exists()
    assert (tmp_path / "etc/governor/keys").is_dir()  # secrets are never purged behind the user's back
    assert main(["uninstall-service", "--prefix", prefix]) == 0
    assert "kept the config" not in capsys.readouterr().out  # there is none left to keep


def test_uninstall_with_a_prefix_that_is_not_a_directory_says_so(tmp_path, capsys):
    # A typo'd staging area printed "nothing to remove" and exited 0, as if the uninstall had worked.
    (tmp_path / "a-file").write_text("x")
    for prefix in (tmp_path / "a-file", tmp_path / "no-such-dir"):
        assert main(["uninstall-service", "--prefix", str(prefix)]) == 2
        err = capsys.readouterr().err
        assert "is not a directory" in err and err.count("\n") == 1


def test_uninstall_stops_an_active_service_before_removing_it(tmp_path):
    layout = system_layout(tmp_path)
    install(layout, FakeHost().host)
    fake = FakeHost(active={"governor.service"}, enabled={"governor.service"})
    lines = uninstall(layout, fake.host)
    assert ["systemctl", "disable", "--now", "governor.service"] in fake.calls
    assert not layout.unit_path.exists() and layout.config_path.exists()
    assert any("systemctl daemon-reload" in line for line in lines)
    merely_enabled = FakeHost(enabled={"governor.service"})
    uninstall(layout, merely_enabled.host)
    assert ["systemctl", "disable", "governor.service"] in merely_enabled.calls
