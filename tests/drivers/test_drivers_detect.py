"""Board detection from a hand-built device tree, against the real catalogue."""

from __future__ import annotations

import pytest
from drivers_handmade import build

from governor.core.board import BoardSpec
from governor.drivers._sysfs import SysfsRoot
from governor.drivers.catalogue import board_names, load_board
from governor.drivers.detect import DetectionError, detect_board, read_machine, score

SPECS = [load_board(n) for n in board_names()]


def _dt(tmp_path, compatible, model):
    build(tmp_path, {"proc/device-tree/compatible": "\x00".join(compatible) + "\x00",
                     "proc/device-tree/model": model + "\x00"})
    return SysfsRoot(tmp_path)


def test_compatible_is_nul_separated(tmp_path):
    machine = read_machine(_dt(tmp_path, ["nvidia,p2771-0000", "nvidia,tegra186"], "quill"))
    assert machine.compatible == ("nvidia,p2771-0000", "nvidia,tegra186") and machine.model == "quill"


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_each_board_recognises_its_own_example(tmp_path, spec):
    if spec.board.family == "host":
        assert detect_board(SysfsRoot(tmp_path), specs=SPECS).name == spec.name
        return
    root = _dt(tmp_path, spec.identify.compatible_example, spec.identify.model_example)
    assert detect_board(root, specs=SPECS).name == spec.name
    assert detect_board(root, requested=spec.name, specs=SPECS).name == spec.name


def test_most_specific_match_wins(tmp_path):
    base = next(s for s in SPECS if s.board.family != "host").model_dump()
    soc = BoardSpec.model_validate(base | {"board": base["board"] | {"name": "soc-only"},
                                           "identify": {"compatible": ["vendor,soc"]}})
    carrier = BoardSpec.model_validate(base | {"board": base["board"] | {"name": "carrier"},
                                               "identify": {"compatible": ["vendor,carrier", "vendor,soc"]}})
    root = _dt(tmp_path, ["vendor,carrier", "vendor,soc"], "x")
    assert score(carrier, read_machine(root)) > score(soc, read_machine(root))
    assert detect_board(root, specs=[soc, carrier]).name == "carrier"
    assert detect_board(root, specs=[carrier, soc]).name == "carrier"


def test_a_request_that_does_not_match_lists_the_known_boards(tmp_path):
    root = _dt(tmp_path, ["raspberrypi,4-model-b", "brcm,bcm2711"], "Raspberry Pi 4 Model B")
    wanted = next(s.name for s in SPECS if s.board.family != "host")
    with pytest.raises(DetectionError) as err:
        detect_board(root, requested=wanted, specs=SPECS)
    for spec in SPECS:
        assert spec.name in str(err.value)
    assert "Raspberry Pi 4" in str(err.value)
    with pytest.raises(DetectionError, match="unknown board 'nope'"):
        detect_board(root, requested="nope", specs=SPECS)


def test_unknown_device_tree_without_request_falls_back_to_host(tmp_path):
    root = _dt(tmp_path, ["raspberrypi,4-model-b"], "Raspberry Pi 4 Model B")
    assert detect_board(root, specs=SPECS).name == "host"
    with pytest.raises(DetectionError, match="no host board"):
        detect_board(root, specs=[s for s in SPECS if s.board.family != "host"])
