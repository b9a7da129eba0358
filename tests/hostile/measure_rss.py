"""Run a command and write its peak RSS (kilobytes) to a file: ``measure_rss.py FILE CMD...``.

A child's ru_maxrss on Linux starts at its parent's RSS when it was forked, so a command
forked straight from a long-lived pytest worker would report the worker's size. This small
process forks the command instead and reports what the command itself reached.
"""

import resource
import subprocess
import sys

if __name__ == "__main__":
    target, command = sys.argv[1], sys.argv[2:]
    status = subprocess.call(command)
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    with open(target, "w", encoding="ascii") as out:
        out.write(str(peak_kb))
    sys.exit(status)
