#!/usr/bin/env python3
"""Writes the numpy fixtures for tests/data/numpy_random_state_test.cpp (needs numpy).

1. numpy_shuffle_fixture.json: what numpy.random.RandomState(seed).shuffle produces, and the
   document and shuffle indices that Megatron-LM's gpt_dataset.py (_build_document_index,
   _build_shuffle_index, restated below from Megatron's source) builds with it, so Tessera's
   NumpyRandomState and GPT index builders are compared with numpy itself.
2. numpy_int32_1d.npy and numpy_int64_2d.npy: arrays written by numpy.save, to check that
   Tessera reads numpy's .npy files and writes the same bytes.

Usage: numpy_shuffle_fixture.py OUTPUT_FOLDER
"""
import json
import os
import sys

import numpy


def megatron_document_index(documents, num_epochs, random_state, separate_final_epoch):
    if not separate_final_epoch or num_epochs == 1:
        document_index = numpy.mgrid[0:num_epochs, 0 : len(documents)][1]
        document_index[:] = documents
        document_index = document_index.reshape(-1)
        document_index = document_index.astype(numpy.int32)
        random_state.shuffle(document_index)
        return document_index
    first = megatron_document_index(documents, num_epochs - 1, random_state, False)
    last = megatron_document_index(documents, 1, random_state, False)
    return numpy.concatenate((first, last))


def megatron_shuffle_index(num_samples, total_size, random_state):
    dtype = numpy.uint32
    if total_size >= (numpy.iinfo(numpy.uint32).max - 1):
        dtype = numpy.int64
    first = numpy.arange(start=0, stop=num_samples, step=1, dtype=dtype)
    random_state.shuffle(first)
    if num_samples == total_size:
        return first
    last = numpy.arange(start=num_samples, stop=total_size, step=1, dtype=dtype)
    random_state.shuffle(last)
    return numpy.concatenate((first, last))


def positional_checksum(values):
    return int(sum(i * int(v) for i, v in enumerate(values)) % (2**61 - 1))


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    shuffles = []
    for seed in [1234, 0, 7, 2**32 - 1]:
        for n in [1, 2, 3, 10, 257, 1000]:
            random_state = numpy.random.RandomState(seed)
            first = numpy.arange(n, dtype=numpy.int32)
            random_state.shuffle(first)
            second = numpy.arange(n, dtype=numpy.uint32)  # the same stream, continued
            random_state.shuffle(second)
            shuffles.append({"seed": seed, "n": n, "first": first.tolist(), "second": second.tolist()})
    large = numpy.arange(1000003, dtype=numpy.int64)
    numpy.random.RandomState(1234).shuffle(large)
    megatron = []
    for begin, end, epochs, separate, seed in [(5, 40, 1, False, 1234), (0, 97, 3, False, 1234),
                                               (10, 60, 4, True, 42)]:
        random_state = numpy.random.RandomState(seed)
        documents = numpy.arange(begin, end, dtype=numpy.int32)
        document_index = megatron_document_index(documents, epochs, random_state, separate)
        total = 3 * (end - begin)
        first_part = total - (end - begin) if separate else total
        shuffle_index = megatron_shuffle_index(first_part, total, random_state)
        megatron.append({"seed": seed, "begin": begin, "end": end, "epochs": epochs, "separate_final_epoch": separate,
                         "document_index": document_index.tolist(), "shuffle_first_part": first_part,
                         "shuffle_total": total, "shuffle_index": shuffle_index.tolist()})
    fixture = {
        "numpy_version": numpy.__version__,
        "shuffles": shuffles,
        "large": {"seed": 1234, "n": 1000003, "head": large[:16].tolist(), "checksum": positional_checksum(large)},
        "megatron": megatron,
    }
    with open(os.path.join(out, "numpy_shuffle_fixture.json"), "w") as stream:
        json.dump(fixture, stream, separators=(",", ":"))
    numpy.save(os.path.join(out, "numpy_int32_1d.npy"), numpy.array([3, -1, 2147483647, 0, 5], dtype=numpy.int32))
    numpy.save(os.path.join(out, "numpy_int64_2d.npy"),
               numpy.array([[0, 0], [1, 7], [-5, 2**40]], dtype=numpy.int64))


if __name__ == "__main__":
    main()
