"""A second prompt-injection scorer: logistic regression over sentence embeddings.

The n-gram classifier (`injection_classifier.py`) knows the words of its training texts; this
one knows what they *mean*, so a rephrased instruction lands near the ones it learnt. The
embeddings are WordLlama's 256-d `l2_supercat` token vectors, averaged (the `wordllama`
wheel ships the weights and the tokenizer inside the package; they are read from the
package directory, never downloaded, and numpy does the rest on CPU in milliseconds).

Each window of the normalised text (the same windows the n-gram model scores) is embedded
and scored; the highest score counts. The regression is trained at first use from the
shipped training split (about a second) and cached by the hash of the data and the code.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path

from orchestrator.engine.injection_classifier import TRAIN_FILE, load_rows, windows
from orchestrator.engine.normalise import normalise

WEIGHTS_FILE = "weights/l2_supercat_256.safetensors"
TOKENIZER_FILE = "tokenizers/l2_supercat_tokenizer_config.json"


class EmbeddingsUnavailable(RuntimeError):
    """The `wordllama` package (and its shipped weights) is not installed here."""


def _package_dir() -> Path:
    # Located, not imported: importing `wordllama` would pull in its downloader (`requests`);
    # only its shipped files are used, through `tokenizers` and `safetensors`.
    spec = importlib.util.find_spec("wordllama")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingsUnavailable("the embedding scorer needs the `wordllama` package installed")
    root = Path(next(iter(spec.submodule_search_locations))).resolve()
    if not (root / WEIGHTS_FILE).exists() or not (root / TOKENIZER_FILE).exists():
        raise EmbeddingsUnavailable(f"wordllama's shipped weights are missing under {root}")
    return root


class Embedder:
    """Mean-pooled, L2-normalised WordLlama embeddings, loaded from the installed package only."""

    def __init__(self) -> None:
        import numpy as np
        from safetensors import safe_open
        from tokenizers import Tokenizer

        root = _package_dir()
        tokenizer = Tokenizer.from_file(str(root / TOKENIZER_FILE))
        tokenizer.no_padding()
        tokenizer.no_truncation()
        with safe_open(str(root / WEIGHTS_FILE), framework="np", device="cpu") as weights:
            self._table = np.ascontiguousarray(weights.get_tensor("embedding.weight").astype(np.float32))
        self._tokenizer = tokenizer
        self._np = np

    def embed(self, texts: list[str]):
        np = self._np
        out = np.zeros((len(texts), self._table.shape[1]), dtype=np.float32)
        for i, encoding in enumerate(self._tokenizer.encode_batch(texts, add_special_tokens=False)):
            if encoding.ids:
                out[i] = self._table[encoding.ids].mean(axis=0)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-9)


_embedder: Embedder | None = None


def embedder() -> Embedder:
    global _embedder
    if _embedder is None:
        _embedder = Embedder()
    return _embedder


class EmbeddingClassifier:
    """Logistic regression on embeddings; `score(text)` is the highest window probability."""

    def __init__(self, weights: list[float]) -> None:
        import numpy as np

        self.weights = np.asarray(weights, dtype=np.float64)

    def _probabilities(self, matrix):
        import numpy as np

        z = matrix @ self.weights[:-1] + self.weights[-1]
        return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))

    def score(self, text: str) -> float:
        normalised = normalise(text)
        views = [normalised.text[:20000], *windows(normalised)]
        return float(self._probabilities(embedder().embed(views)).max())

    @classmethod
    def train(cls, rows: list[dict], *, iterations: int = 300, rate: float = 5.0, l2: float = 1e-3) -> EmbeddingClassifier:
        """Full-batch gradient descent: the same rows always give the same weights. Every
        window of a benign text is a benign example too (a window of an attack may be benign,
        so attacks count as whole texts only)."""
        import numpy as np

        texts, labels, weights = [], [], []
        for row in rows:
            normalised = normalise(row["text"])
            texts.append(normalised.text)
            labels.append(float(row["label"]))
            weights.append(1.0)
            if not row["label"]:
                parts = windows(normalised)
                texts += parts
                labels += [0.0] * len(parts)
                weights += [2.0 / max(1, len(parts))] * len(parts)
        x = embedder().embed(texts).astype(np.float64)
        x = np.hstack([x, np.ones((len(x), 1))])
        y, w = np.asarray(labels), np.asarray(weights)
        theta = np.zeros(x.shape[1])
        penalty = np.r_[np.ones(x.shape[1] - 1), 0.0] * l2
        for _ in range(iterations):
            p = 1.0 / (1.0 + np.exp(-np.clip(x @ theta, -30, 30)))
            theta -= rate * (x.T @ ((p - y) * w) / w.sum() + penalty * theta)
        return cls(theta.tolist())


_trained: EmbeddingClassifier | None = None


def _cache_path(train_file: Path) -> Path:
    root = os.environ.get("AGENTDECK_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "agentdeck")
    digest = hashlib.sha256()
    for part in (train_file, Path(__file__), Path(normalise.__code__.co_filename), _package_dir() / TOKENIZER_FILE):
        digest.update(part.read_bytes())
    return Path(root) / f"injection-embeddings-{digest.hexdigest()[:16]}.json"


def shipped_embedding_classifier(train_file: Path = TRAIN_FILE) -> EmbeddingClassifier:
    """Trained once on the shipped train split, then read from a cache named by the hash of
    the data, the code and the tokenizer."""
    global _trained
    if _trained is not None and train_file == TRAIN_FILE:
        return _trained
    cache = _cache_path(train_file)
    model = None
    if cache.exists():
        try:
            model = EmbeddingClassifier(json.loads(cache.read_text())["weights"])
        except (OSError, ValueError, KeyError):
            model = None
    if model is None:
        model = EmbeddingClassifier.train(load_rows(train_file))
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            partial = cache.with_suffix(f".{os.getpid()}.tmp")
            partial.write_text(json.dumps({"weights": model.weights.tolist()}))
            partial.replace(cache)
        except OSError:
            pass  # a read-only home only costs the next process the training time
    if train_file == TRAIN_FILE:
        _trained = model
    return model
