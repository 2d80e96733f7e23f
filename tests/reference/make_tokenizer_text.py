#!/usr/bin/env python3
"""Writes the mixed text on which Tessera's tokenizer is compared with tiktoken
(tests/data/fixtures/tokenizer/mixed_text.txt.gz, committed; rerun only to change it, then rerun
tiktoken_compare.py on a machine with tiktoken). Python stdlib only; deterministic for a given
Brown JSONL and repository checkout.
The text interleaves ~4 KB blocks of: English prose (the Brown corpus from
scripts/fetch_example_data.sh), source code (this repository's core/ files), numbers, words in
many scripts drawn from code-point ranges assigned since Unicode 1.1-6.0 (so every Unicode
version in play classifies them alike), emoji (with ZWJ, skin tones, flags, keycaps) and
whitespace runs (spaces, tabs, CR/LF, NBSP, U+3000, U+180E, ...). Valid UTF-8 only: tiktoken
takes str, so invalid bytes are tested by Tessera's own round-trip tests.
Usage: make_tokenizer_text.py BROWN_JSONL OUTPUT.gz [MIN_BYTES]"""
import gzip
import json
import pathlib
import random
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]

# (first, last) code points; all assigned letters/marks/digits in long-standing blocks.
SCRIPTS = {
    "latin": [(0x61, 0x7A), (0xC0, 0xD6), (0xD8, 0xF6), (0xF8, 0xFF), (0x100, 0x17F)],
    "greek": [(0x391, 0x3A1), (0x3A3, 0x3A9), (0x3B1, 0x3C9), (0x3AC, 0x3AF)],
    "cyrillic": [(0x410, 0x44F), (0x401, 0x40C)],
    "armenian": [(0x531, 0x556), (0x561, 0x586)],
    "hebrew": [(0x5D0, 0x5EA), (0x5B0, 0x5B9)],
    "arabic": [(0x621, 0x63A), (0x641, 0x64A), (0x64B, 0x652)],
    "devanagari": [(0x905, 0x939), (0x93E, 0x94C), (0x901, 0x903)],
    "bengali": [(0x995, 0x9A8), (0x9BE, 0x9C4)],
    "tamil": [(0xB95, 0xB95), (0xB99, 0xB9A), (0xBA3, 0xBA4), (0xBA8, 0xBAA), (0xBAE, 0xBB9), (0xBBE, 0xBC2)],
    "thai": [(0xE01, 0xE30), (0xE31, 0xE3A), (0xE40, 0xE4E)],
    "georgian": [(0x10D0, 0x10FA)],
    "ethiopic": [(0x1200, 0x1248)],
    "hangul": [(0xAC00, 0xD7A3)],
    "hiragana": [(0x3041, 0x3093)],
    "katakana": [(0x30A1, 0x30F6)],
    "cjk": [(0x4E00, 0x9FA5)],
    "math": [(0x2200, 0x22FF), (0x2190, 0x21FF)],
    "digits": [(0x660, 0x669), (0x966, 0x96F), (0xFF10, 0xFF19), (0x2160, 0x2182), (0xB2, 0xB3), (0xBC, 0xBE)],
}
EMOJI = [(0x1F600, 0x1F64F), (0x1F300, 0x1F3F0), (0x1F680, 0x1F6C5), (0x2600, 0x26FF)]
SKIN_TONES = [chr(c) for c in range(0x1F3FB, 0x1F400)]
SPACES = [" ", " ", " ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2003", "\u2009", "\u180e", "\u200b",
          "\u2028", "\u0085", "\x0b", "\x0c", "\x1c"]
PUNCTUATION = list(".,;:!?'\"()[]{}<>-_/\\|@#$%^&*+=~`") + ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d",
                                                            "'S", "'LL", "...", "--", "\u2014", "\u201c", "\u201d"]


def pick(rng, ranges):
    first, last = rng.choice(ranges)
    return chr(rng.randint(first, last))


def unicode_block(rng, size):
    words = []
    while sum(len(w) for w in words) < size // 2:
        script = rng.choice(list(SCRIPTS))
        word = "".join(pick(rng, SCRIPTS[script]) for _ in range(rng.randint(1, 9)))
        words.append(word + rng.choice(["", "", "", rng.choice(PUNCTUATION)]))
    return "".join(w + rng.choice(SPACES[:4] + [" ", " ", rng.choice(SPACES)]) for w in words)


def emoji_block(rng, size):
    parts = []
    while sum(len(p) for p in parts) < size // 3:
        kind = rng.randrange(6)
        if kind == 0:
            part = pick(rng, EMOJI) + rng.choice(SKIN_TONES)
        elif kind == 1:
            part = "\u200d".join(pick(rng, EMOJI) for _ in range(rng.randint(2, 4)))
        elif kind == 2:
            part = "".join(chr(rng.randint(0x1F1E6, 0x1F1FF)) for _ in range(2))
        elif kind == 3:
            part = rng.choice("0123456789#*") + "\ufe0f\u20e3"
        else:
            part = "".join(pick(rng, EMOJI) for _ in range(rng.randint(1, 3))) + rng.choice(["", "\ufe0f"])
        parts.append(part + rng.choice([" ", "", " ", "word ", "!", "\n"]))
    return "".join(parts)


def number_block(rng, size):
    parts = []
    while sum(len(p) for p in parts) < size:
        kind = rng.randrange(8)
        if kind == 0:
            part = str(rng.randint(0, 10 ** rng.randint(1, 15)))
        elif kind == 1:
            part = f"{rng.uniform(-1e6, 1e6):.{rng.randint(0, 8)}f}"
        elif kind == 2:
            part = f"{rng.uniform(0, 1):.3e}"
        elif kind == 3:
            part = f"{rng.randint(1900, 2099)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        elif kind == 4:
            part = hex(rng.getrandbits(rng.randint(8, 64)))
        elif kind == 5:
            part = f"{rng.randint(1, 999):,}{rng.randint(0, 999999):,}"
        elif kind == 6:
            part = f"+1 ({rng.randint(200, 999)}) {rng.randint(100, 999)}-{rng.randint(1000, 9999)}"
        else:
            part = f"v{rng.randint(0, 9)}.{rng.randint(0, 99)}.{rng.randint(0, 999)}"
        parts.append(part + rng.choice([" ", " ", ", ", "\n", "; ", "x", "%"]))
    return "".join(parts)


def whitespace_block(rng, size):
    parts = []
    while sum(len(p) for p in parts) < size:
        run = "".join(rng.choice(SPACES) for _ in range(rng.randint(1, 6)))
        if rng.random() < 0.2:
            run = " " * rng.randint(2, 200)
        elif rng.random() < 0.1:
            run = "\n" * rng.randint(2, 40) + "\t" * rng.randint(0, 8)
        word = rng.choice(["the", "Hello", "x", "42", "é", "!!", "<|endoftext|>", "'s", "\u4e2d", "a b"])
        parts.append(run + word)
    return "".join(parts)


def chunks(text, size):
    return [text[i:i + size] for i in range(0, len(text), size)]


def main():
    brown_jsonl, output = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    min_bytes = int(sys.argv[3]) if len(sys.argv) > 3 else 1_100_000
    rng = random.Random(20240605)
    prose = [json.loads(line)["text"] for line in brown_jsonl.read_text(encoding="utf-8").splitlines()]
    rng.shuffle(prose)
    files = subprocess.run(["git", "ls-files", "core/*.cpp", "core/*.h"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split()
    code = "".join((REPO / f).read_text(encoding="utf-8") + "\n" for f in sorted(files))
    prose_blocks = chunks("\n\n".join(prose)[:500_000], 4096)
    code_blocks = chunks(code[:220_000], 4096)
    blocks = []
    while len("".join(blocks).encode("utf-8")) < min_bytes:
        kind = rng.randrange(10)
        if kind < 4 and prose_blocks:
            blocks.append(prose_blocks.pop(0))
        elif kind < 6 and code_blocks:
            blocks.append(code_blocks.pop(0))
        elif kind == 6:
            blocks.append(number_block(rng, 2048))
        elif kind == 7:
            blocks.append(unicode_block(rng, 4096))
        elif kind == 8:
            blocks.append(emoji_block(rng, 2048))
        else:
            blocks.append(whitespace_block(rng, 2048))
    with open(output, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as out:
        out.write("".join(blocks).encode("utf-8"))


if __name__ == "__main__":
    main()
