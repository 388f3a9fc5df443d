#!/usr/bin/env python3
"""Cache lines two threads resolving the same request both touch, one writing.

Runs the profile driver's `two-readers N` or `two-readers-memoized N` mode
(see benches/profile.rs) under `valgrind --tool=lackey --trace-mem=yes`,
finds each thread's turn between its markers (a run of 4,096 two-byte stores
filling the marker's 4,096 bytes twice over; making it stores each once;
valgrind runs one thread at a time, but may switch threads inside a fill,
so the stores are counted, not required to be consecutive), and lists every 64-byte line, and every
128-byte pair of lines (adjacent-line prefetchers fetch pairs), that one
thread's turn wrote and the other's read or wrote. On two cores such a line
moves between them on every resolution; lines both only read stay shared.

    python3 benches/shared_lines.py target/release/deps/profile-<hash> two-readers 5

Exits 0 when no line is shared with a write, 1 when one is, 2 on a usage or
trace error.
"""

import collections
import os
import re
import subprocess
import sys
import tempfile

MARK_STORES = 2048  # benches/profile.rs: MARK_STORES
MARK_BYTES = 2 * MARK_STORES


def main(argv):
    if len(argv) != 4 or argv[2] not in ("two-readers", "two-readers-memoized"):
        print(__doc__, file=sys.stderr)
        return 2
    binary, mode, n = argv[1], argv[2], argv[3]
    with tempfile.TemporaryDirectory() as tmp:
        trace = os.path.join(tmp, "lackey.out")
        run = subprocess.run(
            ["valgrind", "--tool=lackey", "--trace-mem=yes", f"--log-file={trace}", binary, mode, n],
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
        if run.returncode != 0:
            print(run.stderr, file=sys.stderr)
            return 2
        marks = {}
        for thread, what, address in re.findall(r"^MARK (\d) (start|end) (0x[0-9a-f]+)$", run.stderr, re.M):
            marks[(int(thread), what)] = int(address, 16)
        harness = set()
        for address, size in re.findall(r"^HARNESS (0x[0-9a-f]+) (\d+)$", run.stderr, re.M):
            harness.update(range(int(address, 16), int(address, 16) + int(size)))
        if len(marks) != 4:
            print(f"expected 4 markers, found {len(marks)}", file=sys.stderr)
            return 2
        turns = read_turns(trace, marks, harness)
    if turns is None:
        return 2
    found = False
    for shift, what in ((6, "64-byte lines"), (7, "128-byte pairs")):
        shared = shared_with_a_write(turns, shift)
        print(f"{what} one turn wrote and the other touched: {len(shared)}")
        for line, kinds in shared:
            print(f"  {line:#x}  thread 0: {kinds[0]:<2}  thread 1: {kinds[1]}")
        found |= bool(shared)
    for thread in (0, 1):
        loads, stores = turns[thread]
        read, written = ({a >> 6 for a in loads}, {a >> 6 for a in stores})
        print(f"thread {thread}: {len(read)} lines read, {len(written)} written in its turn")
    return 1 if found else 0


def read_turns(trace, marks, harness):
    """Per thread, the byte addresses its turn loaded and stored (the
    harness's barriers left out: the waiting thread touches them)."""
    ranges = {key: (start, start + MARK_BYTES) for key, start in marks.items()}
    order = [(0, "start"), (0, "end"), (1, "start"), (1, "end")]
    turns = {0: (set(), set()), 1: (set(), set())}
    step, stored, current = 0, 0, None
    with open(trace) as lines:
        for line in lines:
            parts = line.split()
            if len(parts) != 2 or parts[0] not in ("L", "S", "M"):
                continue
            kind = parts[0]
            address, size = parts[1].split(",")
            address, size = int(address, 16), int(size)
            if step < len(order):
                low, high = ranges[order[step]]
                if kind == "S" and size == 2 and low <= address < high:
                    stored += 1
                    if stored == 2 * MARK_STORES:
                        thread, what = order[step]
                        current = thread if what == "start" else None
                        step, stored = step + 1, 0
                    continue
            if current is None or address in harness:
                continue
            loads, stores = turns[current]
            if kind in ("L", "M"):
                loads.add(address)
            if kind in ("S", "M"):
                stores.add(address)
    if step != len(order):
        print(f"found {step} of 4 marker fills in the trace", file=sys.stderr)
        return None
    return turns


def shared_with_a_write(turns, shift):
    lines = {}
    for thread in (0, 1):
        loads, stores = turns[thread]
        lines[thread] = (
            {a >> shift for a in loads},
            {a >> shift for a in stores},
        )
    shared = []
    every = set().union(*lines[0], *lines[1])
    for line in sorted(every):
        kinds = []
        for thread in (0, 1):
            loads, stores = lines[thread]
            kinds.append(("S" if line in stores else "") + ("L" if line in loads else ""))
        written = any("S" in k for k in kinds)
        if written and all(kinds):
            shared.append((line << shift, kinds))
    return shared


if __name__ == "__main__":
    sys.exit(main(sys.argv))
