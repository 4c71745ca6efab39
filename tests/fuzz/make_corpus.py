#!/usr/bin/env python3
"""Writes the seed corpus of program_fuzzer (tests/fuzz/corpus): hand-written programs that
reach every op, and seeded random inputs. Deterministic: rerunning it rewrites the same files
and keeps the found_* inputs (failures the fuzzer found, kept as regression seeds).

The encoding is program_fuzzer.cpp's: a block is a byte (statements - 1, mod 4) followed by its
statements; a statement is an op byte, its argument byte if it has one, and its nested blocks.

    python3 tests/fuzz/make_corpus.py
"""
import os
import random

OPS = ["fail", "checkpoint", "yield", "sleep", "acquire", "cancel", "spawn", "supervised",
       "join", "spawn_cancel", "group", "shield", "timeout", "wait_any", "gather"]
ARG = {"sleep", "acquire", "timeout"}            # one argument byte
BLOCKS = {"acquire": 1, "spawn": 1, "supervised": 1, "join": 1, "spawn_cancel": 1, "group": 1,
          "shield": 1, "timeout": 1, "wait_any": 2, "gather": 2}


def block(*statements):
    assert 1 <= len(statements) <= 4
    return bytes([len(statements) - 1]) + b"".join(statements)


def op(name, *parts):
    """op("sleep", 50), op("spawn", block(...)), op("timeout", 10, block(...))."""
    out = bytes([OPS.index(name)])
    parts = list(parts)
    if name in ARG:
        out += bytes([parts.pop(0)])
    assert len(parts) == BLOCKS.get(name, 0), name
    for p in parts:
        out += p
    return out


FAIL, CHECK, YIELD = op("fail"), op("checkpoint"), op("yield")

PROGRAMS = {
    "empty_body": block(CHECK),
    "fail_in_body": block(FAIL),
    "each_simple_op": block(CHECK, YIELD, op("sleep", 20), op("cancel")),
    "spawn_one": block(op("spawn", block(CHECK))),
    "spawn_failing": block(op("spawn", block(FAIL))),
    "spawn_two_failing": block(op("spawn", block(FAIL)), op("spawn", block(YIELD, FAIL))),
    "spawn_then_body_fails": block(op("spawn", block(op("sleep", 100))), FAIL),
    "supervised_fails": block(op("supervised", block(FAIL)), CHECK),
    "supervised_and_plain_fail": block(op("supervised", block(FAIL)), op("spawn", block(FAIL))),
    "join_ok": block(op("join", block(YIELD))),
    "join_failing": block(op("join", block(FAIL)), CHECK),
    "spawn_cancel": block(op("spawn_cancel", block(op("sleep", 200)))),
    "spawn_cancel_failing": block(op("spawn_cancel", block(FAIL))),
    "cancel_then_spawn": block(op("cancel"), op("spawn", block(CHECK))),
    "cancel_from_child": block(op("spawn", block(op("cancel"))), op("sleep", 100)),
    "nested_groups": block(op("group", block(op("group", block(op("spawn", block(FAIL))))))),
    "nested_group_cancel": block(op("group", block(op("spawn", block(op("sleep", 250))),
                                                   op("cancel"))), CHECK),
    "shield_sleep_cancelled": block(op("spawn", block(op("shield", block(op("sleep", 100))))),
                                    op("cancel")),
    "shield_fail": block(op("shield", block(FAIL))),
    "timeout_expires": block(op("timeout", 1, block(op("sleep", 250)))),
    "timeout_in_time": block(op("timeout", 255, block(CHECK))),
    "timeout_zero": block(op("timeout", 0, block(CHECK))),
    "timeout_fail": block(op("timeout", 200, block(FAIL))),
    "acquire_release": block(op("acquire", 2, block(YIELD))),
    "acquire_all_contended": block(op("spawn", block(op("acquire", 3, block(op("sleep", 50))))),
                                   op("spawn", block(op("acquire", 2, block(YIELD)))),
                                   op("acquire", 1, block(CHECK))),
    "acquire_cancelled_waiter": block(op("spawn", block(op("acquire", 3, block(op("sleep", 200))))),
                                      op("spawn_cancel", block(op("acquire", 3, block(CHECK))))),
    "acquire_under_timeout": block(op("spawn", block(op("acquire", 3, block(op("sleep", 250))))),
                                   op("timeout", 5, block(op("acquire", 3, block(CHECK))))),
    "acquire_then_fail": block(op("spawn", block(op("acquire", 2, block(FAIL)))),
                               op("acquire", 2, block(YIELD))),
    "wait_any_both_ok": block(op("wait_any", block(CHECK), block(op("sleep", 50)))),
    "wait_any_one_fails": block(op("wait_any", block(FAIL), block(op("sleep", 200)))),
    "wait_any_both_fail": block(op("wait_any", block(FAIL), block(FAIL))),
    "gather_ok": block(op("gather", block(YIELD), block(CHECK))),
    "gather_fail": block(op("gather", block(FAIL), block(op("sleep", 200)))),
    "gather_of_groups": block(op("gather", block(op("group", block(op("spawn", block(FAIL))))),
                                 block(op("group", block(op("spawn", block(op("sleep", 100)))))))),
    "spawn_from_child": block(op("spawn", block(op("spawn", block(op("spawn", block(CHECK))))))),
    "deep_mix": block(op("group", block(op("supervised", block(op("timeout", 20, block(
        op("gather", block(op("sleep", 80)), block(op("acquire", 1, block(FAIL)))))))),
        op("join", block(op("wait_any", block(YIELD), block(op("shield", block(CHECK)))))),
        op("cancel")))),
}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    corpus = os.path.join(here, "corpus")
    os.makedirs(corpus, exist_ok=True)
    # found_*: inputs the fuzzer found (kept as they are, as regression seeds).
    for name in os.listdir(corpus):
        if not name.startswith("found_"):
            os.remove(os.path.join(corpus, name))
    for name, data in PROGRAMS.items():
        with open(os.path.join(corpus, name), "wb") as f:
            f.write(data)
    rng = random.Random(20261207)
    for i in range(24):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(4, 64)))
        with open(os.path.join(corpus, "random_%02d" % i), "wb") as f:
            f.write(data)
    print("wrote %d inputs to %s" % (len(PROGRAMS) + 24, corpus))


if __name__ == "__main__":
    main()
