"""`governor train`: end to end on digits, with the final table, checkpoints and clear errors."""

import pytest

from governor.cli.main import main
from governor.runtime.data import load_digits_split
from governor.runtime.modelfile import load_model
from governor.runtime.training import TrainConfig, train_incremental

TINY = ["train", "--arch", "resnet-small", "--dataset", "digits", "--groups", "2", "--epochs", "1",
        "--width", "0.25", "--threads", "1"]



def test_trains_writes_a_model_and_prints_the_table(tmp_path, capsys):
    out = tmp_path / "m.dgm"
    assert main([*TINY, "--connectivity", "nested", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    meta = load_model(out).meta
    assert meta.connectivity == "nested" and meta.groups == 2
    lines = stdout.splitlines()
    assert lines[0].split() == ["k", "accuracy", "params", "MACs", "weights", "KiB"]
    for level, line in zip(meta.levels, lines[1:3], strict=True):
        cells = line.split()
        assert cells[0] == str(level.k) and cells[2] == f"{level.params:,}" and cells[3] == f"{level.macs:,}"
        assert cells[1] == f"{100 * level.accuracy:.2f}%"
    assert "separate models" in stdout
    assert not (tmp_path / "m.dgm.ckpt").exists()
    stamp = out.stat().st_mtime_ns
    assert main([*TINY, "--out", str(out)]) == 2  # an existing model is never overwritten by accident
    assert "--force" in capsys.readouterr().err and out.stat().st_mtime_ns == stamp


def test_foreign_checkpoint_is_refused_unless_restarted(tmp_path, capsys):
    out = tmp_path / "m.dgm"
    foreign = TrainConfig(groups=1, epochs=1, width=0.25)  # leaves its checkpoint where ours would be
    train_incremental(foreign, load_digits_split(), checkpoint=tmp_path / "m.dgm.ckpt")
    assert main([*TINY, "--out", str(out)]) == 2
    assert "--restart" in capsys.readouterr().err
    assert not out.exists()
    assert main([*TINY, "--restart", "--out", str(out)]) == 0
    assert load_model(out).meta.groups == 2


def test_trains_on_a_cifar10_directory(tmp_path, cifar_dir, capsys):
    out = tmp_path / "c.dgm"
    args = ["train", "--arch", "alexnet-cifar", "--dataset", f"cifar10:{cifar_dir}", "--groups", "2",
            "--epochs", "1", "--width", "0.0625", "--batch-size", "4", "--out", str(out)]
    assert main(args) == 0
    meta = load_model(out).meta
    assert (meta.input_shape, meta.training.dataset, meta.training.val_samples) == ((3, 32, 32), "cifar10", 5)
    assert meta.classes[0] == "airplane" and len(meta.level(2).layers) == 8


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--dataset", "mnist"], "'digits', 'cifar10:DIR' or 'imagefolder:DIR'"),
        (["--dataset", "cifar10:/nonexistent"], "cifar-10-batches-py"),
        (["--epochs", "0"], "at least 1"),
        (["--out", "/nonexistent/dir/m.dgm"], "does not exist"),
    ],
)
def test_bad_options_get_one_line_errors(tmp_path, capsys, extra, message):
    args = [*TINY, "--out", str(tmp_path / "m.dgm"), *extra]
    assert main(args) == 2
    assert message in capsys.readouterr().err
