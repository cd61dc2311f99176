#!/usr/bin/env python3
"""scikit-learn's baselines for configs/diamonds-tabular.toml, on the same split as stoke.

Writes datasets/diamonds/diamonds-split.csv (diamonds.csv with a `split` column: a seeded
80/10/10 train/valid/test assignment), fits ridge regression (one-hot categories,
standardised numbers) and gradient boosting (scikit-learn's GradientBoostingRegressor and
HistGradientBoostingRegressor, default settings) on the training rows, and prints each one's
test MAE, RMSE and R² in dollars as JSON lines. stoke trains on the same file:

    datasets/fetch diamonds
    python3 benches/tabular/baselines.py
    target/release/stoke train configs/diamonds-tabular.toml \\
        --set data.path=datasets/diamonds/diamonds-split.csv --set data.tabular.split_column=split

Needs numpy, pandas and scikit-learn.
"""

import json
import os
import time

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingRegressor, HistGradientBoostingRegressor
from sklearn.linear_model import Ridge
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NUMERIC = ["carat", "depth", "table", "x", "y", "z"]
CATEGORICAL = ["cut", "color", "clarity"]


def main():
    data = pd.read_csv(os.path.join(ROOT, "datasets/diamonds/diamonds.csv"))
    order = np.random.RandomState(0).permutation(len(data))
    split = np.empty(len(data), dtype=object)
    cut_valid, cut_test = int(0.8 * len(data)), int(0.9 * len(data))
    split[order[:cut_valid]] = "train"
    split[order[cut_valid:cut_test]] = "valid"
    split[order[cut_test:]] = "test"
    data["split"] = split
    data.to_csv(os.path.join(ROOT, "datasets/diamonds/diamonds-split.csv"), index=False)

    train, test = data[data.split == "train"], data[data.split == "test"]
    features = NUMERIC + CATEGORICAL
    one_hot = ColumnTransformer([
        ("numeric", StandardScaler(), NUMERIC),
        ("categorical", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL),
    ])
    ordinal = ColumnTransformer([
        ("numeric", "passthrough", NUMERIC),
        ("categorical", OrdinalEncoder(), CATEGORICAL),
    ])
    models = {
        "ridge": make_pipeline(one_hot, Ridge(alpha=1.0)),
        "gradient-boosting": make_pipeline(one_hot, GradientBoostingRegressor(random_state=0)),
        "hist-gradient-boosting": make_pipeline(
            ordinal,
            HistGradientBoostingRegressor(categorical_features=[6, 7, 8], random_state=0),
        ),
    }
    for name, model in models.items():
        started = time.perf_counter()
        model.fit(train[features], train.price)
        seconds = time.perf_counter() - started
        predicted = model.predict(test[features])
        print(json.dumps({
            "model": name,
            "train_rows": len(train),
            "test_rows": len(test),
            "test_mae": mean_absolute_error(test.price, predicted),
            "test_rmse": mean_squared_error(test.price, predicted) ** 0.5,
            "test_r2": r2_score(test.price, predicted),
            "fit_s": seconds,
        }), flush=True)


if __name__ == "__main__":
    main()
