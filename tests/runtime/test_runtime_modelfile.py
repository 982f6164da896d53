"""Model files: one zip of metadata + weights; round trips exactly; every kind of damage gets a clear error."""

import io
import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

from governor.core.modelmeta import FORMAT_VERSION, META_ENTRY, ModelFileError, read_model_meta
from governor.runtime.data import load_digits_split
from governor.runtime.modelfile import describe, load_model, save_model
from governor.runtime.training import TrainConfig, train_incremental

CONFIG = TrainConfig(arch="alexnet-cifar", groups=2, connectivity="nested", epochs=1, width=0.125, lr=1e-2)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    split = load_digits_split()
    trained = train_incremental(CONFIG, split, threads=1)
    path = tmp_path_factory.mktemp("model") / "digits.dgm"
    save_model(path, trained.net, describe(trained, CONFIG, split))
    return path, trained, split


def rewrite(src, dst, *, meta=None, drop=None, replace=None):
    with zipfile.ZipFile(src) as old, zipfile.ZipFile(dst, "w") as new:
        for name in old.namelist():
            if name == drop:
                continue
            data = old.read(name)
            if name == META_ENTRY and meta is not None:
                data = json.dumps(meta(json.loads(data))).encode()
            new.writestr(name, replace[1] if replace and name == replace[0] else data)


def test_round_trip_gives_identical_outputs_and_metadata(saved):
    path, trained, split = saved
    loaded = load_model(path)
    x = torch.from_numpy(split.val.x[:32])
    trained.net.eval()
    for k in (1, 2):
        trained.net.set_active_groups(k)
        loaded.net.set_active_groups(k)
        with torch.inference_mode():
            assert torch.equal(loaded.net(x), trained.net(x))
    meta = loaded.meta
    assert (meta.arch, meta.groups, meta.connectivity, meta.input_shape) == ("alexnet-cifar", 2, "nested", (1, 8, 8))
    assert [meta.accuracy(k) for k in (1, 2)] == list(trained.accuracies)
    assert meta.classes == tuple("0123456789")
    assert meta.levels[0].macs < meta.levels[1].macs
    assert meta.total_state_bytes == meta.levels[-1].state_bytes  # the dynamic model stores nothing extra


def test_metadata_reads_without_torch(saved):
    path = saved[0]
    code = (
        "import sys; from governor.core.modelmeta import read_model_meta\n"
        f"meta = read_model_meta(open({str(path)!r}, 'rb'))\n"
        "assert 'torch' not in sys.modules\n"
        "print(meta.groups, [lv.macs for lv in meta.levels], len(meta.level(2).layers))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    meta = read_model_meta(path.read_bytes())
    assert out[0] == "2" and int(out[-1]) == len(meta.level(2).layers) == 8  # 5 conv + 2 fc + head


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p, d: d.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "truncated/corrupt"),
        (lambda p, d: d.write_bytes(b"PK\x03\x04 definitely not a model"), "not a dnn-governor-model"),
        (lambda p, d: rewrite(p, d, meta=lambda m: {**m, "format_version": FORMAT_VERSION + 1}),
         "upgrade dnn-governor"),
        (lambda p, d: rewrite(p, d, meta=lambda m: {**m, "format_version": 0}), "version 0 is not supported"),
        (lambda p, d: rewrite(p, d, meta=lambda m: {**m, "groups": 3}), "levels must list k = 1..3"),
        (lambda p, d: rewrite(p, d, drop="tensors/head.bias.npy"), "missing \\['head.bias'\\]"),
        (lambda p, d: rewrite(p, d, replace=("tensors/head.bias.npy", _npy(np.zeros(3, np.float32)))),
         "head.bias has shape \\(3,\\)"),
        (lambda p, d: rewrite(p, d, drop=META_ENTRY), "no meta.json"),
    ],
)
def test_damaged_files_get_clear_errors(saved, tmp_path, damage, message):
    bad = tmp_path / "bad.dgm"
    damage(saved[0], bad)
    with pytest.raises(ModelFileError, match=message) as info:
        load_model(bad)
    assert str(bad) in str(info.value)


def test_flipped_weight_byte_is_caught_by_the_checksum(saved, tmp_path):
    data = bytearray(saved[0].read_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = archive.getinfo("tensors/features.2.weight.npy")
    data[info.header_offset + 30 + len(info.filename) + 200] ^= 0xFF  # inside the stored payload
    bad = tmp_path / "flipped.dgm"
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="CRC"):
        load_model(bad)


def test_missing_file_says_how_to_get_one(tmp_path):
    with pytest.raises(ModelFileError, match="governor train"):
        load_model(tmp_path / "nope.dgm")


def _npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()
