#!/usr/bin/env python3
"""scikit-learn's baseline for configs/yeast-multilabel.toml, on the same split as stoke.

Writes datasets/yeast/yeast-split.csv (yeast.csv with a `split` column: a seeded 70/15/15
train/valid/test assignment), fits one logistic regression per label (binary relevance, on
standardised features) on the training rows and prints its test micro- and macro-F1 and exact
match as JSON. stoke trains on the same file:

    datasets/fetch yeast
    python3 benches/tabular/yeast_baseline.py
    target/release/stoke train configs/yeast-multilabel.toml \\
        --set data.path=datasets/yeast/yeast-split.csv --set data.tabular.split_column=split
"""

import json
import os

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

data = pd.read_csv(os.path.join(ROOT, "datasets/yeast/yeast.csv"))
order = np.random.RandomState(0).permutation(len(data))
split = np.empty(len(data), dtype=object)
a, b = int(0.7 * len(data)), int(0.85 * len(data))
split[order[:a]], split[order[a:b]], split[order[b:]] = "train", "valid", "test"
data["split"] = split
data.to_csv(os.path.join(ROOT, "datasets/yeast/yeast-split.csv"), index=False)
features = [c for c in data.columns if c.startswith("Att")]
labels = [c for c in data.columns if c.startswith("Class")]
train, test = data[data.split == "train"], data[data.split == "test"]
model = make_pipeline(StandardScaler(), OneVsRestClassifier(LogisticRegression(max_iter=2000)))
model.fit(train[features], train[labels])
predicted = model.predict(test[features])
print(json.dumps({
    "model": "logistic regression per label",
    "test_rows": len(test),
    "micro_f1": f1_score(test[labels], predicted, average="micro"),
    "macro_f1": f1_score(test[labels], predicted, average="macro", zero_division=0),
    "exact_match": float((predicted == test[labels].values).all(axis=1).mean()),
}))
