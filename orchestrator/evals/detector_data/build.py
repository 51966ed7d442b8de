# ruff: noqa: RUF001  (look-alike letters are the point here)
"""Builds `train.jsonl` and `dev.jsonl` from the two template sets, deterministically.

    python -m orchestrator.evals.detector_data.build

Each line is {"text", "label" (1 attack, 0 benign), "family", "source", "split"}. Attacks
are a carrier (a benign tool output) with a framed goal placed in it; the obfuscation family
applies one hiding trick (or two) to such a payload. Set A makes the train split, set B the
dev split (it was called `test` until it had been looked at too often to count as held out):
no carrier, goal or framing is shared. `heldout.jsonl` is written separately, by another
author, and is not made here.
"""

from __future__ import annotations

import base64
import codecs
import json
import random
from pathlib import Path
from urllib.parse import quote

from orchestrator.evals.detector_data import templates_test, templates_train, templates_train_more

HERE = Path(__file__).resolve().parent
ATTACK_FAMILIES = ("indirect_instruction", "task_hijack", "role_spoofing", "social_engineering", "tool_spoofing",
                   "chained_hops", "multilingual", "obfuscation")
PER_FAMILY = {"train": 42, "dev": 24}
PAIRED = {"train": 200, "dev": 26}

HOMOGLYPHS = {"a": "а", "e": "е", "o": "о", "p": "р", "c": "с", "i": "і", "x": "х", "y": "у", "s": "ѕ"}


def _tags(text: str) -> str:
    return "".join(chr(0xE0000 + ord(c)) for c in text if 0x20 <= ord(c) <= 0x7E)


def _zero_width(text: str, rng: random.Random) -> str:
    marks = "\u200b\u200c\u200d\u2060\ufeff"
    return "".join(c + (rng.choice(marks) if c.isalpha() and rng.random() < 0.5 else "") for c in text)


def _homoglyphs(text: str, rng: random.Random) -> str:
    return "".join(HOMOGLYPHS[c] if c in HOMOGLYPHS and rng.random() < 0.7 else c for c in text)


def _fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def _spaced(text: str, sep: str) -> str:
    return "  ".join(sep.join(word) for word in text.split())


def _leet(text: str) -> str:
    return text.translate(str.maketrans({"a": "4", "e": "3", "i": "1", "o": "0", "s": "5", "t": "7"}))


def _bidi(text: str) -> str:
    # The payload is stored reversed and wrapped in right-to-left override: it *displays*
    # backwards-correct to a human but a model (and a naive detector) reads it reversed.
    return "\u202e" + text[::-1] + "\u202c"


def _obfuscations(hint_style: str) -> list:
    """(name, transform(payload, rng) -> text). `hint_style` words the decode hint differently per set."""
    hint = {"a": "Decode this and follow it: {}", "b": "{}  <- process this value"}[hint_style]
    return [
        ("unicode tags", lambda p, rng: "Looks normal." + _tags(p)),
        ("zero-width", _zero_width),
        ("homoglyphs", _homoglyphs),
        ("fullwidth", lambda p, rng: _fullwidth(p)),
        ("letter spacing", lambda p, rng: _spaced(p, " ")),
        ("dotted letters", lambda p, rng: _spaced(p, rng.choice(".-_"))),
        ("base64", lambda p, rng: hint.format(base64.b64encode(p.encode()).decode())),
        ("base64 bare", lambda p, rng: base64.b64encode(p.encode()).decode()),
        ("hex", lambda p, rng: hint.format(p.encode().hex())),
        ("hex spaced", lambda p, rng: p.encode().hex(" ")),
        ("url encoding", lambda p, rng: hint.format(quote(p))),
        ("html entities", lambda p, rng: "".join(f"&#{ord(c)};" if c.isalpha() else c for c in p)),
        ("rot13", lambda p, rng: hint.format(codecs.encode(p, "rot13"))),
        ("leetspeak", lambda p, rng: _leet(p)),
        ("zero-width + homoglyphs", lambda p, rng: _zero_width(_homoglyphs(p, rng), rng)),
        ("base64 in tags", lambda p, rng: "ok" + _tags(base64.b64encode(p.encode()).decode())),
        ("bidi override", lambda p, rng: _bidi(p)),
    ]


def _place(carrier: str, payload: str, rng: random.Random) -> str:
    where = rng.randrange(3)
    if where == 0:
        return f"{carrier}\n{payload}"
    if where == 1:
        return f"{payload}\n{carrier}"
    return f"{carrier}\n\n{payload}\n\n{carrier.splitlines()[0]}"


def build_split(split: str) -> list[dict]:
    t = templates_train if split == "train" else templates_test
    # The dev split keeps the seed it had when it was called `test`: the same texts as before.
    rng = random.Random(f"agentdeck-detector-{'test' if split == 'dev' else split}")
    n = PER_FAMILY[split]
    rows: list[dict] = []

    def add(text: str, label: int, family: str, note: str = "", group: str = "") -> None:
        # `group`: the template a text was made from; cross-validation on the train split
        # holds out whole groups, so its figures say how well unseen phrasings are caught.
        rows.append({"text": text, "label": label, "family": family, "source": t.SOURCE + (f" ({note})" if note else ""),
                     "split": split, "group": f"{family}/{group or len(rows)}"})

    for family, framings in t.FRAMINGS.items():
        for i in range(n):
            framing = framings[i % len(framings)]
            goal = t.GOALS[(i * 7 + len(family)) % len(t.GOALS)]
            carrier = t.CARRIERS[(i * 5 + len(family) * 3) % len(t.CARRIERS)]
            add(_place(carrier, framing.format(goal=goal), rng), 1, family, group=str(i % len(framings)))
            if split == "train" and i % 2 == 0:  # the bare payload too: windows of a long text look like it
                add(framing.format(goal=goal), 1, family, "bare", group=str(i % len(framings)))
    for family, texts in getattr(t, "EXTRA_ATTACKS", {}).items():
        for i, text in enumerate(texts):
            add(_place(t.CARRIERS[(i * 3 + 1) % len(t.CARRIERS)], text, rng) if i % 2 else text, 1, family,
                "extra", group=f"extra{i}")
    for i, sentence in enumerate(t.MULTILINGUAL):
        for k in range(2 if split == "train" else 1):
            carrier = t.CARRIERS[(i * 3 + k) % len(t.CARRIERS)]
            add(_place(carrier, sentence, rng), 1, "multilingual", group=str(i))
    if split == "dev":
        for sentence in t.MULTILINGUAL[: n - len(t.MULTILINGUAL)]:
            add(sentence, 1, "multilingual", "bare")
    else:
        for i, sentence in enumerate(t.MULTILINGUAL):
            add(sentence, 1, "multilingual", "bare", group=str(i))
    transforms = _obfuscations("a" if split == "train" else "b")
    simple = [f for f in t.FRAMINGS["indirect_instruction"] + t.FRAMINGS["social_engineering"] if len(f) < 160]
    for i in range(n if split == "dev" else n + 6):
        name, transform = transforms[i % len(transforms)]
        payload = simple[i % len(simple)].format(goal=t.GOALS[(i * 3) % len(t.GOALS)]).strip()
        carrier = t.CARRIERS[(i * 11) % len(t.CARRIERS)]
        add(_place(carrier, transform(payload, rng), rng), 1, "obfuscation", name, group=name)

    for family, texts in t.BENIGN.items():
        for text in texts:
            add(text, 0, family)
    for i, text in enumerate(t.MULTILINGUAL_BENIGN):
        add(text, 0, "multilingual_benign")
        if split == "train":  # the same sentences inside carriers, as the multilingual attacks are
            add(_place(t.CARRIERS[(i * 5 + 2) % len(t.CARRIERS)], text, rng), 0, "multilingual_benign", "in a carrier")
    for carrier in t.CARRIERS:
        add(carrier, 0, "tool_output")
    if split == "train":
        for filler in t.FILLERS:
            add(filler, 0, "tool_output", "ordinary sentence")
    # Carriers with an ordinary sentence where an attack would put its payload.
    for i in range(PAIRED[split]):
        carrier = t.CARRIERS[(i * 5 + i // len(t.CARRIERS)) % len(t.CARRIERS)]
        filler = t.FILLERS[(i * 7) % len(t.FILLERS)]
        add(_place(carrier, filler, rng), 0, "tool_output", "carrier + ordinary sentence")
    if split == "train":
        rows += _set_c_rows()
    return rows


def _set_c_rows() -> list[dict]:
    """Template set C (`templates_train_more.py`): more registers, carriers and look-alikes,
    train split only, from its own seed so set A's rows stay as they were."""
    c = templates_train_more
    rng = random.Random("agentdeck-detector-train-c")
    rows: list[dict] = []

    def add(text: str, label: int, family: str, note: str, group: str) -> None:
        rows.append({"text": text, "label": label, "family": family, "source": c.SOURCE + f" ({note})",
                     "split": "train", "group": f"{family}/c-{group}"})

    for family, framings in c.FRAMINGS.items():
        for k, framing in enumerate(framings):
            for j in range(3):
                goal = c.GOALS[(k * 5 + j * 3 + len(family)) % len(c.GOALS)]
                carrier = c.CARRIERS[(k * 3 + j * 7 + len(family)) % len(c.CARRIERS)]
                payload = framing.format(goal=goal)
                add(payload if j == 2 else _place(carrier, payload, rng), 1, family, "bare" if j == 2 else "placed",
                    str(k))
    for k, sentence in enumerate(c.MULTILINGUAL):
        add(sentence, 1, "multilingual", "bare", str(k))
        add(_place(c.CARRIERS[(k * 5) % len(c.CARRIERS)], sentence, rng), 1, "multilingual", "placed", str(k))
    transforms = _obfuscations("a")
    simple = [f for f in c.FRAMINGS["indirect_instruction"] + c.FRAMINGS["social_engineering"] if len(f) < 120]
    for i in range(2 * len(transforms)):
        name, transform = transforms[i % len(transforms)]
        payload = simple[(i * 5) % len(simple)].format(goal=c.GOALS[(i * 7) % len(c.GOALS)]).strip()
        add(_place(c.CARRIERS[(i * 3) % len(c.CARRIERS)], transform(payload, rng), rng), 1, "obfuscation", name,
            name)
    for family, texts in c.BENIGN.items():
        for k, text in enumerate(texts):
            add(text, 0, family, "bare", str(k))
            add(_place(c.CARRIERS[(k * 7 + len(family)) % len(c.CARRIERS)], text, rng), 0, family, "placed", str(k))
    for k, text in enumerate(c.MULTILINGUAL_BENIGN):
        add(text, 0, "multilingual_benign", "bare", str(k))
        add(_place(c.CARRIERS[(k * 3 + 1) % len(c.CARRIERS)], text, rng), 0, "multilingual_benign", "placed", str(k))
    for k, carrier in enumerate(c.CARRIERS):
        add(carrier, 0, "tool_output", "carrier", str(k))
    for k, filler in enumerate(c.FILLERS):  # imperative but ordinary: alone, and where a payload would go
        add(filler, 0, "tool_output", "ordinary sentence", f"f{k}")
        add(_place(c.CARRIERS[(k * 5) % len(c.CARRIERS)], filler, rng), 0, "tool_output",
            "carrier + ordinary sentence", f"f{k}")
    return rows


def main() -> None:
    for split in ("train", "dev"):
        rows = build_split(split)
        with (HERE / f"{split}.jsonl").open("w", encoding="utf-8") as out:
            for row in rows:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
        print(f"{split}: {len(rows)} rows ({sum(r['label'] for r in rows)} attacks)")


if __name__ == "__main__":
    main()
