#!/usr/bin/env python3
"""Cross-checks Tessera's tokenizer fixtures with Hugging Face `tokenizers`, and keeps the
tokenizer.json layout that library writes. Runs where `tokenizers` is installed, offline, after
tiktoken_compare.py (whose id files it reads).
From the GPT-2 files it builds two byte-level BPE tokenizers the way Hugging Face does: GPT-2's
(pre_tokenizer ByteLevel) and a Llama 3 style one (Sequence of Split(Llama 3 regex, isolated)
and ByteLevel without regex); encodes the mixed text with each (no added tokens, so
"<|endoftext|>" in the text is plain text, as in tiktoken's encode_ordinary); counts mismatches
against tiktoken's ids; then adds <|endoftext|> as a special token and saves each tokenizer.json
with its vocabulary emptied and all merges but the first dropped (a "skeleton": the test puts
the GPT-2 vocabulary and merges back, in the merges format the first one shows).
Usage: hf_tokenizers_compare.py GPT2_DIR MIXED_TEXT OUT_DIR
Writes OUT_DIR/hf_gpt2_skeleton.json, OUT_DIR/hf_llama3_style_skeleton.json, OUT_DIR/hf_summary.json."""
import array
import gzip
import json
import pathlib
import sys

from tiktoken_compare import LLAMA3_PATTERN, read_text


def read_ids(path):
    ids = array.array("H")
    ids.frombytes(gzip.decompress(pathlib.Path(path).read_bytes()))
    return list(ids)


def first_mismatch(ours, theirs):
    for i, (a, b) in enumerate(zip(ours, theirs)):
        if a != b:
            return i
    return None if len(ours) == len(theirs) else min(len(ours), len(theirs))


def main():
    import tokenizers
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    gpt2_dir, mixed_path, out_dir = pathlib.Path(sys.argv[1]), sys.argv[2], pathlib.Path(sys.argv[3])
    text = read_text(mixed_path)
    variants = {
        "gpt2": pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        "llama3_style": pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]),
    }
    tiktoken_ids = {"gpt2": "mixed_text.gpt2_ids.u16.gz", "llama3_style": "mixed_text.llama3_ids.u16.gz"}
    summary = {"tokenizers_version": tokenizers.__version__}
    for name, pre_tokenizer in variants.items():
        tokenizer = Tokenizer(models.BPE.from_file(str(gpt2_dir / "encoder.json"), str(gpt2_dir / "vocab.bpe")))
        tokenizer.pre_tokenizer = pre_tokenizer
        tokenizer.decoder = decoders.ByteLevel()
        ids = tokenizer.encode(text, add_special_tokens=False).ids
        expected = read_ids(out_dir / tiktoken_ids[name])
        mismatch = first_mismatch(ids, expected)
        summary[name] = {"ids": len(ids), "tiktoken_ids": len(expected),
                         "mismatches": sum(a != b for a, b in zip(ids, expected)) + abs(len(ids) - len(expected)),
                         "first_mismatch": mismatch,
                         "context": None if mismatch is None else {"hf": ids[max(0, mismatch - 3):mismatch + 4],
                                                                   "tiktoken": expected[max(0, mismatch - 3):mismatch + 4]}}
        tokenizer.add_special_tokens(["<|endoftext|>"])
        saved = json.loads(tokenizer.to_str())
        saved["model"]["vocab"] = {}
        saved["model"]["merges"] = saved["model"]["merges"][:1]
        (out_dir / f"hf_{name}_skeleton.json").write_text(json.dumps(saved, ensure_ascii=False, indent=1) + "\n",
                                                           encoding="utf-8")
    (out_dir / "hf_summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
