"""LightGBM's tree models, read from their text files and evaluated with numpy.

Answering only needs a model's raw output: the sum over its trees of the leaf each row falls into. Reading the
text file and walking every tree at once costs about a millisecond for a question's candidates, and spares each
answering process LightGBM's import (lightgbm and scipy: about 0.15 s of every one-shot `citebot ask`). Training
still uses LightGBM (`bot.answering.training`); `tests/test_scorer.py` checks that both give the same output.

The decisions follow LightGBM's own `Tree::NumericalDecision` and `Tree::CategoricalDecision` (include/LightGBM/
tree.h): `decision_type` holds the categorical flag (bit 0), the default direction (bit 1) and the missing-value
type (bits 2-3: none, zero or NaN); a child below zero is a leaf, `~child`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_CATEGORICAL = 1
_DEFAULT_LEFT = 2
_MISSING_ZERO, _MISSING_NAN = 1, 2
_ZERO = 1e-35  # LightGBM's kZeroThreshold


class ModelFormatError(ValueError):
    """The text is not a LightGBM tree model this reader understands."""


@dataclass(frozen=True)
class Forest:
    """Every tree of one model in flat arrays: internal nodes numbered across trees, leaves likewise."""

    roots: np.ndarray  # per tree: its first internal node, or ~leaf for a tree of one leaf
    feature: np.ndarray
    threshold: np.ndarray
    decision: np.ndarray
    left: np.ndarray  # a child: an internal node's number, or ~leaf
    right: np.ndarray
    cat_start: np.ndarray  # categorical nodes: where their bitset starts in `bits`, and its length in words
    cat_words: np.ndarray
    bits: np.ndarray
    leaf_value: np.ndarray
    features: int

    @classmethod
    def from_text(cls, text: str) -> Forest:
        header, *blocks = text.split("\nTree=")
        fields = dict(line.split("=", 1) for line in header.splitlines() if "=" in line)
        if fields.get("version") != "v4" or "max_feature_idx" not in fields or not blocks:
            raise ModelFormatError("not a LightGBM v4 tree model")
        roots: list[int] = []
        parts: dict[str, list[np.ndarray]] = {
            name: [] for name in ("feature", "threshold", "decision", "left", "right", "cat_start", "cat_words")
        }
        bits: list[np.ndarray] = []
        leaves: list[np.ndarray] = []
        nodes = leaf_count = bit_count = 0
        for block in blocks:
            tree = dict(line.split("=", 1) for line in block.split("\n\n", 1)[0].splitlines() if "=" in line)
            values = np.asarray(tree["leaf_value"].split(), dtype=np.float64)
            if int(tree["num_leaves"]) == 1:
                roots.append(~leaf_count)
                leaves.append(values[:1])
                leaf_count += 1
                continue

            def ints(name: str, tree: dict[str, str] = tree) -> np.ndarray:
                return np.asarray(tree[name].split(), dtype=np.int64)

            inner = len(ints("split_feature"))
            left, right = ints("left_child"), ints("right_child")
            # Renumber children across trees: internal nodes after the earlier trees', leaves likewise.
            parts["left"].append(np.where(left >= 0, left + nodes, ~(~left + leaf_count)))
            parts["right"].append(np.where(right >= 0, right + nodes, ~(~right + leaf_count)))
            parts["feature"].append(ints("split_feature"))
            threshold = np.asarray(tree["threshold"].split(), dtype=np.float64)
            parts["threshold"].append(threshold)
            decision = ints("decision_type")
            parts["decision"].append(decision)
            starts, words = np.zeros(inner, dtype=np.int64), np.zeros(inner, dtype=np.int64)
            if int(tree.get("num_cat", "0")) > 0:
                boundaries = ints("cat_boundaries")
                categorical = (decision & _CATEGORICAL) != 0
                index = threshold[categorical].astype(np.int64)
                starts[categorical] = boundaries[index] + bit_count
                words[categorical] = boundaries[index + 1] - boundaries[index]
                tree_bits = np.asarray(tree["cat_threshold"].split(), dtype=np.int64)
                bits.append(tree_bits)
                bit_count += len(tree_bits)
            parts["cat_start"].append(starts)
            parts["cat_words"].append(words)
            leaves.append(values)
            roots.append(nodes)
            nodes += inner
            leaf_count += len(values)

        def joined(name: str, dtype: type) -> np.ndarray:
            return np.concatenate(parts[name]).astype(dtype) if parts[name] else np.zeros(0, dtype=dtype)

        return cls(
            roots=np.asarray(roots, dtype=np.int64),
            feature=joined("feature", np.int64),
            threshold=joined("threshold", np.float64),
            decision=joined("decision", np.int64),
            left=joined("left", np.int64),
            right=joined("right", np.int64),
            cat_start=joined("cat_start", np.int64),
            cat_words=joined("cat_words", np.int64),
            bits=np.concatenate(bits).astype(np.uint64) if bits else np.zeros(1, dtype=np.uint64),
            leaf_value=np.concatenate(leaves),
            features=int(fields["max_feature_idx"]) + 1,
        )

    def predict(self, rows: np.ndarray) -> np.ndarray:
        """The raw output for each row: the sum of its leaves' values, tree by tree as LightGBM adds them."""
        data = np.asarray(rows, dtype=np.float64)
        if data.ndim != 2 or data.shape[1] != self.features:
            raise ModelFormatError(f"expected rows of {self.features} features, got shape {data.shape}")
        count = len(data)
        at = np.tile(self.roots, (count, 1))  # (rows, trees): the node each row is at in each tree
        row_of = np.repeat(np.arange(count), len(self.roots)).reshape(at.shape)
        while True:
            inside = at >= 0
            if not inside.any():
                break
            node = at[inside]
            value = data[row_of[inside], self.feature[node]]
            at[inside] = np.where(self._goes_left(node, value), self.left[node], self.right[node])
        values = self.leaf_value[~at]
        total = np.zeros(count, dtype=np.float64)
        for tree in range(values.shape[1]):
            total += values[:, tree]
        return total

    def _goes_left(self, node: np.ndarray, value: np.ndarray) -> np.ndarray:
        decision = self.decision[node]
        missing = (decision >> 2) & 3
        default_left = (decision & _DEFAULT_LEFT) != 0
        nan = np.isnan(value)
        # Numerical: NaN counts as 0 unless NaN is the missing type; the missing value takes the default side.
        number = np.where(nan & (missing != _MISSING_NAN), 0.0, value)
        to_default = ((missing == _MISSING_ZERO) & (np.abs(number) <= _ZERO)) | ((missing == _MISSING_NAN) & nan)
        numerical = np.where(to_default, default_left, number <= self.threshold[node])
        # Categorical: left when the category's bit is set; negative categories, and NaN as missing, go right.
        category = np.where(nan, 0, np.where(np.isfinite(value), value, -1)).astype(np.int64)
        word = category // 32
        known = (category >= 0) & (word < self.cat_words[node]) & ~(nan & (missing == _MISSING_NAN))
        index = np.where(known, self.cat_start[node] + word, 0)
        bit = (self.bits[index] >> (category % 32).astype(np.uint64)) & np.uint64(1)
        categorical = known & (bit == 1)
        return np.where((decision & _CATEGORICAL) != 0, categorical, numerical)
