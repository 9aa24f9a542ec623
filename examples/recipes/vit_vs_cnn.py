"""An attention backbone trained with MRL: a small ViT against the CNN, accuracy per dim on Fashion-MNIST.

    python examples/recipes/vit_vs_cnn.py            # 5 epochs per model, about 15 minutes on a 2-core CPU

Both models are built and trained by the library's Trainer from the same config, only ``model.backbone`` differs:
``vit`` is 16 patches of 7x7 pixels, 4 pre-norm self-attention blocks of width 64; ``cnn`` is the two-block CNN.
Their embeddings are 64-dim, trained with Matryoshka heads at 8, 16, 32, 64.
"""

from _common import fashion_mnist, recipe_args, save_results

from matryoshka import encode_and_classify
from matryoshka.evaluate import accuracy
from matryoshka.report import per_dim_plot
from matryoshka.train import Trainer, parse_config

args = recipe_args(__doc__, "vit_vs_cnn", epochs=5, embed_dim=64)
data = fashion_mnist(args.quick, args.seed)
epochs = 1 if args.quick else args.epochs
results = {"epochs": epochs, "models": {}}
for backbone, width, lr in (("cnn", 16, 3e-3), ("vit", 64, 1e-3)):
    config = parse_config(
        {
            "data": {"name": "fashion_mnist", "seed": args.seed},
            "model": {"backbone": backbone, "width": width, "embed_dim": args.embed_dim, "head": "mrl"},
            "optim": {"lr": lr, "warmup_steps": 100},
            "train": {"epochs": epochs, "batch_size": 128, "seed": args.seed, "out_dir": str(args.out / backbone)},
        }
    )
    trained = Trainer(config, data=data).fit()
    _, logits = encode_and_classify(trained.model, data.test.x)
    nesting = config.model.resolved_nesting()
    results["models"][backbone] = {
        "accuracy": {str(m): accuracy(out, data.test.y) for m, out in zip(nesting, logits, strict=True)},
        "parameters": sum(p.numel() for p in trained.model.backbone.parameters()),
        "train_seconds": round(sum(h["seconds"] for h in trained.history), 1),
    }
results["nesting"] = nesting

print("test accuracy (%) per dim")
print(f"  {'backbone':<10}{'params':>9}" + "".join(f"{m:>8}" for m in nesting) + f"{'train s':>9}")
for name, entry in results["models"].items():
    cells = "".join(f"{100 * entry['accuracy'][str(m)]:>8.2f}" for m in nesting)
    print(f"  {name:<10}{entry['parameters']:>9,}{cells}{entry['train_seconds']:>9.0f}")
per_dim_plot(
    {name: entry["accuracy"] for name, entry in results["models"].items()},
    nesting,
    {"cnn": "CNN", "vit": "ViT"},
    "test accuracy (%)",
    "MRL on Fashion-MNIST: ViT vs CNN",
    args.out / "accuracy_vs_dims.png",
)
save_results(args.out, results)
