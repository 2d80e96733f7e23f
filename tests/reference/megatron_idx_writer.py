#!/usr/bin/env python3
"""An independent writer of Megatron-LM MMapIndexedDataset pairs (PREFIX.bin + PREFIX.idx).

Python standard library only (struct), written from the layout of Megatron-LM's
megatron/core/datasets/indexed_dataset.py (_IndexWriter, IndexedDatasetBuilder), not from
Tessera's C++: the tests use it to check that Tessera reads such a pair exactly and that
Tessera's writer produces the same bytes from the same tokens.

Layout of PREFIX.idx (little-endian): magic b"MMIDIDX\\x00\\x00", <Q version 1, <B dtype code,
<Q sequence count, <Q document-index length, then int32 sequence lengths, int64 sequence
pointers (byte offsets into .bin), int64 document index (starts at 0, one entry per document
end). PREFIX.bin holds the tokens back to back in the dtype.

Input JSON: {"dtype": "uint16", "documents": [[[1, 2, 3], [4]], [], [[5, 6]]]} where each
document is a list of sequences (Megatron's add_item per sequence, then end_document).

Usage: megatron_idx_writer.py --input TOKENS.json --output PREFIX
"""
import argparse
import json
import struct

# Megatron's DType enum: code and struct format per numpy dtype name.
DTYPES = {
    "uint8": (1, "B"),
    "int8": (2, "b"),
    "int16": (3, "h"),
    "int32": (4, "i"),
    "int64": (5, "q"),
    "float64": (6, "d"),
    "float32": (7, "f"),
    "uint16": (8, "H"),
}


def write_pair(prefix, dtype_name, documents):
    code, fmt = DTYPES[dtype_name]
    itemsize = struct.calcsize("<" + fmt)
    sequence_lengths = []
    document_index = [0]
    with open(prefix + ".bin", "wb") as bin_file:
        for document in documents:
            for sequence in document:
                bin_file.write(struct.pack("<%d%s" % (len(sequence), fmt), *sequence))
                sequence_lengths.append(len(sequence))
            document_index.append(len(sequence_lengths))
    pointers = []
    offset = 0
    for length in sequence_lengths:
        pointers.append(offset)
        offset += length * itemsize
    with open(prefix + ".idx", "wb") as idx_file:
        idx_file.write(b"MMIDIDX\x00\x00")
        idx_file.write(struct.pack("<Q", 1))
        idx_file.write(struct.pack("<B", code))
        idx_file.write(struct.pack("<Q", len(sequence_lengths)))
        idx_file.write(struct.pack("<Q", len(document_index)))
        idx_file.write(struct.pack("<%di" % len(sequence_lengths), *sequence_lengths))
        idx_file.write(struct.pack("<%dq" % len(pointers), *pointers))
        idx_file.write(struct.pack("<%dq" % len(document_index), *document_index))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, help="JSON file with dtype and documents")
    parser.add_argument("--output", required=True, help="output prefix (writes PREFIX.bin and PREFIX.idx)")
    args = parser.parse_args()
    with open(args.input) as stream:
        spec = json.load(stream)
    write_pair(args.output, spec["dtype"], spec["documents"])


if __name__ == "__main__":
    main()
