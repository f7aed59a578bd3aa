"""What every bench script's --json mode shares: a clean stdout and the process's peak memory.

In --json mode stdout carries exactly one JSON object (bench/run_all.py parses it), so whatever the
work prints on the way - Python prints, or C libraries writing to file descriptor 1 - goes to stderr.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def stdout_to_stderr(enabled: bool = True) -> Iterator[None]:
    """Send everything written to stdout (Python and native code alike) to stderr while inside."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 1)
        os.close(saved)


def print_json(report: dict) -> None:
    """The one line of stdout in --json mode."""
    print(json.dumps(report), flush=True)


def run_and_report(measure, args, show=None) -> dict:
    """``measure(args)`` with a clean stdout when ``args.json``; then the report as one JSON line, or
    shown by ``show(report)`` (default: indented JSON)."""
    with stdout_to_stderr(args.json):
        report = measure(args)
    if args.json:
        print_json(report)
    elif show is not None:
        show(report)
    else:
        print(json.dumps(report, indent=2))
    return report


def repeats_main(description: str, measure, default_repeats: int, argv=None) -> dict:
    """main() of a bench script whose one option is how many timed calls it makes: --repeats N [--json]."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=default_repeats)
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout, nothing else")
    return run_and_report(measure, parser.parse_args(argv))


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MiB (Linux reports ru_maxrss in KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def process_peak_rss_mb(pid: int) -> float | None:
    """Peak resident memory (VmHWM) of another live process, MiB; None where /proc does not say."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)  # "VmHWM:  123456 kB"
    except OSError:
        pass
    return None
