"""The floor: the least a Flask endpoint can do to serve the same MLP.

JSON rows in, standardise with the stored means and deviations, softmax, JSON out. No
auth, no database, no validation. ``bench/predict.py`` runs it under gunicorn beside
trainserve; FLOOR_SPEC names the JSON file it writes (weights path, features, scaling).
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch
from flask import Flask, jsonify, request
from safetensors.torch import load_file

from service.ml.network import Architecture, build_mlp

torch.set_num_threads(1)
with open(os.environ["FLOOR_SPEC"]) as f:
    SPEC = json.load(f)
FEATURES = SPEC["features"]
MEAN = np.asarray(SPEC["mean"], dtype=np.float32)
STD = np.asarray(SPEC["std"], dtype=np.float32)
CLASSES = SPEC["classes"]
NETWORK = build_mlp(Architecture.from_json(SPEC["architecture"]))
NETWORK.load_state_dict(load_file(SPEC["weights"]))
NETWORK.eval()

app = Flask("floor")


@app.post("/predict")
def predict():
    records = request.get_json()["records"]
    x = np.array([[r[f] for f in FEATURES] for r in records], dtype=np.float32)
    with torch.inference_mode():
        p = torch.softmax(NETWORK(torch.from_numpy((x - MEAN) / STD)), dim=1).numpy()
    return jsonify(
        predictions=[
            {
                "label": CLASSES[int(row.argmax())],
                "probabilities": dict(zip(CLASSES, row.tolist(), strict=True)),
            }
            for row in p
        ]
    )
