"""Shared pytest plumbing for the third-party suites run against a live gatehouse.

- `Exclusions`: tests that cannot apply to an out-of-process server (they poke pyftpdlib's own
  handler classes, IOLoop, callbacks...). They are deselected with a reason, and the reasons are
  written to the results file so the report lists them.
- `Recorder`: per-test outcome (passed / failed / error / skipped), the crash message, and for
  failures the tail of the client transcript (ftplib debug output or paramiko's log), written as
  JSON to $GH_RESULTS_JSON at the end of the session.

Configuration comes from environment variables set by harness.py (GH_*).
"""

import json
import os
import re

import pytest

_real_raises = pytest.raises


def _lenient_raises(expected_exception, *args, **kwargs):
    """pytest.raises whose match= only checks a leading 3-digit reply code (FTP), or nothing."""
    match = kwargs.pop("match", None)
    if not args and isinstance(match, str):
        m = re.match(r"\s*\^?(\d{3})", match)
        if m:
            kwargs["match"] = "^" + m.group(1)
    return _real_raises(expected_exception, *args, **kwargs)


def install_lenient_raises_if_asked():
    """GH_LENIENT=1: the "wording-insensitive" pass. Upstream tests match their own server's
    message texts; with this the exception type (and an FTP reply code written in the pattern)
    is still checked but not the wording, so a test goes on past a correct but differently
    worded refusal and the rest of it still exercises the server."""
    if os.environ.get("GH_LENIENT") == "1":
        pytest.raises = _lenient_raises


def env_int(name, default=None):
    v = os.environ.get(name)
    if v in (None, ""):
        return default
    return int(v)


class Exclusions:
    """(class regex, test-name regex, reason) triples; a test whose class and name match is
    deselected. The class regex is matched against the unittest class name (so the FTPS
    `...TLSMixin` subclasses are caught by the same rule when the regex allows it)."""

    def __init__(self, rules):
        self.rules = [(re.compile(c), re.compile(t), why) for c, t, why in rules]

    def reason_for(self, item):
        cls = item.cls.__name__ if getattr(item, "cls", None) is not None else ""
        name = item.originalname if hasattr(item, "originalname") else item.name
        for c, t, why in self.rules:
            if c.fullmatch(cls) and t.fullmatch(name):
                return why
        return None

    def apply(self, config, items, recorder):
        keep, drop = [], []
        for item in items:
            why = self.reason_for(item)
            if why is None:
                keep.append(item)
            else:
                drop.append(item)
                recorder.excluded[item.nodeid] = why
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep


def _tail(text, n):
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-n:]


class Recorder:
    def __init__(self, suite, path, transcript_filter=None, transcript_lines=40):
        self.suite = suite
        self.path = path
        self.results = {}
        self.excluded = {}
        self.transcript_filter = transcript_filter
        self.transcript_lines = transcript_lines

    def _entry(self, nodeid):
        return self.results.setdefault(nodeid, {"outcome": None})

    def _transcript(self, report):
        chunks = []
        for title, content in report.sections:
            if "Captured stdout" in title or "Captured log" in title or "Captured stderr" in title:
                chunks.append(content)
        text = "\n".join(chunks)
        if self.transcript_filter is not None:
            text = "\n".join(ln for ln in text.splitlines() if self.transcript_filter(ln))
        return _tail(text, self.transcript_lines)

    def _message(self, report):
        lr = report.longrepr
        crash = getattr(lr, "reprcrash", None)
        if crash is not None:
            return crash.message.strip()
        if isinstance(lr, tuple) and len(lr) == 3:  # skip: (file, line, reason)
            return str(lr[2])
        return str(lr).strip().splitlines()[-1] if lr else ""

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(self, report):
        e = self._entry(report.nodeid)
        if report.when == "call":
            if report.passed:
                if e["outcome"] is None:
                    e["outcome"] = "passed"
            elif report.failed:
                if hasattr(report, "wasxfail"):
                    e["outcome"] = "xpassed"
                else:
                    e["outcome"] = "failed"
                    e["message"] = self._message(report)
                    e["transcript"] = self._transcript(report)
            elif report.skipped:
                e["outcome"] = "xfailed" if hasattr(report, "wasxfail") else "skipped"
                e["message"] = self._message(report)
        else:
            if report.failed:
                # error in setup/teardown; a call failure stays a failure
                if e["outcome"] != "failed":
                    e["outcome"] = "error"
                    e["message"] = f"[{report.when}] " + self._message(report)
                    e["transcript"] = self._transcript(report)
                else:
                    e["teardown_error"] = self._message(report)
            elif report.skipped and report.when == "setup":
                e["outcome"] = "skipped"
                e["message"] = self._message(report)
        if report.when == "call" or report.failed:
            e["duration"] = round(e.get("duration", 0) + report.duration, 3)

    def pytest_collectreport(self, report):
        if report.failed:
            self.results[report.nodeid or "<collection>"] = {
                "outcome": "collection_error",
                "message": str(report.longrepr)[-2000:],
            }

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session, exitstatus):
        counts = {"passed": 0, "failed": 0, "error": 0, "skipped": 0, "xfailed": 0,
                  "xpassed": 0, "collection_error": 0}
        for e in self.results.values():
            if e["outcome"] is None:
                e["outcome"] = "passed"
            counts[e["outcome"]] = counts.get(e["outcome"], 0) + 1
        counts["excluded"] = len(self.excluded)
        data = {
            "suite": self.suite,
            "exitstatus": int(exitstatus),
            "counts": counts,
            "tests": self.results,
            "excluded": self.excluded,
        }
        if self.path:
            with open(self.path, "w") as f:
                json.dump(data, f, indent=1, sort_keys=True)
