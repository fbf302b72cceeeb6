#!/usr/bin/env python3
"""The disk's rate for a durable write, in MB/s: 1 GiB of incompressible bytes written
with O_DIRECT into the file PATH (overwritten in place, never deleted here, so no
deletion's discard loads the disk during the runs), then fsync. Prints "n/a" where the
filesystem refuses O_DIRECT (tmpfs)."""
import mmap, os, sys, time

path = sys.argv[1]
block = 4 << 20
buf = mmap.mmap(-1, block)  # page-aligned, as O_DIRECT needs
buf.write(os.urandom(block))
try:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o600)
except OSError:
    print("n/a")
    sys.exit(0)
try:
    start = time.monotonic()
    for i in range(256):
        # A different first word in each block: no two blocks alike for a deduplicating disk.
        buf[0:8] = i.to_bytes(8, "little")
        os.pwritev(fd, [buf], i * block)
    os.fsync(fd)
    print(round(256 * block / (time.monotonic() - start) / 1e6))
except OSError:
    print("n/a")
finally:
    os.close(fd)
