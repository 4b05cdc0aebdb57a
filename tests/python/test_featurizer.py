"""The text featurizer's output is part of every saved text model: a model trained today must get the same
features from the same text in any later version. These reference values were computed once from the
featurizer as released; a change that moves any feature of any of these texts fails here (and must come with
a new featurizer kind, not a silent change of this one)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

import mlops

TEXTS = ["The quick brown fox jumps over the lazy dog", "refund my order #12345, please!", "Où est ma commande ?",
         "配送が遅れています", "包裹还没到 📦", "", "  ...  ", "GPU kernels and CUDA streams"]

# SHA-256 of transform(TEXTS) as little-endian float32, row-major (len(TEXTS) x dimension).
GOLDEN = {
    (64, 0): "67266b8df386cd57172f81c93b406ce6b12a59b22236a90125213de101be59b2",
    (1024, 7): "a4a7def9ce5a7925479cda0ab5acf3e21d8eca04a77c7d03565416584c35b7d5",
}


@pytest.mark.parametrize("dimension, seed", sorted(GOLDEN))
def test_features_of_known_texts_never_change(dimension, seed):
    X = mlops.Featurizer(dimension=dimension, seed=seed).transform(TEXTS)
    assert X.dtype == np.float32 and X.shape == (len(TEXTS), dimension) and X.flags.c_contiguous
    assert hashlib.sha256(X.astype("<f4").tobytes()).hexdigest() == GOLDEN[(dimension, seed)]


def test_one_text_by_hand():
    # "hello world": the unigrams "hello" and "world" and the bigram "hello world", each 1/sqrt(3) after the
    # L2 normalisation, in buckets 0, 5 and 8 of 16 with seed 0.
    x = mlops.Featurizer(dimension=16, seed=0).transform(["hello world"])[0]
    expected = np.zeros(16, dtype=np.float32)
    expected[[0, 5, 8]] = np.float32(1 / np.sqrt(3))
    np.testing.assert_array_equal(x, expected)
