"""A nested (Matryoshka) autoencoder for dimensionality reduction, against PCA.

    python examples/recipes/nested_autoencoder.py    # Fashion-MNIST, a few minutes on a CPU

The encoder maps an image to a 32-dim code z; one shared decoder reconstructs the image from every prefix z[:m]
(the rest zeroed), and the Matryoshka loss sums the reconstruction errors over m in 2, 4, ..., 32. So one code serves
every compression level, like PCA but non-linear. Reports the test reconstruction error per m for the autoencoder and
for PCA with m components, and draws z[:2] coloured by class and reconstructions per m.
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from _common import fashion_mnist, recipe_args, save_results, train_loop
from sklearn.decomposition import PCA
from torch import nn
from torch.nn.functional import mse_loss, pad

from matryoshka import MatryoshkaLoss, nesting_list
from matryoshka.data import CLASS_NAMES

args = recipe_args(__doc__, "nested_autoencoder", code_dim=32, epochs=8)
data = fashion_mnist(args.quick, args.seed)
epochs = 1 if args.quick else args.epochs
d, nesting = args.code_dim, nesting_list(args.code_dim, 2)
pixels = data.train.x[0].numel()
encoder = nn.Sequential(
    nn.Flatten(), nn.Linear(pixels, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, d)
)
decoder = nn.Sequential(nn.Linear(d, 256), nn.ReLU(), nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, pixels))


def reconstruct(code_prefix: torch.Tensor) -> torch.Tensor:
    return decoder(pad(code_prefix, (0, d - code_prefix.shape[1])))  # unused dims are zero


def reconstruction_error(code_prefix: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    return mse_loss(reconstruct(code_prefix), images.flatten(1))


# Images are 4-D, so MatryoshkaLoss passes them whole to the per-dim loss; prefixes are used as they are.
loss_fn = MatryoshkaLoss(reconstruction_error, nesting, normalize=False)
x = data.train.x
seconds = train_loop(
    [encoder, decoder], lambda idx: loss_fn(encoder(x[idx]), x[idx]), len(x), epochs, 256, 2e-3, "nested AE"
)

test = data.test.x
flat_train, flat_test = x.flatten(1).numpy(), test.flatten(1).numpy()
with torch.no_grad():
    z = encoder(test)
    ae_error = {str(m): reconstruction_error(z[:, :m], test).item() for m in nesting}
pca = PCA(n_components=d, random_state=args.seed).fit(flat_train)
codes = pca.transform(flat_test)
pca_error = {}
for m in nesting:
    approx = codes[:, :m] @ pca.components_[:m] + pca.mean_
    pca_error[str(m)] = float(((approx - flat_test) ** 2).mean())

print("test reconstruction MSE (standardised pixels) per code size m")
print(f"  {'m':>4}{'nested AE':>12}{'PCA':>10}")
for m in nesting:
    print(f"  {m:>4}{ae_error[str(m)]:>12.4f}{pca_error[str(m)]:>10.4f}")

fig, ax = plt.subplots(figsize=(6.5, 5.5), dpi=110)
z2 = z[:, :2].numpy()
scatter = ax.scatter(z2[:, 0], z2[:, 1], c=data.test.y.numpy(), cmap="tab10", s=4, alpha=0.7)
ax.legend(scatter.legend_elements()[0], CLASS_NAMES, fontsize=7, markerscale=1.2, loc="best")
ax.set_title("nested autoencoder: the first 2 code dims of the test images")
fig.tight_layout()
fig.savefig(args.out / "code_2d.png")

show = test[:8]
with torch.no_grad():
    rows = [show.flatten(1)] + [reconstruct(encoder(show)[:, :m]) for m in nesting]
fig, axes = plt.subplots(len(rows), 8, figsize=(8, 1.05 * len(rows)), dpi=110)
for r, (row, label) in enumerate(zip(rows, ["input", *[f"m={m}" for m in nesting]], strict=True)):
    for c in range(8):
        axes[r, c].imshow(row[c].reshape(28, 28).numpy(), cmap="gray")
        axes[r, c].set_xticks([])
        axes[r, c].set_yticks([])
    axes[r, 0].set_ylabel(label, fontsize=8)
fig.tight_layout()
fig.savefig(args.out / "reconstructions.png")

fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
ax.plot(nesting, [ae_error[str(m)] for m in nesting], "o-", label="nested autoencoder (one model)")
ax.plot(nesting, [pca_error[str(m)] for m in nesting], "s--", label="PCA")
ax.set_xscale("log", base=2)
ax.set_xticks(nesting, [str(m) for m in nesting])
ax.set_xlabel("code size m")
ax.set_ylabel("test MSE")
ax.legend()
ax.grid(alpha=0.3)
fig.tight_layout()
fig.savefig(args.out / "mse_vs_m.png")
save_results(args.out, {"nesting": nesting, "ae_mse": ae_error, "pca_mse": pca_error, "train_seconds": seconds})
