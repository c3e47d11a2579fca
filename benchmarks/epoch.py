"""End to end: one epoch (training + test evaluation) of our default ``vae train`` against the PyTorch
example VAE (pytorch/examples, vae/main.py: 784-400-20, ReLU, sigmoid, BCE + KLD, Adam(lr=1e-3), batch 128,
torchvision MNIST through DataLoaders; its prints and save_image calls left out), on the CPU.  Its epoch
time is train(epoch) + test(epoch); ours is the metrics row's ``seconds`` of ``numpy_vae.training.train``
with the default TrainConfig and epochs=1.  The two alternate, so drift hits both.
"""
from __future__ import annotations

import csv
import tempfile
import time
from pathlib import Path

import numpy as np


def example_epoch(data_dir: str, device: str = "cpu", batch_size: int = 128, seed: int = 1) -> dict:
    """One epoch of the PyTorch example VAE; seconds and losses."""
    import torch
    import torch.nn.functional as F
    from torch import nn
    from torchvision import datasets, transforms

    torch.manual_seed(seed)
    dev = torch.device(device)
    t0 = time.perf_counter()
    loader_kw = {"num_workers": 1, "pin_memory": True} if dev.type == "cuda" else {}
    train_loader = torch.utils.data.DataLoader(
        datasets.MNIST(data_dir, train=True, transform=transforms.ToTensor()),
        batch_size=batch_size, shuffle=True, **loader_kw)
    test_loader = torch.utils.data.DataLoader(
        datasets.MNIST(data_dir, train=False, transform=transforms.ToTensor()),
        batch_size=batch_size, shuffle=False, **loader_kw)

    class ExampleVAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc21, self.fc22 = nn.Linear(784, 400), nn.Linear(400, 20), nn.Linear(400, 20)
            self.fc3, self.fc4 = nn.Linear(20, 400), nn.Linear(400, 784)

        def encode(self, x):
            h = F.relu(self.fc1(x))
            return self.fc21(h), self.fc22(h)

        def reparameterize(self, mu, logvar):
            return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)

        def decode(self, z):
            return torch.sigmoid(self.fc4(F.relu(self.fc3(z))))

        def forward(self, x):
            mu, logvar = self.encode(x.view(-1, 784))
            return self.decode(self.reparameterize(mu, logvar)), mu, logvar

    def loss_function(recon, x, mu, logvar):
        bce = F.binary_cross_entropy(recon, x.view(-1, 784), reduction="sum")
        kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        return bce + kld

    model = ExampleVAE().to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    setup = time.perf_counter() - t0

    t0 = time.perf_counter()
    model.train()
    train_loss = 0.0
    for data, _ in train_loader:
        data = data.to(dev)
        optimizer.zero_grad()
        recon, mu, logvar = model(data)
        loss = loss_function(recon, data, mu, logvar)
        loss.backward()
        train_loss += loss.item()
        optimizer.step()
    t_train = time.perf_counter() - t0
    model.eval()
    test_loss = 0.0
    with torch.no_grad():
        for data, _ in test_loader:
            data = data.to(dev)
            recon, mu, logvar = model(data)
            test_loss += loss_function(recon, data, mu, logvar).item()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "train_s": t_train, "test_s": seconds - t_train, "setup_s": setup,
            "train_loss": train_loss / len(train_loader.dataset), "test_loss": test_loss / len(test_loader.dataset),
            "params": sum(p.numel() for p in model.parameters()), "device": device}


def ours_epoch(data_dir: str, **overrides) -> dict:
    """One epoch of the default ``vae train`` (NumPy backend unless overridden); seconds and losses."""
    from numpy_vae.config import TrainConfig
    from numpy_vae.training import train
    with tempfile.TemporaryDirectory(prefix="vae-bench-epoch-") as runs:
        config = TrainConfig(epochs=1, data_dir=data_dir, runs_dir=runs, name="epoch", **overrides)
        t0 = time.perf_counter()
        run_dir = train(config, progress=False, log=lambda *a, **k: None)
        wall = time.perf_counter() - t0
        with open(Path(run_dir) / "metrics.csv") as f:
            row = list(csv.DictReader(f))[-1]
    from .flops import num_params
    n_params = num_params(config.hidden, config.latent)
    return {"seconds": float(row["seconds"]), "wall_s": wall, "train_loss": float(row["train_loss"]),
            "test_loss": float(row["test_loss"]), "params": n_params, "backend": config.backend,
            "hidden": list(config.hidden), "batch_size": config.batch_size}


def compare_epochs(data_dir: str, repeats: int = 1, log=print) -> dict:
    """Alternate the example and ours ``repeats`` times; medians and the ratio."""
    try:
        import torchvision  # noqa: F401
        from numpy_vae.data import load_mnist
        load_mnist(data_dir, "test")
    except Exception as e:          # noqa: BLE001  (reported in the results, never fatal)
        return {"skipped": f"{type(e).__name__}: {e}"}
    example, ours = [], []
    for r in range(repeats):
        example.append(example_epoch(data_dir))
        ours.append(ours_epoch(data_dir))
        log(f"bench: epoch {r + 1}/{repeats}: pytorch example {example[-1]['seconds']:.2f} s, "
            f"ours {ours[-1]['seconds']:.2f} s")
    ex = float(np.median([e["seconds"] for e in example]))
    us = float(np.median([o["seconds"] for o in ours]))
    return {"example": {"runs": example, "median_s": ex, "what": "pytorch/examples vae/main.py, 784-400-20, CPU"},
            "ours": {"runs": ours, "median_s": us, "what": "vae train defaults, numpy float32, 784-512-256-20"},
            "ratio_ours_to_example": us / ex, "target": "ours < example", "met": us < ex,
            "param_ratio": ours[0]["params"] / example[0]["params"]}
