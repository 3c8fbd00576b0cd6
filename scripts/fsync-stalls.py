#!/usr/bin/env python3
"""How long a small journal sync waits while a large file is written or deleted beside it.

The measurement behind cell/src/store/trickle_delete.rs (deletion in pieces, which the store
does) and behind writing tables back in pieces (which it tried and dropped: ARCHITECTURE.md,
"Nothing large reaches the disk at once"). One thread appends 3 KB to a 256 MiB
"journal" and fdatasyncs it in a loop, as the store's group commit does. Meanwhile the main
thread writes a FILE_MIB "table" and fsyncs it, as fjall does at the end of a flush, then deletes
it, as fjall does with journals and compacted tables. Printed: the longest journal sync during
each of those, done all at once and done in pieces (sync_file_range after each piece written;
the file shrunk a piece every 2 ms once unlinked).

Usage: [FILE_MIB=40] scripts/fsync-stalls.py [DIR] [PIECE_KIB]
  DIR: where the files go (default: a temporary directory under the current one)
  PIECE_KIB: the piece size (default 1024; the store shrinks deleted files by 256)
"""

import ctypes
import os
import sys
import tempfile
import threading
import time

MIB = 1 << 20
PIECE = int(sys.argv[2]) * 1024 if len(sys.argv) > 2 else MIB
TABLE_MIB = int(os.environ.get("FILE_MIB", "40"))
ROUNDS = 4
SYNC_FILE_RANGE_WAIT_BEFORE, SYNC_FILE_RANGE_WRITE, SYNC_FILE_RANGE_WAIT_AFTER = 1, 2, 4
libc = ctypes.CDLL("libc.so.6", use_errno=True)
libc.sync_file_range.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]


def journal(path, stop, syncs):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.ftruncate(fd, 256 * MIB)  # sparse, as fjall preallocates its journal
    os.fsync(fd)
    record, offset = b"j" * 3000, 0
    while not stop.is_set():
        began = time.perf_counter()
        os.pwrite(fd, record, offset)
        os.fdatasync(fd)
        syncs.append((began, time.perf_counter() - began))
        offset += len(record)
        time.sleep(0.0005)
    os.close(fd)


def write_table(path, chunked):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    block = os.urandom(PIECE)
    for i in range(TABLE_MIB * MIB // PIECE):
        os.write(fd, block)
        if chunked:
            flags = SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER
            libc.sync_file_range(fd, i * PIECE, PIECE, flags)
    os.fsync(fd)
    os.close(fd)


def delete_table(path, chunked):
    if chunked:
        fd = os.open(path, os.O_WRONLY)
        os.unlink(path)
        size = os.fstat(fd).st_size
        while size > 0:
            size = max(0, size - PIECE)
            os.ftruncate(fd, size)
            time.sleep(0.002)
        os.close(fd)
    else:
        os.unlink(path)


def during(syncs, began, ended):
    """The median and the longest journal sync that began in [began, ended], in milliseconds."""
    took = sorted(took for (at, took) in syncs if began - 0.001 <= at <= ended) or [0.0]
    return took[len(took) // 2] * 1000, took[-1] * 1000


def main():
    parent = sys.argv[1] if len(sys.argv) > 1 else "."
    with tempfile.TemporaryDirectory(dir=parent) as dir:
        stop, syncs = threading.Event(), []
        syncer = threading.Thread(target=journal, args=(os.path.join(dir, "journal"), stop, syncs))
        syncer.start()
        time.sleep(0.5)
        results = {}
        for chunked in (False, True):
            for i in range(ROUNDS):
                table = os.path.join(dir, f"table-{chunked}-{i}")
                for what, step in (("write+fsync", write_table), ("delete", delete_table)):
                    began = time.perf_counter()
                    step(table, chunked)
                    results.setdefault((what, chunked), []).append(during(syncs, began, time.perf_counter()))
                    time.sleep(0.3)
        stop.set()
        syncer.join()
    quiet = sorted(took for (_, took) in syncs)
    print(f"journal syncs: {len(quiet)}, median {quiet[len(quiet) // 2] * 1000:.2f} ms")
    for (what, chunked), runs in sorted(results.items()):
        how = f"in {PIECE // 1024} KiB pieces" if chunked else "all at once"
        print(f"{TABLE_MIB} MiB {what:11s} {how:18s}: journal sync meanwhile, longest "
              f"{max(w for _, w in runs):6.1f} ms (each: {', '.join(f'{w:.1f}' for _, w in runs)}), "
              f"median {', '.join(f'{m:.2f}' for m, _ in runs)}")


if __name__ == "__main__":
    main()
