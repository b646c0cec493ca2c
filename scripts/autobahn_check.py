#!/usr/bin/env python
"""Gate and diff an Autobahn|Testsuite fuzzingclient report (Python 2.7 or 3).

usage: autobahn_check.py [INDEX_JSON [EXPECTED_JSON]] [--write] [--subset]

Fails (exit 1) unless every case has behavior in {OK, NON-STRICT, INFORMATIONAL} and
behaviorClose in {OK, INFORMATIONAL}, and the summary (case -> behavior/behaviorClose) equals
the committed expected file. --write rewrites the expected file from a passing run.
--subset: only cases present in the report are compared (for partial runs).
Defaults: target/autobahn-report/index.json, tests/autobahn/expected.json.
"""
from __future__ import print_function

import json
import os
import sys

OK_BEHAVIOR = {"OK", "NON-STRICT", "INFORMATIONAL"}
OK_CLOSE = {"OK", "INFORMATIONAL"}


def case_key(case_id):
    return [int(p) if p.isdigit() else p for p in case_id.split(".")]


def main(argv):
    flags = set(a for a in argv if a.startswith("--"))
    args = [a for a in argv if not a.startswith("--")]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    index = args[0] if args else os.path.join(root, "target/autobahn-report/index.json")
    expected_path = args[1] if len(args) > 1 else os.path.join(root, "tests/autobahn/expected.json")
    if os.environ.get("AUTOBAHN_CASES"):
        flags.add("--subset")

    with open(index) as f:
        report = json.load(f)
    summary = {}
    for agent, cases in report.items():
        for case_id, r in cases.items():
            summary[case_id] = {"behavior": r["behavior"], "behaviorClose": r["behaviorClose"]}
    if not summary:
        print("autobahn: report has no cases")
        return 1

    failed = sorted(
        (c for c, r in summary.items()
         if r["behavior"] not in OK_BEHAVIOR or r["behaviorClose"] not in OK_CLOSE),
        key=case_key)
    counts = {}
    for r in summary.values():
        counts[r["behavior"]] = counts.get(r["behavior"], 0) + 1
    print("autobahn: %d cases: %s" % (
        len(summary), ", ".join("%s %d" % kv for kv in sorted(counts.items()))))
    for c in failed:
        print("  FAIL %-10s behavior=%s behaviorClose=%s" % (
            c, summary[c]["behavior"], summary[c]["behaviorClose"]))
    if failed:
        print("autobahn: %d case(s) fail the gate" % len(failed))
        return 1

    ordered = [(c, summary[c]) for c in sorted(summary, key=case_key)]
    if "--write" in flags:
        with open(expected_path, "w") as f:
            f.write("{\n" + ",\n".join(
                '  "%s": {"behavior": "%s", "behaviorClose": "%s"}' % (
                    c, r["behavior"], r["behaviorClose"]) for c, r in ordered) + "\n}\n")
        print("autobahn: wrote %s" % expected_path)
        return 0

    if not os.path.exists(expected_path):
        print("autobahn: %s missing (run with --write from a passing run)" % expected_path)
        return 1
    with open(expected_path) as f:
        expected = json.load(f)
    diffs = []
    for c in sorted(set(summary) | set(expected), key=case_key):
        got, want = summary.get(c), expected.get(c)
        if got is None and "--subset" in flags:
            continue
        if got != want:
            fmt = lambda r: "-" if r is None else "%s/%s" % (r["behavior"], r["behaviorClose"])
            diffs.append("  %-10s expected %-28s got %s" % (c, fmt(want), fmt(got)))
    if diffs:
        print("autobahn: %d case(s) differ from %s:" % (len(diffs), expected_path))
        print("\n".join(diffs))
        return 1
    print("autobahn: gate passed, matches %s" % os.path.relpath(expected_path, root))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
