"""Per-thread CPU time from /proc, shared by the benchmark scripts (stdlib only)."""

import os


def thread_cpu_ns(pid, name):
    """Run time in ns of the thread of `pid` whose comm is `name`
    (/proc/PID/task/TID/schedstat), or None when there is no such thread."""
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                if f.read().strip() == name:
                    with open(f"/proc/{pid}/task/{tid}/schedstat") as s:
                        return int(s.read().split()[0])
    except OSError:
        pass
    return None
