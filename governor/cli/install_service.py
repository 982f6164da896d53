"""`governor install-service` / `governor uninstall-service`: put the daemon under systemd, or take it out.

Install renders ``systemd/governor.service`` (placeholders ``@BINDIR@``, ``@CONFDIR@``, ``@DOCDIR@``,
``@PROTECT_HOME@``) into ``/etc/systemd/system/governor.service``, copies ``systemd/governor.toml`` to
``/etc/governor/governor.toml`` unless a config is already there, creates the socket group and
prints the commands that start and check the service. It starts nothing itself: enabling a service
that rewrites clocks is the administrator's call. ``--prefix DIR`` stages the same files under DIR
without root and without touching groups, which is what the tests and CI's ``systemd-analyze verify``
use; the staged unit names the final paths (``/etc/governor/governor.toml``), not DIR, since it only
works once copied to /. Both commands are idempotent.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from governor.cli import CliError

__all__ = ["Host", "Layout", "governor_bindir", "install", "register", "render_unit", "uninstall"]

UNIT_NAME = "governor.service"
# Agents that write the same cpufreq/devfreq knobs (the unit also Conflicts= with the first three).
RIVALS = ("tuned", "power-profiles-daemon", "auto-cpufreq", "ondemand", "cpufrequtils", "tlp")
_HOME_TREES = ("/home", "/root", "/run/user")


@dataclass(frozen=True)
class Layout:
    """Where the files go. ``manage_system`` is False for a --prefix staging area (no groups, no systemctl).

    ``installed_conf`` is where the config lives once the files are in place, the path the unit names:
    for a staging area, /etc/governor, not the staging copy (default: ``conf_dir``).
    """

    unit_path: Path
    conf_dir: Path
    state_dir: Path
    manage_system: bool
    installed_conf: Path | None = None

    @classmethod
    def for_prefix(cls, prefix: str | None) -> Layout:
        root = Path(prefix).resolve() if prefix else Path("/")
        return cls(root / "etc/systemd/system" / UNIT_NAME, root / "etc/governor", root / "var/lib/governor",
                   manage_system=prefix is None, installed_conf=Path("/etc/governor"))

    @property
    def config_path(self) -> Path:
        return self.conf_dir / "governor.toml"

    @property
    def installed_config_path(self) -> Path:
        """The config's path on the running system (what ExecStart passes to --config)."""
        return (self.installed_conf or self.conf_dir) / "governor.toml"


@dataclass(frozen=True)
class Host:
    """What the commands ask of the machine, injectable for tests. ``run`` returns (exit code, output)."""

    is_root: bool
    run: Callable[[Sequence[str]], tuple[int, str]]
    which: Callable[[str], str | None]

    @classmethod
    def real(cls) -> Host:
        return cls(os.geteuid() == 0, _run, shutil.which)


def _run(cmd: Sequence[str]) -> tuple[int, str]:
    try:
        done = subprocess.run(list(cmd), capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 127, str(exc)
    return done.returncode, (done.stdout + done.stderr).strip()


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prefix", metavar="DIR", help="stage the files under DIR (no root needed; nothing enabled)")
    # main.py gives both commands this module; the program name says which one is being built.
    if parser.prog.endswith("uninstall-service"):
        parser.add_argument("--purge", action="store_true", help="also remove the config file (keys stay)")
        parser.set_defaults(func=run_uninstall)
    else:
        parser.set_defaults(func=run_install)


def run_install(args: argparse.Namespace) -> int:
    for line in install(Layout.for_prefix(args.prefix), Host.real()):
        print(line)
    return 0


def run_uninstall(args: argparse.Namespace) -> int:
    if args.prefix is not None and not Path(args.prefix).is_dir():
        # A typo'd staging area used to print "nothing to remove" and exit 0, as if the uninstall had worked.
        raise CliError(f"--prefix {args.prefix} is not a directory; give the DIR that install-service "
                       "--prefix staged the files in")
    for line in uninstall(Layout.for_prefix(args.prefix), Host.real(), purge=args.purge):
        print(line)
    return 0


def systemd_sources() -> Path:
    """The shipped ``systemd/`` directory: beside the package (checkout) or inside it (wheel)."""
    package = Path(__file__).resolve().parents[1]
    for cand in (package.parent / "systemd", package / "_systemd"):
        if (cand / UNIT_NAME).is_file() and (cand / "governor.toml").is_file():
            return cand
    raise CliError(f"the unit template is missing (looked in {package.parent / 'systemd'} and "
                   f"{package / '_systemd'}); reinstall dnn-governor from a checkout: pip install -e .")


def governor_bindir() -> Path:
    """The real directory of the ``governor`` executable this interpreter runs (not a pyenv shim)."""
    candidates = [Path(sys.argv[0])] if Path(sys.argv[0]).name == "governor" else []
    candidates += [Path(sysconfig.get_path("scripts")) / "governor",
                   Path(sysconfig.get_path("scripts", f"{os.name}_user")) / "governor"]
    found = shutil.which("governor")
    candidates += [Path(found)] if found else []
    for cand in candidates:
        real = cand.resolve()
        if real.is_file() and os.access(real, os.X_OK) and real.parent.name != "shims":
            return real.parent
    raise CliError("cannot find the `governor` executable of this Python; reinstall: pip install -e .")


def _under_home(path: Path) -> bool:
    return any(str(path).startswith(tree + "/") for tree in _HOME_TREES)


def render_unit(template: str, bindir: Path, conf_dir: Path, docdir: Path) -> str:
    """The unit text with every placeholder filled; code under a home directory keeps it readable."""
    package = Path(__file__).resolve().parents[1]
    protect_home = "read-only" if _under_home(bindir) or _under_home(package) else "true"
    text = (template.replace("@BINDIR@", str(bindir)).replace("@CONFDIR@", str(conf_dir))
            .replace("@DOCDIR@", str(docdir)).replace("@PROTECT_HOME@", protect_home))
    left = sorted(set(re.findall(r"@[A-Z_]+@", text)))
    if left:
        raise CliError(f"the unit template has unknown placeholders {left}; this is a bug in dnn-governor")
    return text


def _docdir(sources: Path) -> Path:
    docs = sources.parent / "docs"
    return docs if docs.is_dir() else Path("/usr/share/doc/dnn-governor")


def _write_if_changed(path: Path, text: str, mode: int) -> str:
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return f"unchanged: {path}"
    existed = path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.new")
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(mode)
    tmp.replace(path)
    return f"{'updated' if existed else 'wrote'}: {path}"


def install(layout: Layout, host: Host) -> list[str]:
    """Write the unit and (if absent) the config; create the group; return the lines to print."""
    if layout.manage_system and not host.is_root:
        raise CliError(f"writing {layout.unit_path} needs root: run `sudo governor install-service`, "
                       "or stage the files with --prefix DIR")
    sources = systemd_sources()
    unit = render_unit((sources / UNIT_NAME).read_text(encoding="utf-8"), governor_bindir(),
                       layout.installed_config_path.parent, _docdir(sources))
    lines = [_write_if_changed(layout.unit_path, unit, 0o644)]
    if layout.config_path.exists():
        lines.append(f"kept the existing config {layout.config_path} (not overwritten); "
                     f"compare: diff -u {sources / 'governor.toml'} {layout.config_path}")
    else:
        lines.append(_write_if_changed(layout.config_path, (sources / "governor.toml").read_text("utf-8"), 0o644))
    group, problems = _config_group(layout.config_path)
    lines += problems + _ensure_group(group, layout, host) + rival_warnings(host)
    return lines + next_steps(layout, group, host)


def _config_group(path: Path) -> tuple[str, list[str]]:
    from governor.daemon.config import ConfigError, load_config

    try:
        return load_config(path).access.socket_group, []
    except ConfigError as exc:
        return "governor", [f"WARNING: the daemon will refuse this config until it is fixed: {exc}"]


def _ensure_group(group: str, layout: Layout, host: Host) -> list[str]:
    import grp

    try:
        grp.getgrnam(group)
        return [f"group {group} exists"]
    except KeyError:
        pass
    if not layout.manage_system:
        return [f"note: group {group} does not exist; on the board run (as root): groupadd --system {group}"]
    code, out = host.run(["groupadd", "--system", group])
    if code != 0:
        return [f"WARNING: could not create group {group} ({out or f'exit {code}'}); "
                f"create it yourself, or only root can use the socket"]
    return [f"created group {group}"]


def rival_warnings(host: Host) -> list[str]:
    """A warning per active service that also sets CPU/GPU frequencies; silent without systemctl."""
    if host.which("systemctl") is None:
        return []
    warnings = []
    for name in RIVALS:
        code, out = host.run(["systemctl", "is-active", f"{name}.service"])
        if code == 0 and out.splitlines()[:1] == ["active"]:
            warnings.append(f"WARNING: {name} is active and also sets CPU frequencies; the two would fight. "
                            f"Disable it: systemctl disable --now {name}")
    return warnings


def next_steps(layout: Layout, group: str, host: Host) -> list[str]:
    user = os.environ.get("SUDO_USER") or "$USER"
    config = layout.installed_config_path
    staged, copy = [], []
    if not layout.manage_system:
        unit = Path("/etc/systemd/system") / UNIT_NAME
        staged = [f"(staged only: nothing was installed on this system; the unit reads {config}, "
                  "so it works once both files are copied to /, as below)"]
        copy = [f"  cp {layout.unit_path} {unit}",
                f"  [ -e {config} ] || install -D -m 0644 {layout.config_path} {config}   # keeps an existing one"]
    no_systemd = [] if host.which("systemctl") else [
        "systemctl was not found: without systemd, run the daemon as root with: "
        f"governor serve --config {config}"]
    return [*staged, *no_systemd,
            "next, as root:", *copy,
            "  systemctl daemon-reload",
            "  systemctl enable --now governor",
            f"  usermod -aG {group} {user}      # then log in again (or: newgrp {group}) to use the socket",
            "check that it works:",
            "  sudo governor status              # board detected, domains, rails, temperatures",
            "  governor-client status            # the daemon answers on /run/governor/governor.sock",
            "  journalctl -u governor -b         # its log (startup, refusals, restores)"]


def uninstall(layout: Layout, host: Host, *, purge: bool = False) -> list[str]:
    """Stop and remove the unit; keep the config (and always the keys) unless purging."""
    if layout.manage_system and not host.is_root:
        raise CliError(f"removing {layout.unit_path} needs root: run `sudo governor uninstall-service`")
    lines = _stop_service(host) if layout.manage_system else []
    if layout.unit_path.exists():
        layout.unit_path.unlink()
        lines.append(f"removed: {layout.unit_path}")
    else:
        lines.append(f"no unit at {layout.unit_path} (nothing to remove)")
    if purge:
        lines += _remove_config(layout)
    elif layout.config_path.exists():
        lines.append(f"kept the config {layout.config_path} (--purge removes it)")
    baseline = layout.state_dir / "baseline.json"
    if baseline.exists():
        lines.append(f"WARNING: {baseline} holds a board baseline that was never restored: run governor restore")
    if layout.manage_system and host.which("systemctl"):
        lines.append("next, as root: systemctl daemon-reload")
    return [*lines, "the governor group stays (users may be in it); remove it with: groupdel governor"]


def _stop_service(host: Host) -> list[str]:
    if host.which("systemctl") is None:
        return []
    active = host.run(["systemctl", "is-active", UNIT_NAME])[1].splitlines()[:1] == ["active"]
    enabled = host.run(["systemctl", "is-enabled", UNIT_NAME])[1].splitlines()[:1] == ["enabled"]
    if not (active or enabled):
        return []
    # --now needs a running systemd; an enabled unit on a machine booted otherwise is only unlinked.
    cmd = ["systemctl", "disable", *(["--now"] if active else []), UNIT_NAME]
    code, out = host.run(cmd)
    if code != 0:
        raise CliError(f"`{' '.join(cmd)}` failed ({out}); stop and disable it yourself, then retry")
    return [f"stopped and disabled {UNIT_NAME} (its ExecStopPost ran governor restore)" if active
            else f"disabled {UNIT_NAME}"]


def _remove_config(layout: Layout) -> list[str]:
    lines = []
    if layout.config_path.exists():
        layout.config_path.unlink()
        lines.append(f"removed: {layout.config_path}")
    keys = layout.conf_dir / "keys"
    if keys.exists():
        lines.append(f"kept {keys} (CURVE keys); delete it yourself once no client needs them")
    elif layout.conf_dir.is_dir() and not any(layout.conf_dir.iterdir()):
        layout.conf_dir.rmdir()
        lines.append(f"removed: {layout.conf_dir}")
    return lines
