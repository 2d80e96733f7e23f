#!/usr/bin/env python3
"""Writes chat tasks with checkable answers for SFT and preference tuning (python3 stdlib only).

Tasks: multi-digit addition ("What is 482 + 1937?" -> "2419") and sorting a short list
("Sort in ascending order: 7, 31, 4" -> "4, 7, 31"). Everything is drawn from --seed, so the
same arguments write the same bytes. Test prompts never occur in the training file.

Default output (SFT, data/sft_dataset.h's format), one conversation per line:
  {"messages": [{"role": "user", "content": "What is 482 + 1937?"},
                {"role": "assistant", "content": "2419"}], "task": "add"}
With --pairs, preference pairs for DPO-style training instead:
  {"prompt": "What is 482 + 1937?", "chosen": "2419", "rejected": "2429", "task": "add"}
where chosen is the correct answer and rejected a wrong one (an addition off by a few units
or tens, or a list with two of its numbers swapped out of order).

  scripts/make_arithmetic_chat.py --out data/arith --train 20000 --test 500 --seed 1
writes data/arith/train.jsonl and data/arith/test.jsonl (train_pairs/test_pairs with --pairs).
"""
import argparse
import json
import os
import random
import sys


def addition(rng, max_digits):
    a = rng.randrange(10 ** rng.randint(1, max_digits))
    b = rng.randrange(10 ** rng.randint(1, max_digits))
    return f"What is {a} + {b}?", str(a + b)


def wrong_addition(rng, correct):
    value = int(correct)
    while True:
        wrong = value + rng.choice([-1, 1]) * rng.choice([1, 2, 10, 100])
        if wrong >= 0 and wrong != value:
            return str(wrong)


def sorting(rng, max_items):
    numbers = [rng.randrange(100) for _ in range(rng.randint(3, max_items))]
    question = "Sort in ascending order: " + ", ".join(map(str, numbers))
    return question, ", ".join(map(str, sorted(numbers)))


def wrong_sorting(rng, correct):
    numbers = [int(n) for n in correct.split(", ")]
    distinct = [i for i in range(len(numbers) - 1) if numbers[i] != numbers[i + 1]]
    if not distinct:  # all equal: any change of one number is wrong
        numbers[0] += 1
        return ", ".join(map(str, numbers))
    i = rng.choice(distinct)
    numbers[i], numbers[i + 1] = numbers[i + 1], numbers[i]
    return ", ".join(map(str, numbers))


TASKS = {"add": (addition, wrong_addition), "sort": (sorting, wrong_sorting)}


def draw(rng, tasks, count, args, exclude):
    """`count` distinct (task, prompt, answer) triples whose prompts are not in `exclude`."""
    items, seen = [], set(exclude)
    attempts = 0
    while len(items) < count:
        attempts += 1
        if attempts > 100 * count + 1000:
            sys.exit(f"make_arithmetic_chat: cannot draw {count} distinct prompts; raise --digits or --items")
        task = rng.choice(tasks)
        prompt, answer = TASKS[task][0](rng, args.digits if task == "add" else args.items)
        if prompt in seen:
            continue
        seen.add(prompt)
        items.append((task, prompt, answer))
    return items


def record(rng, item, args):
    task, prompt, answer = item
    if args.pairs:
        return {"prompt": prompt, "chosen": answer, "rejected": TASKS[task][1](rng, answer), "task": task}
    messages = [{"role": "system", "content": args.system}] if args.system else []
    messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
    return {"messages": messages, "task": task}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--train", type=int, default=10000, help="training examples")
    parser.add_argument("--test", type=int, default=500, help="test examples (prompts unseen in training)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tasks", default="add,sort", help="comma-separated: add, sort")
    parser.add_argument("--digits", type=int, default=4, help="most digits of an addend")
    parser.add_argument("--items", type=int, default=6, help="most numbers in a list to sort (at least 3)")
    parser.add_argument("--system", default="", help="a system message put before every conversation")
    parser.add_argument("--pairs", action="store_true", help="write preference pairs (prompt/chosen/rejected)")
    args = parser.parse_args()
    tasks = args.tasks.split(",")
    for task in tasks:
        if task not in TASKS:
            sys.exit(f"make_arithmetic_chat: unknown task '{task}' in --tasks; known: {', '.join(TASKS)}")
    if args.digits < 1 or args.items < 3 or args.train < 0 or args.test < 0:
        sys.exit("make_arithmetic_chat: --digits must be >= 1, --items >= 3, --train and --test >= 0")

    rng = random.Random(args.seed)
    test = draw(rng, tasks, args.test, args, ())
    train = draw(rng, tasks, args.train, args, {prompt for _, prompt, _ in test})
    os.makedirs(args.out, exist_ok=True)
    suffix = "_pairs" if args.pairs else ""
    for name, items in (("train", train), ("test", test)):
        path = os.path.join(args.out, f"{name}{suffix}.jsonl")
        with open(path, "w", encoding="utf-8") as out:
            for item in items:
                out.write(json.dumps(record(rng, item, args)) + "\n")
        print(f"wrote {len(items)} examples to {path}")


if __name__ == "__main__":
    main()
