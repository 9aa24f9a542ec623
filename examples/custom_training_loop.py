"""MRL in your own training loop: any encoder, an MRLHead, and MatryoshkaLoss.

    python examples/custom_training_loop.py

Trains a small MLP on sklearn's digits for a few epochs and prints test accuracy at every nested dim.
"""

import torch
from torch import nn

from matryoshka import MatryoshkaLoss, MRLHead, nesting_list
from matryoshka.data import load_dataset

torch.manual_seed(0)
data = load_dataset("digits")
d = 64
nesting = nesting_list(d, min_dim=4)  # [4, 8, 16, 32, 64]
encoder = nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, d))
head = MRLHead(d, num_classes=10, nesting=nesting)  # tied=True for MRL-E
loss_fn = MatryoshkaLoss(nn.CrossEntropyLoss(), nesting)
opt = torch.optim.AdamW([*encoder.parameters(), *head.parameters()], lr=3e-3)

for _epoch in range(20):
    perm = torch.randperm(len(data.train))
    for idx in perm.split(64):
        loss = loss_fn(head(encoder(data.train.x[idx])), data.train.y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()

with torch.no_grad():
    logits = head(encoder(data.test.x))
for m, out in zip(nesting, logits, strict=True):
    print(f"dim {m:>3}: test accuracy {(out.argmax(1) == data.test.y).float().mean():.3f}")
