#!/usr/bin/env python3
"""Writes tiktoken's token ids for Tessera's tokenizer fixtures and times tiktoken's encoder.
Runs where tiktoken is installed, offline: tiktoken's own "gpt2" encoding is loaded from the
committed GPT-2 files by seeding tiktoken's download cache with them (tiktoken checks their
sha256 against the hashes it pins, so these are exactly the files it would download).
Outputs, into OUT_DIR (copy them to tests/data/fixtures/tokenizer/):
  mixed_text.gpt2_ids.u16.gz     encode_ordinary(text) with the gpt2 encoding
  mixed_text.llama3_ids.u16.gz   the same ranks with Llama 3's pre-tokenization pattern
  cases.json                     short edge-case strings and their ids (specials as text and
                                 recognized), tiktoken's version and the timings
Ids are little-endian uint16 (GPT-2's vocabulary has 50257 ids), gzip'ed with mtime 0.
Usage: tiktoken_compare.py GPT2_DIR MIXED_TEXT(.gz) OUT_DIR [TIMING_TEXT ...]
Each TIMING_TEXT (plain UTF-8) is timed too: single-thread encode_ordinary MB/s (best of 5), and
encode_ordinary_batch over T equal slices with num_threads=T (aggregate MB/s, best of 3)."""
import array
import gzip
import hashlib
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time

GPT2_URL = "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/"
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
CASES = [
    "", " ", "  ", "\n", "\n\n\n", " \n ", "\t\t x", "Hello world", "Hello, world!", "  leading", "trailing  ",
    "I'm you're we've she'll they'd it's don't", "I'M YOU'RE IT'S", "\u017fo'\u017f 'K' '\u212a",
    "a\u00a0b\u3000c\u2003d", "x\u180ey \u180e z", "\u180e! a\u180e?\u180e\u180e.", "x\u200by", "\u0085next\u2028line\u2029para",
    "<|endoftext|>", "a<|endoftext|>b", "<|endoftext|><|endoftext|>", " <|endoftext|> x",
    "12345 1234567890 3.14159 -42 1e-9 0xDEADBEEF", "\u0661\u0662\u0663 \u0967\u0968 \uff11\uff12 \u2167 \u00bd",
    "\U0001F468\u200d\U0001F469\u200d\U0001F467 \U0001F44D\U0001F3FD \U0001F1FA\U0001F1F8 1\ufe0f\u20e3",
    "\u4e2d\u6587\u5b57 \ud55c\uad6d\uc5b4 \u0420\u0443\u0441\u0441\u043a\u0438\u0439 \u0627\u0644\u0639\u0631\u0628\u064a\u0629",
    "\u0928\u092e\u0938\u094d\u0924\u0947 \u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35 \u10e5\u10d0\u10e0\u10d7\u10e3\u10da\u10d8",
    "e\u0301 \u00e9 A\u030a", "int main() {\n    return 0;\n}\n", "    \n    \n\tdef f(x):\n\t\treturn x**2\n",
    " " * 100 + "x", "\n" * 30, "!!!???...,,,", "a" * 300, "\U00010348\U0001D11E\U0001F600" * 3,
]


def load_gpt2(gpt2_dir):
    """tiktoken's own gpt2 encoding, its download cache seeded with the local files."""
    cache = tempfile.mkdtemp(prefix="tiktoken-cache-")
    for name in ("vocab.bpe", "encoder.json"):
        key = hashlib.sha1((GPT2_URL + name).encode()).hexdigest()
        shutil.copy(pathlib.Path(gpt2_dir) / name, os.path.join(cache, key))
    os.environ["TIKTOKEN_CACHE_DIR"] = cache
    import tiktoken
    return tiktoken, tiktoken.get_encoding("gpt2")


def write_ids(path, ids):
    data = array.array("H", ids)
    assert sys.byteorder == "little" and max(ids, default=0) < 65536
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as out:
        out.write(data.tobytes())


def read_text(path):
    data = pathlib.Path(path).read_bytes()
    if path.endswith(".gz"):
        data = gzip.decompress(data)
    return data.decode("utf-8")


def megabytes_per_second(encoding, text, repeats=5):
    size = len(text.encode("utf-8"))
    best = min(timed(encoding, text) for _ in range(repeats))
    return size / 1e6 / best


def batch_megabytes_per_second(encoding, text, threads, repeats=3):
    size = len(text)
    slices = [text[size * t // threads:size * (t + 1) // threads] for t in range(threads)]
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        encoding.encode_ordinary_batch(slices, num_threads=threads)
        best = min(best, time.perf_counter() - start)
    return len(text.encode("utf-8")) / 1e6 / best


def timed(encoding, text):
    start = time.perf_counter()
    encoding.encode_ordinary(text)
    return time.perf_counter() - start


def main():
    gpt2_dir, mixed_path, out_dir = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
    out_dir.mkdir(parents=True, exist_ok=True)
    tiktoken, gpt2 = load_gpt2(gpt2_dir)
    llama3 = tiktoken.Encoding(name="gpt2-ranks-llama3-pattern", pat_str=LLAMA3_PATTERN,
                               mergeable_ranks=gpt2._mergeable_ranks, special_tokens=gpt2._special_tokens)
    text = read_text(mixed_path)
    write_ids(out_dir / "mixed_text.gpt2_ids.u16.gz", gpt2.encode_ordinary(text))
    write_ids(out_dir / "mixed_text.llama3_ids.u16.gz", llama3.encode_ordinary(text))
    cases = [{"text": case,
              "gpt2": gpt2.encode_ordinary(case),
              "gpt2_specials": gpt2.encode(case, allowed_special="all"),
              "llama3": llama3.encode_ordinary(case)} for case in CASES]
    timings = {"mixed_text": megabytes_per_second(gpt2, text)}
    threaded = {}
    for path in sys.argv[4:]:
        timing_text = read_text(path)
        timings[pathlib.Path(path).name] = megabytes_per_second(gpt2, timing_text)
        threaded[pathlib.Path(path).name] = {t: batch_megabytes_per_second(gpt2, timing_text, t) for t in (2, 4, 8, 16)}
    summary = {"tiktoken_version": tiktoken.__version__, "python": sys.version.split()[0],
               "mixed_text_bytes": len(text.encode("utf-8")), "gpt2_pattern": gpt2._pat_str,
               "llama3_pattern": LLAMA3_PATTERN, "single_thread_encode_mb_per_s": timings,
               "batch_encode_mb_per_s_by_threads": threaded, "cpu_count": os.cpu_count(), "cases": cases}
    (out_dir / "cases.json").write_text(json.dumps(summary, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in summary.items() if k != "cases"}, indent=1))


if __name__ == "__main__":
    main()
