"""The `minilm` prompt-injection scorer: logistic regression over all-MiniLM-L6-v2 embeddings,
averaged with the n-gram classifier trained on the same rows (`FusedScorer`).

Every view `normalise` recovers (the text as written, decoded base64/hex/percent, undone
homoglyphs and letter-spacing, text hidden in tag characters) is cut into overlapping token
windows (`minilm.py`); each window is embedded in numpy and scored, and the highest score
counts, so an injection after pages of padding is not diluted.

The regression is trained on every shipped development split (`train`, `dev`, `dev-b`,
`dev-c`, `dev-x`, `dev-y`, `dev-z`: seven sets by six authors). Its weights ship with the code
(`SHIPPED_WEIGHTS`, written by `manage.py eval detector-weights`) under the hash of the data,
the code and the model, so a fresh machine scores at once; where that hash no longer matches
(the data or the code changed and the file was not rewritten), it is trained at first use —
minutes of forward passes on a fresh machine, seconds once the window embeddings are on disk.
Embeddings are cached by the hash of the window's token ids (and of the model files) in
`$AGENTDECK_CACHE_DIR`; weights trained here are cached there by the same hash as the file's.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from orchestrator.engine import minilm
from orchestrator.engine.injection_classifier import InjectionClassifier
from orchestrator.engine.normalise import normalise

DATA_DIR = Path(__file__).resolve().parents[1] / "evals" / "detector_data"
TRAIN_FILES = tuple(DATA_DIR / name for name in ("train.jsonl", "dev.jsonl", "dev_b.jsonl", "dev_c.jsonl", "dev_x.jsonl",
                                                  "dev_y.jsonl", "dev_z.jsonl"))

# Chosen on cross-author estimates only (`detector_cross_author.choose`; README,
# 'Prompt-injection detectors'): train on five authors' sets, score the sixth's; the pair that
# keeps overall false positives at or under 5% for every author left out and finds the most
# attacks in the worst one. A text is flagged when the fused score reaches THRESHOLD, or RULES_AGREE where
# the normalised rules flag it too.
THRESHOLD = 0.75
RULES_AGREE = 0.6

# The weights trained on TRAIN_FILES, shipped so that no machine pays minutes of forward
# passes at first use: {"key": weights_key(TRAIN_FILES), "embeddings", "weights", "idf", "bias"}.
SHIPPED_WEIGHTS = Path(__file__).resolve().parent / "injection_minilm_weights.json.gz"


def _cache_root() -> Path:
    return Path(os.environ.get("AGENTDECK_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "agentdeck"))


def _model_digest() -> str:
    root = minilm.model_dir()
    digest = hashlib.sha256((root / "tokenizer.json").read_bytes())
    digest.update(str((root / "model.safetensors").stat().st_size).encode())
    digest.update(minilm.ENCODER_VERSION.encode())
    return digest.hexdigest()[:16]


class EmbeddingCache:
    """Window embeddings on disk, keyed by the hash of the window's token ids."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or _cache_root() / f"minilm-windows-{_model_digest()}.npz"
        self._vectors: dict[str, np.ndarray] = {}
        self._texts: dict[str, np.ndarray] = {}
        self._dirty = False
        if self.path.exists():
            try:
                with np.load(self.path) as data:
                    keys, matrix = data["keys"], data["vectors"]
                self._vectors = {str(k): matrix[i] for i, k in enumerate(keys)}
            except (OSError, ValueError, KeyError):
                self._vectors = {}

    @staticmethod
    def key(window: tuple[int, ...]) -> str:
        return hashlib.sha256(np.asarray(window, dtype=np.int32).tobytes()).hexdigest()[:24]

    def embed(self, windows: list[tuple[int, ...]]) -> np.ndarray:
        keys = [self.key(w) for w in windows]
        missing = sorted({k: w for k, w in zip(keys, windows, strict=True) if k not in self._vectors}.items())
        if missing:
            vectors = minilm.encoder().embed_ids([w for _, w in missing])
            self._vectors.update({k: vectors[i] for i, (k, _) in enumerate(missing)})
            self._dirty = True
        return np.stack([self._vectors[k] for k in keys]) if keys else np.zeros((0, 384), dtype=np.float32)

    def for_text(self, text: str) -> np.ndarray:
        """The embeddings of every window of every view of a text (kept in memory by text)."""
        if text not in self._texts:
            self._texts[text] = self.embed(text_windows(text))
        return self._texts[text]

    def save(self) -> None:
        if not self._dirty:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            partial = self.path.with_name(f"{self.path.stem}.{os.getpid()}.tmp.npz")
            keys = sorted(self._vectors)
            np.savez(partial, keys=np.asarray(keys), vectors=np.stack([self._vectors[k] for k in keys]))
            partial.replace(self.path)
            self._dirty = False
        except OSError:
            pass  # a read-only home only costs the next process the forward passes


SENTENCE = re.compile(r"(?<=[.!?。\uff01\uff1f])\s+|(?<=[。\uff01\uff1f])")
MAX_SEGMENTS = 200
# What one text may cost, across all its views: a megabyte of small base64 runs made 13,846
# windows (183 K tokens, minutes of forward passes; found by a review). Plain text stays under
# it (at most ~264 windows, ~11 K tokens, about 2 s).
MAX_TEXT_TOKENS = 16_000


def segments(view: str) -> list[str]:
    """The lines of a view, long lines cut into sentences: an injected sentence is embedded
    on its own too, not only averaged into the email or page around it."""
    out: list[str] = []
    for line in view.splitlines():
        parts = SENTENCE.split(line) if len(line) > 200 else [line]
        out += [part.strip() for part in parts if len(part.strip()) >= 12]
    return out[:MAX_SEGMENTS]


def text_windows(text: str) -> list[tuple[int, ...]]:
    """The token windows of every normalised view of a text, and of each of its lines and
    sentences when it has more than one (duplicates dropped, order kept)."""
    normalised = normalise(text)
    encoder = minilm.encoder()
    views = [*normalised.views, normalised.hidden] if normalised.hidden.strip() else list(normalised.views)
    seen: dict[tuple[int, ...], None] = {}
    budget = MAX_TEXT_TOKENS

    def take(windows: list[tuple[int, ...]]) -> bool:
        nonlocal budget
        for window in windows:
            if window not in seen:
                budget -= len(window)
                if budget < 0:
                    return False
                seen[window] = None
        return True

    for view in views:
        if not take(encoder.windows(view[:60000])):
            break
        parts = segments(view[:60000])
        if len(parts) > 1 and not all(take(encoder.windows(part)) for part in parts):
            break
    return list(seen)


class MiniLMClassifier:
    """Logistic regression on window embeddings; `score(text)` is the highest window probability."""

    def __init__(self, weights) -> None:
        self.weights = np.asarray(weights, dtype=np.float64)

    def probabilities(self, matrix: np.ndarray) -> np.ndarray:
        z = matrix.astype(np.float64) @ self.weights[:-1] + self.weights[-1]
        return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))

    def score(self, text: str, cache: EmbeddingCache | None = None) -> float:
        matrix = cache.for_text(text) if cache is not None else minilm.encoder().embed_ids(text_windows(text))
        if not len(matrix):  # nothing to read (an empty or invisible output): it raised
            return 0.0
        return float(self.probabilities(matrix).max())

    @classmethod
    def train(cls, rows: list[dict], cache: EmbeddingCache | None = None, *, iterations: int = 2000,
              rate: float = 4.0, l2: float = 1e-5) -> MiniLMClassifier:
        """Full-batch gradient descent (the same rows always give the same weights). Every
        window of a benign text is a benign example; an attack of one window is an attack
        example; of a longer attack only the window a first fit scores highest is (the rest
        may be the ordinary content around the injection). Benign families are weighted so a
        small family of look-alikes counts as much as an average attack family."""
        cache = cache or EmbeddingCache()
        per_row = [cache.for_text(row["text"]) for row in rows]
        cache.save()
        attack_counts: dict[str, int] = {}
        benign_counts: dict[str, int] = {}
        for row in rows:
            counts = attack_counts if row["label"] else benign_counts
            counts[row["family"]] = counts.get(row["family"], 0) + 1
        floor = sum(attack_counts.values()) / max(1, len(attack_counts))

        def fit(chosen: list[np.ndarray]) -> np.ndarray:
            xs, ys, ws = [], [], []
            for row, matrix in zip(rows, chosen, strict=True):
                if row["label"]:
                    xs.append(matrix)
                    ys += [1.0] * len(matrix)
                    ws += [1.0 / len(matrix)] * len(matrix)
                else:
                    family_weight = max(1.0, floor / benign_counts[row["family"]])
                    xs.append(matrix)
                    ys += [0.0] * len(matrix)
                    ws += [family_weight * 2.0 / (1 + len(matrix))] * len(matrix)
            x = np.hstack([np.vstack(xs).astype(np.float64), np.ones((sum(len(m) for m in xs), 1))])
            y, w = np.asarray(ys), np.asarray(ws)
            w = w / w.sum()
            theta = np.zeros(x.shape[1])
            penalty = np.r_[np.ones(x.shape[1] - 1), 0.0] * l2
            velocity = np.zeros_like(theta)
            for _ in range(iterations):
                p = 1.0 / (1.0 + np.exp(-np.clip(x @ theta, -30, 30)))
                gradient = x.T @ ((p - y) * w) + penalty * theta
                velocity = 0.9 * velocity - rate * gradient
                theta += velocity
            return theta

        first = [m if not row["label"] or len(m) == 1 else m[:0] for row, m in zip(rows, per_row, strict=True)]
        first = [m if len(m) else per_row[i][:1] for i, m in enumerate(first)]
        model = cls(fit(first))
        chosen = [m if not row["label"] or len(m) == 1 else m[[int(model.probabilities(m).argmax())]]
                  for row, m in zip(rows, per_row, strict=True)]
        return cls(fit(chosen))


def load_rows(paths=TRAIN_FILES) -> list[dict]:
    rows: list[dict] = []
    for path in paths:
        if path.exists():
            with path.open(encoding="utf-8") as lines:
                rows += [json.loads(line) for line in lines if line.strip()]
    return rows


class FusedScorer:
    """What the `minilm` detector scores: the mean of the MiniLM regression and the n-gram
    classifier (`injection_classifier.py`), both trained on the same rows. Across authors the
    mean beats either alone (README, 'Prompt-injection detectors'): the embeddings know
    meaning, the character n-grams know scripts and spellings the English model does not."""

    def __init__(self, embeddings: MiniLMClassifier, ngrams: InjectionClassifier) -> None:
        self.embeddings, self.ngrams = embeddings, ngrams

    def score(self, text: str, cache: EmbeddingCache | None = None) -> float:
        return (self.embeddings.score(text, cache) + self.ngrams.score(text)) / 2

    @classmethod
    def train(cls, rows: list[dict], cache: EmbeddingCache | None = None) -> FusedScorer:
        return cls(MiniLMClassifier.train(rows, cache), InjectionClassifier.train(rows))


_trained: FusedScorer | None = None


def weights_key(paths=TRAIN_FILES) -> str:
    """The hash of what the weights are a function of: the model, the training rows, and the
    code that reads, windows, normalises and fits them (line endings as LF, so a checkout
    that writes CRLF gets the same key)."""
    digest = hashlib.sha256(_model_digest().encode())
    for part in (*[p for p in paths if p.exists()], Path(__file__), Path(minilm.__file__),
                 Path(normalise.__code__.co_filename), Path(InjectionClassifier.train.__code__.co_filename)):
        digest.update(part.read_bytes().replace(b"\r\n", b"\n"))
    return digest.hexdigest()[:16]


def _weights_json(model: FusedScorer) -> dict:
    return {"embeddings": model.embeddings.weights.tolist(), "weights": model.ngrams.weights,
            "idf": model.ngrams.idf, "bias": model.ngrams.bias}


def _from_json(data: dict) -> FusedScorer:
    return FusedScorer(MiniLMClassifier(data["embeddings"]), InjectionClassifier(data["weights"], data["idf"], data["bias"]))


def shipped_weights_key(path: Path = SHIPPED_WEIGHTS) -> str | None:
    """The key the shipped file was written under (None: no readable file)."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            return json.load(handle).get("key")
    except (OSError, ValueError, EOFError, AttributeError):
        return None


def _shipped(key: str, path: Path = SHIPPED_WEIGHTS) -> FusedScorer | None:
    """The shipped weights when they were trained on what is here now, else None."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            data = json.load(handle)
        return _from_json(data) if data.get("key") == key else None
    except (OSError, ValueError, EOFError, KeyError, TypeError, AttributeError):
        return None


def write_shipped_weights(path: Path = SHIPPED_WEIGHTS, paths=TRAIN_FILES) -> str:
    """Train on `paths` (window embeddings from the disk cache where present) and write the
    weights with their key; returns the key. `manage.py eval detector-weights`."""
    key = weights_key(paths)
    cache = EmbeddingCache()
    model = FusedScorer.train(load_rows(paths), cache)
    cache.save()
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # mtime=0: the same weights give the same bytes, so an unchanged retrain leaves git clean.
    with open(partial, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as out:
        out.write(json.dumps({"key": key, **_weights_json(model)}, separators=(",", ":")).encode())
    partial.replace(path)
    return key


def shipped_minilm_scorer() -> FusedScorer:
    """The shipped weights when their key matches the data, code and model here; otherwise
    trained once on the shipped development splits (a few minutes of forward passes on a
    fresh machine, a minute with the window embeddings cached), then read from a cache named
    by that key."""
    global _trained
    if _trained is not None:
        return _trained
    key = weights_key(TRAIN_FILES)
    model = _shipped(key)
    if model is None:
        cache_file = _cache_root() / f"injection-minilm-{key}.json"
        with _trained_by_one_process(cache_file):
            model = _load_or_train(cache_file)
    _trained = model
    return model


@contextlib.contextmanager
def _trained_by_one_process(cache_file: Path) -> Iterator[None]:
    """An exclusive lock next to the weights' cache: processes starting together on a fresh
    machine (the web process and the workers, or parallel test workers) train once, the others
    wait and read what it wrote. Without a writable cache directory, each trains on its own."""
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        handle = open(cache_file.with_suffix(".lock"), "a+b")
    except OSError:
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _load_or_train(cache_file: Path) -> FusedScorer:
    model = None
    if cache_file.exists():
        try:
            model = _from_json(json.loads(cache_file.read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            model = None
    if model is None:
        model = FusedScorer.train(load_rows())
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            partial = cache_file.with_suffix(f".{os.getpid()}.tmp")
            partial.write_text(json.dumps(_weights_json(model)))
            partial.replace(cache_file)
        except OSError:
            pass  # a read-only home only costs the next process the training time
    return model
