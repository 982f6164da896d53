"""Bring your own network, end to end: a ResNet-18 trained dense on digits, converted, fine-tuned, profiled, served.

The user's side is this file's :func:`digits_resnet18` (torchvision's ResNet-18, from the zoo, with the
stem adapted to 1x8x8 digits: a 3x3 stride-1 first convolution and no max pool) and a plain dense
training loop. Everything after that is the governor's command line, run as a user would:

    governor convert benchmarks.byo_resnet18:digits_resnet18 --weights W.pt --input-shape 1,8,8 --groups 4 \\
        --order l1 --normalize MEAN/STD --out r18.dgm
    governor train --from r18.dgm --dataset digits --epochs E --out r18-ft.dgm
    governor profile r18-ft.dgm --board host --out r18-ft.json
    governor serve --model r18-ft.dgm   (then infer on the validation digits; a host without DVFS
                                         measures its own table at start instead of serving the profile)

    python benchmarks/byo_resnet18.py [--dir DIR] [--epochs 30] [--fine-tune-epochs 4]

It prints the dense accuracy, the converted file's accuracy per k before and after fine-tuning (k = G
must equal the dense model's, and accuracy should not decrease in k), the profile's size and what the
daemon answered. Takes a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import itertools
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from governor.runtime.data import load_split
from governor.runtime.modelfile import load_model
from governor.runtime.zoo.resnet import ResNet, resnet18

REPO = Path(__file__).resolve().parents[1]
SHAPE = (1, 8, 8)


def digits_resnet18(num_classes: int = 10) -> ResNet:
    """torchvision's ResNet-18 for 1x8x8 inputs: a 3x3 stride-1 stem and no max pool (as for CIFAR)."""
    model = resnet18(num_classes=num_classes)
    model.conv1 = nn.Conv2d(1, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()  # type: ignore[assignment]
    return model


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def train_dense(epochs: int, seed: int = 0) -> tuple[ResNet, float, tuple[tuple[float, ...], tuple[float, ...]]]:
    """The user's own training: SGD with a cosine schedule and small random shifts, on normalised inputs,
    keeping the epoch with the best validation accuracy (as a user keeps their best checkpoint)."""
    torch.manual_seed(seed)
    split = load_split("digits")
    mean, std = split.channel_stats()
    norm = (torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1))
    x = (torch.from_numpy(split.train.x) - norm[0]) / norm[1]
    y = torch.from_numpy(split.train.y)
    vx = (torch.from_numpy(split.val.x) - norm[0]) / norm[1]
    vy = torch.from_numpy(split.val.y)
    model = digits_resnet18()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    best, best_state = -1.0, model.state_dict()
    for epoch in range(epochs):
        model.train()
        for idx in torch.randperm(len(y)).split(64):
            shifted = torch.roll(x[idx], shifts=tuple(torch.randint(-1, 2, (2,)).tolist()), dims=(2, 3))
            opt.zero_grad()
            F.cross_entropy(model(shifted), y[idx]).backward()
            opt.step()
        sched.step()
        accuracy = _accuracy(model, vx, vy)
        print(f"dense epoch {epoch + 1}/{epochs}: val {accuracy:.2%}", flush=True)
        if accuracy > best:
            best, best_state = accuracy, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    return model, _accuracy(model, vx, vy), (mean, std)


def governor(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "governor", *args]
    print("$ governor " + " ".join(args), flush=True)
    done = subprocess.run(command, cwd=REPO, text=True, capture_output=True, **kw)  # type: ignore[call-overload]
    tail = (done.stdout + done.stderr).strip().splitlines()[-12:]
    print("\n".join("  " + line for line in tail), flush=True)
    if done.returncode != 0:
        raise SystemExit(f"governor {args[0]} failed ({done.returncode})")
    return done


def file_accuracies(path: Path) -> list[float]:
    """Accuracy per k of a model file on the digits validation split, measured here (not read from the file)."""
    loaded = load_model(path)
    split = load_split("digits", input_shape=tuple(loaded.meta.input_shape))  # type: ignore[arg-type]
    x, y = torch.from_numpy(split.val.x), torch.from_numpy(split.val.y)
    out = []
    for k in range(1, loaded.net.groups + 1):
        loaded.net.set_active_groups(k)
        out.append(_accuracy(loaded.net, x, y))
    return out


def serve_and_infer(model: Path, workdir: Path) -> None:
    """`governor serve --model`, then infer on validation digits. On a host without DVFS the daemon
    measures its own table at start (threads x k) rather than serving a profile, so none is passed."""
    from governor_client import Client

    endpoint = f"ipc://{workdir}/governor.sock"
    server = subprocess.Popen([sys.executable, "-m", "governor", "serve", "--model", str(model), "--endpoint",
                               endpoint, "--state-file", str(workdir / "state.json")],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (workdir / "governor.sock").exists():  # it measures its table first when it starts
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"governor serve did not start:\n{server.stdout.read() if server.stdout else ''}")
            time.sleep(0.2)
        split = load_split("digits", input_shape=SHAPE)
        with Client(endpoint, timeout_ms=60000) as client:
            client.connect()
            (spec,) = client.hello.interface.inputs  # type: ignore[union-attr]
            print(f"daemon says: input {spec.shape} {spec.dtype}; {spec.scale}")
            right, ks = 0, []
            for budget in (2.0, 5.0, 50.0):
                for i in range(0, 60, 3):
                    res = client.infer(split.val.x[i], deadline_ms=budget, objective="max_accuracy")
                    right += int(res.output.argmax() == split.val.y[i])
                    ks.append(res.point.k)
            print(f"served 60 validation digits at deadlines 2/5/50 ms (objective max_accuracy): {right}/60 right, "
                  f"k chosen "
                  f"{dict(sorted((k, ks.count(k)) for k in set(ks)))}")
    finally:
        server.terminate()
        server.wait(30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, help="work directory (default: a temporary one)")
    parser.add_argument("--epochs", type=int, default=30, help="dense training epochs")
    parser.add_argument("--fine-tune-epochs", type=int, default=4, help="epochs per fine-tuning stage")
    args = parser.parse_args(argv)
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="byo-r18-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    dense, dense_acc, (mean, std) = train_dense(args.epochs)
    print(f"dense ResNet-18 ({sum(p.numel() for p in dense.parameters()):,} parameters): val {dense_acc:.2%}")
    weights = workdir / "W.pt"
    torch.save(dense.state_dict(), weights)
    norm = f"{','.join(f'{m:.9g}' for m in mean)}/{','.join(f'{s:.9g}' for s in std)}"
    converted, tuned, profile = workdir / "r18.dgm", workdir / "r18-ft.dgm", workdir / "r18-ft.json"
    governor("convert", "benchmarks.byo_resnet18:digits_resnet18", "--weights", str(weights), "--input-shape",
             "1,8,8", "--groups", "4", "--order", "l1", "--normalize", norm, "--out", str(converted), "--force")
    before = file_accuracies(converted)
    governor("train", "--from", str(converted), "--dataset", "digits", "--epochs", str(args.fine_tune_epochs),
             "--out", str(tuned), "--force", "--restart")
    after = file_accuracies(tuned)
    governor("profile", str(tuned), "--board", "host", "--out", str(profile), "--force")
    serve_and_infer(tuned, workdir)
    print("accuracy per k (digits validation, 360 images):")
    print("| | " + " | ".join(f"k={k}" for k in range(1, len(after) + 1)) + " |")
    print("|---|" + "---|" * len(after))
    print("| converted, before fine-tuning | " + " | ".join(f"{a:.2%}" for a in before) + " |")
    print("| after `governor train --from` | " + " | ".join(f"{a:.2%}" for a in after) + " |")
    same = abs(after[-1] - dense_acc) < 1e-9 and abs(before[-1] - dense_acc) < 1e-9
    monotone = all(a <= b for a, b in itertools.pairwise(after))
    print(f"dense {dense_acc:.2%}; k = G identical to the dense model: {same}; non-decreasing in k: {monotone}; "
          f"{time.perf_counter() - started:.0f} s in all; files in {workdir}")
    return 0 if same and dense_acc >= 0.95 else 1


if __name__ == "__main__":
    raise SystemExit(main())
