"""Adaptive classification with a cascade over the nested heads of one MRL model.

    python examples/adaptive_classification.py

Trains a small MRL model on sklearn's digits (seconds), fits cascade thresholds on the validation split and
classifies the test split: each example stops at the first dim whose head is confident enough.
"""

import tempfile

from matryoshka import encode_and_classify
from matryoshka.adaptive import Cascade
from matryoshka.train import Trainer, parse_config

config = parse_config(
    {
        "data": {"name": "digits"},
        "model": {"backbone": "cnn", "width": 8, "embed_dim": 64, "min_dim": 4, "head": "mrl"},
        "optim": {"lr": 0.003},
        "train": {"epochs": 8, "batch_size": 64, "out_dir": tempfile.mkdtemp()},
    }
)
trainer = Trainer(config, progress=False)
model = trainer.fit().model
data = trainer.data

_, val_logits = encode_and_classify(model, data.val.x)
cascade = Cascade(model.nesting).fit(val_logits, data.val.y, policy="pairwise")
result = cascade.predict_model(model, data.test.x)  # head m runs only for the examples that reach dim m

_, test_logits = encode_and_classify(model, data.test.x)
for m, logits in zip(model.nesting, test_logits, strict=True):
    print(f"fixed dim {m:>3}: accuracy {(logits.argmax(1) == data.test.y).float().mean():.3f}")
print(
    f"cascade: accuracy {result.accuracy(data.test.y):.3f} at {result.expected_dim:.1f} dims on average "
    f"(head cost {result.mean_head_cost:.1f} dims); thresholds {[round(t, 2) for t in cascade.thresholds_.tolist()]}"
)
