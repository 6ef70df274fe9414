"""Offline corpora that every machine with Python has, split deterministically by domain.

- ``code``: the running interpreter's standard-library ``.py`` sources (``sysconfig`` stdlib path,
  without ``site-packages``); a file is held out when its path hashes into the held-out bucket.
- ``chat``: prose from the bundled documentation (``pydoc_data.topics``), held out by topic name.
- ``math``: generated arithmetic worksheets; the held-out split comes from a different seed.

Texts are bytes (the models are byte-level, V = 256). Nothing is downloaded. Different Python
versions ship slightly different sources, so the corpus size is recorded in every model card.
"""

from __future__ import annotations

import hashlib
import importlib
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DOMAINS = ("code", "chat", "math")
HELDOUT_BUCKETS = 20  # 1 in 20 files/topics is held out (5%)
SEPARATOR = b"\n\n"


def _heldout(key: str) -> bool:
    return int(hashlib.sha1(key.encode()).hexdigest(), 16) % HELDOUT_BUCKETS == 0


def code_texts(split: str) -> list[bytes]:
    """Standard-library sources, sorted by path; ``split`` is "train" or "heldout"."""
    root = Path(sysconfig.get_paths()["stdlib"])
    out = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(("site-packages/", "dist-packages/")) or "__pycache__" in rel:
            continue
        if _heldout(rel) == (split == "heldout"):
            out.append(path.read_bytes())
    return out


def chat_texts(split: str, chunk: int = 2000) -> list[bytes]:
    """Documentation topics of ``pydoc_data`` (prose with some examples).

    The topics are few and long, so each is cut at blank lines into pieces of about ``chunk``
    bytes, and pieces are held out by the hash of (topic, piece number).
    """
    topics = importlib.import_module("pydoc_data.topics").topics
    out = []
    for key in sorted(topics):
        pieces, cur = [], ""
        for para in topics[key].split("\n\n"):
            cur = f"{cur}\n\n{para}" if cur else para
            if len(cur) >= chunk:
                pieces.append(cur)
                cur = ""
        pieces += [cur] if cur else []
        for i, text in enumerate(pieces):
            if _heldout(f"{key}#{i}") == (split == "heldout"):
                out.append(text.encode())
    return out


def math_texts(split: str, n: int = 6000) -> list[bytes]:
    """Arithmetic worksheets: variables, the four operations, chained steps, exact answers."""
    rng = np.random.default_rng(1 if split == "train" else 2)
    return [_worksheet(rng) for _ in range(n if split == "train" else max(n // 20, 50))]


def _worksheet(rng: np.random.Generator) -> bytes:
    lines = [f"# Problem {int(rng.integers(1, 1000))}"]
    names = list("abcdxyzmnpq")
    rng.shuffle(names)
    values = {}
    for name in names[: int(rng.integers(2, 5))]:
        values[name] = int(rng.integers(1, 10 ** int(rng.integers(1, 4))))
        lines.append(f"{name} = {values[name]}")
    for _ in range(int(rng.integers(2, 6))):
        a, b = rng.choice(list(values), size=2)
        op = str(rng.choice(["+", "-", "*", "//", "%"]))
        if op in ("//", "%") and values[b] == 0:
            op = "+"
        result = _apply(values[a], values[b], op)
        new = names[len(values)] if len(values) < len(names) else a
        lines.append(f"{new} = {a} {op} {b} = {values[a]} {op} {values[b]} = {result}")
        values[new] = result
    total = sum(values.values())
    lines.append(f"answer = {' + '.join(values)} = {total}")
    return ("\n".join(lines) + "\n").encode()


def _apply(x: int, y: int, op: str) -> int:
    return {"+": x + y, "-": x - y, "*": x * y, "//": x // y if y else 0, "%": x % y if y else 0}[
        op
    ]


LOADERS = {"code": code_texts, "chat": chat_texts, "math": math_texts}


@dataclass
class Corpus:
    """One domain split as a single byte array ``uint8 [T]`` (documents joined by a blank line)."""

    domain: str
    split: str
    data: np.ndarray  # uint8 [T]
    documents: int

    @classmethod
    def load(cls, domain: str, split: str) -> Corpus:
        if domain not in LOADERS:
            raise ValueError(f"unknown domain {domain!r} (known: {', '.join(DOMAINS)})")
        texts = LOADERS[domain](split)
        data = np.frombuffer(SEPARATOR.join(texts), dtype=np.uint8).copy()
        return cls(domain, split, data, len(texts))

    def batch(self, rng: np.random.Generator, batch: int, length: int) -> np.ndarray:
        """Random windows ``int64 [B, length]``."""
        starts = rng.integers(0, len(self.data) - length, size=batch)
        return np.stack([self.data[s : s + length] for s in starts]).astype(np.int64)

    def prompts(self, count: int, length: int, seed: int = 0) -> list[bytes]:
        """``count`` prompts of ``length`` bytes that start at a line start (evaluation)."""
        rng = np.random.default_rng(seed)
        newlines = np.flatnonzero(self.data[: len(self.data) - 2 * length] == ord("\n")) + 1
        picks = rng.choice(newlines, size=min(count, len(newlines)), replace=False)
        return [self.data[p : p + length].tobytes() for p in sorted(picks)]


def load_all(split: str, domains: tuple[str, ...] = DOMAINS) -> dict[str, Corpus]:
    return {d: Corpus.load(d, split) for d in domains}


def mixed_batch(
    corpora: dict[str, Corpus],
    weights: dict[str, float],
    rng: np.random.Generator,
    batch: int,
    length: int,
) -> np.ndarray:
    """A batch ``int64 [B, length]`` whose rows come from domains drawn with ``weights``."""
    names = list(corpora)
    p = np.array([weights[n] for n in names], dtype=float)
    counts = rng.multinomial(batch, p / p.sum())
    rows = [corpora[n].batch(rng, c, length) for n, c in zip(names, counts, strict=True) if c]
    return np.concatenate(rows)[rng.permutation(batch)]
