"""A malformed catalogue file is refused with a message naming the file and the field."""

from __future__ import annotations

import pytest

from governor.drivers.catalogue import CatalogueError, load_board, load_board_file, profiles_dir

GOOD = (profiles_dir() / "boards" / "jetson-nano.toml").read_text()


def _load(tmp_path, text: str, name: str = "jetson-nano"):
    path = tmp_path / "boards" / f"{name}.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return load_board_file(path)


def _edit(old: str, new: str) -> str:
    assert GOOD.count(old) == 1, old
    return GOOD.replace(old, new)


def test_the_unmodified_text_loads(tmp_path):
    assert _load(tmp_path, GOOD).name == "jetson-nano"


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        (_edit("cpu_count = 4", 'cpu_count = "four"'), "cpu_count", "integer"),
        (_edit('kind = "emc"', 'kind = "emc"\nbogus = 1'), "domains.2.bogus", "not permitted"),
        (_edit("table = [102000, 204000,", "table = [204000, 102000,"), "domains.0.table", "ascending"),
        (_edit('domain = "gpu"', 'domain = "gpu0"'), "units.1.domain", "not declared"),
        (_edit('power_total = ["POM_5V_IN"]', 'power_total = ["VDD_IN"]'), "power_total", "VDD_IN"),
        (_edit('{ name = "POM_5V_GPU"', '{ name = "POM_5V_IN"'), "power", "duplicate"),
        (_edit('limit_writes = "einval"', 'limit_writes = "sometimes"'), "board.limit_writes", "einval"),
        (_edit("schema_version = 1", "schema_version = 9"), "schema_version", "not supported"),
        (_edit('default_governor = "schedutil"', 'default_governor = "turbo"'), "domains.0", "turbo"),
    ],
)
def test_malformed_fields_are_named(tmp_path, text, field, words):
    with pytest.raises(CatalogueError) as caught:
        _load(tmp_path, text)
    message = str(caught.value)
    assert "jetson-nano.toml" in message
    assert f"field '{field}" in message
    assert words in message


def test_bad_toml_names_the_file_and_the_line(tmp_path):
    with pytest.raises(CatalogueError, match=r"jetson-nano\.toml: not valid TOML.*line"):
        _load(tmp_path, GOOD.replace("[board]", "[board", 1))


def test_a_name_that_differs_from_the_file_name_is_refused(tmp_path):
    with pytest.raises(CatalogueError, match=r"nano2\.toml: field 'board\.name': 'jetson-nano' must match"):
        _load(tmp_path, GOOD, name="nano2")


def test_unknown_boards_get_the_list_of_known_ones(tmp_path):
    _load(tmp_path, GOOD)
    with pytest.raises(CatalogueError, match="known boards: jetson-nano"):
        load_board("jetson-nanoo", tmp_path)


def test_volts_must_match_the_table(tmp_path):
    text = _edit("table = [102000, 204000,", "volts_mv = [800, 900]\ntable = [102000, 204000,")
    with pytest.raises(CatalogueError, match=r"field 'domains\.0'.*volts_mv has 2 entries but table has 15"):
        _load(tmp_path, text)
