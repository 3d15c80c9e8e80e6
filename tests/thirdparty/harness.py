#!/usr/bin/env python3
"""Run pyftpdlib's and paramiko's own test suites against a live gatehouse binary.

Called by run.sh (which installs the pinned test dependencies and fetches the sdists); can be
run directly:

  harness.py --bin GATEHOUSE --sdists DIR --work DIR [--out results.json] [--suite NAME ...]

Steps: extract the sdists (upstream test files stay unmodified), write gatehouse configs for the
instances below, start them, wait for their ports, run each suite with pytest inside the
directory that is the test user's home on the local-disk backend, print one summary line per
suite, write per-test outcomes to --out, stop the gateways by PID.

Instances (all loopback, all sharing one local-disk root; the FTP user "user" has home /ftp, the
SFTP user "slowdive" has home /sftp, both every permission; a read-only FTP user "anonymous"
(see ANON_USER); login-failure bans off unless said; explicit FTPS (AUTH TLS) available on all,
required = false unless said):
  main     FTP + SFTP
  tlsreq   FTP, [ftp.tls] required = true       (pyftpdlib tls_control_required / tls_data_required)
  v6       FTP on [::1]                          (pyftpdlib TestIPv6Environment)
  maxcons  FTP, max_connections = 2              (pyftpdlib max_cons = 3: it counts its listener)
  perip    FTP, max_connections_per_ip = 3       (pyftpdlib max_cons_per_ip = 3)
  ban1     FTP, login_failures max = 1           (pyftpdlib max_login_attempts = 1)
  ban3     FTP, login_failures max = 3           (pyftpdlib default max_login_attempts = 3, test_max_auth)

Exit status: 0 when every suite ran (whatever the test outcomes), 1 when the harness broke
(a gateway did not start, a suite could not be collected, crashed or timed out).
"""

import argparse
import contextlib
import datetime
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PYFTPDLIB_VERSION = "2.2.0"
PARAMIKO_VERSION = "5.1.0"
FTP_USER, FTP_PASSWORD = "user", "12345"          # pyftpdlib tests/__init__.py USER/PASSWD
SFTP_USER, SFTP_PASSWORD = "slowdive", "pygmalion"  # paramiko tests/conftest.py
# pyftpdlib's test server also has an anonymous user (home = HOME, perms "elr": list/read only)
# and several FTPS tests log in with ftplib's default login(), i.e. USER anonymous /
# PASS anonymous@. Gatehouse has no anonymous access (by design), so the harness gives it an
# ordinary FTP-only user of that name with that password and read-only rights, to let those
# tests reach what they check (AUTH/PBSZ/PROT, STOU refused for lack of rights).
ANON_USER, ANON_PASSWORD = "anonymous", "anonymous@"
ALL_PERMS = '["list", "read", "write", "overwrite", "delete", "mkdir", "rename"]'

SUITES = {
    # name: (sdist, test file, plugin, home dir under the data root, extra env)
    "pyftpdlib-functional": ("pyftpdlib", "tests/test_functional.py", "gh_thirdparty_pyftpdlib", "ftp", {}),
    "pyftpdlib-functional-ssl": ("pyftpdlib", "tests/test_functional_ssl.py", "gh_thirdparty_pyftpdlib", "ftp", {}),
    "paramiko-sftp": ("paramiko", "tests/test_sftp.py", "gh_thirdparty_paramiko", "sftp", {}),
    # Secondary passes: the same pyftpdlib tests with reply-text matching reduced to the reply
    # code (see gh_thirdparty_pyftpdlib.py), so a test gets past pyftpdlib's own wording.
    "pyftpdlib-functional-lenient": ("pyftpdlib", "tests/test_functional.py", "gh_thirdparty_pyftpdlib", "ftp",
                                     {"GH_LENIENT": "1"}),
    "pyftpdlib-functional-ssl-lenient": ("pyftpdlib", "tests/test_functional_ssl.py", "gh_thirdparty_pyftpdlib",
                                         "ftp", {"GH_LENIENT": "1"}),
    "paramiko-sftp-lenient": ("paramiko", "tests/test_sftp.py", "gh_thirdparty_paramiko", "sftp",
                              {"GH_LENIENT": "1"}),
    # Opt-in: big-file SFTP tests (a few MiB per test).
    "paramiko-sftp-big": ("paramiko", "tests/test_sftp_big.py", "gh_thirdparty_paramiko", "sftp", {}),
}
DEFAULT_SUITES = ["pyftpdlib-functional", "pyftpdlib-functional-ssl", "paramiko-sftp",
                  "pyftpdlib-functional-lenient", "pyftpdlib-functional-ssl-lenient", "paramiko-sftp-lenient"]


def log(msg):
    print(f"[harness] {msg}", flush=True)


_taken = set()      # ports handed out, and the passive ranges: never hand one out twice


def free_port(host="127.0.0.1", family=socket.AF_INET):
    for _ in range(200):
        with contextlib.closing(socket.socket(family)) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in _taken:
            _taken.add(port)
            return port
    raise RuntimeError("no free port")


def range_free(lo, hi):
    socks = []
    try:
        for p in range(lo, hi + 1):
            s = socket.socket()
            socks.append(s)
            s.bind(("127.0.0.1", p))
        return True
    except OSError:
        return False
    finally:
        for s in socks:
            s.close()


def passive_ranges(n, size=100, start=40000):
    out, lo = [], start
    while len(out) < n and lo + size < 65000:
        if range_free(lo, lo + size - 1):
            out.append((lo, lo + size - 1))
            _taken.update(range(lo, lo + size))
        lo += size
    if len(out) < n:
        raise RuntimeError("no free passive port ranges")
    return out


def hash_password(binary, pw):
    r = subprocess.run([binary, "hash-password"], input=pw, capture_output=True, text=True, timeout=60)
    if r.returncode != 0 or not r.stdout.startswith("$argon2"):
        raise RuntimeError(f"gatehouse hash-password failed: {r.stderr.strip()}")
    return r.stdout.strip()


def extract(tgz, dest):
    with tarfile.open(tgz) as t:
        top = t.getnames()[0].split("/")[0]
        t.extractall(dest, filter="data") if hasattr(tarfile, "data_filter") else t.extractall(dest)
    return os.path.join(dest, top)


class Instance:
    def __init__(self, name, work, data_root, binary, hashes, pasv, cert, key, *, listen_host="127.0.0.1",
                 tls=None, sftp=False, limits=None):
        self.name = name
        self.dir = os.path.join(work, "gw-" + name)
        os.makedirs(os.path.join(self.dir, "var"), exist_ok=True)
        self.binary = binary
        fam = socket.AF_INET6 if ":" in listen_host else socket.AF_INET
        self.ftp_host = listen_host
        self.ftp_port = free_port(listen_host, fam)
        self.sftp_port = free_port() if sftp else None
        lim = {"login_failures": "{ max = 0, window_secs = 60, ban_secs = 60, account_max = 0 }",
               "max_connections_per_ip": "1000", "max_sessions_per_user": "1000"}
        lim.update(limits or {})
        listen = f"[{listen_host}]:{self.ftp_port}" if fam == socket.AF_INET6 else f"{listen_host}:{self.ftp_port}"
        lines = [
            "[gateway]", f'state_dir = "{self.dir}/var"', "shutdown_grace_secs = 2", "",
            "[audit]", 'fsync = "batch"', "",
            "[limits]", *[f"{k} = {v}" for k, v in lim.items()], "",
        ]
        if sftp:
            lines += ["[sftp]", f'listen = "127.0.0.1:{self.sftp_port}"',
                      f'host_keys = ["{self.dir}/var/ssh_host_ed25519_key"]', ""]
        lines += ["[ftp]", f'listen = "{listen}"', f"passive_ports = [{pasv[0]}, {pasv[1]}]"]
        if fam == socket.AF_INET:
            lines += ['passive_host = "127.0.0.1"']
        if tls is not None:
            lines += ["", "[ftp.tls]", f'cert = "{cert}"', f'key = "{key}"', f"required = {'true' if tls else 'false'}"]
        lines += ["", "[backends.disk]", 'kind = "local"', f'root = "{data_root}"', "",
                  "[[mounts]]", 'path = "/"', 'backend = "disk"', ""]
        for user, home, h, perms, protos in (
                (FTP_USER, "/ftp", hashes[0], ALL_PERMS, None),
                (SFTP_USER, "/sftp", hashes[1], ALL_PERMS, None),
                (ANON_USER, "/ftp", hashes[2], '["list", "read"]', '["ftp"]')):
            lines += ["[[users]]", f'name = "{user}"', f'password_hash = "{h}"', f'home = "{home}"',
                      f'permissions = [ {{ path = "/", allow = {perms} }} ]']
            if protos:
                lines += [f"protocols = {protos}"]
            lines += [""]
        self.config = os.path.join(self.dir, "gatehouse.toml")
        with open(self.config, "w") as f:
            f.write("\n".join(lines))
        self.proc = None
        self.logfile = os.path.join(self.dir, "serve.log")

    def check(self):
        r = subprocess.run([self.binary, "check", "--config", self.config], capture_output=True, text=True,
                           timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"gatehouse check ({self.name}) failed:\n{r.stdout}{r.stderr}")

    def start(self):
        self.log_fh = open(self.logfile, "w")
        self.proc = subprocess.Popen([self.binary, "serve", "--config", self.config], cwd=self.dir,
                                     stdout=self.log_fh, stderr=subprocess.STDOUT)

    def wait(self, timeout=30):
        ports = [(self.ftp_host, self.ftp_port)] + ([("127.0.0.1", self.sftp_port)] if self.sftp_port else [])
        deadline = time.time() + timeout
        for host, port in ports:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"gatehouse ({self.name}) exited with {self.proc.returncode}; log:\n"
                                       + open(self.logfile).read()[-3000:])
                try:
                    with socket.create_connection((host, port), timeout=1):
                        break
                except OSError:
                    if time.time() > deadline:
                        raise RuntimeError(f"gatehouse ({self.name}) not listening on {host}:{port}")
                    time.sleep(0.1)

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.log_fh.close()


def make_locale(work):
    """paramiko's @requireNonAsciiLocale tests skip without a non-ASCII locale; compile one
    (ja_JP.UTF-8, from the glibc locale sources) into a private LOCPATH if we can."""
    if not shutil.which("localedef") or not os.path.isdir("/usr/share/i18n/locales"):
        return None
    locpath = os.path.join(work, "locale")
    os.makedirs(locpath, exist_ok=True)
    r = subprocess.run(["localedef", "-i", "ja_JP", "-f", "UTF-8", os.path.join(locpath, "ja_JP.utf8")],
                       capture_output=True, text=True)
    if not os.path.isdir(os.path.join(locpath, "ja_JP.utf8")):
        log(f"could not compile ja_JP.UTF-8 ({r.stderr.strip()[:200]}); locale tests will skip")
        return None
    return locpath


def run_suite(name, args, srcs, data_root, instances, results_dir, locpath):
    sdist, testfile, plugin, home, extra_env = SUITES[name]
    src = srcs[sdist]
    cwd = os.path.join(data_root, home)
    os.makedirs(cwd, exist_ok=True)
    out_json = os.path.join(results_dir, f"{name}.json")
    if os.path.exists(out_json):
        os.remove(out_json)
    # Our own ini: upstream's addopts need plugins (instafail, xdist) that are beside the point,
    # and paramiko's python_files = * is for collecting whole directories.
    ini = os.path.join(results_dir, f"{name}.ini")
    with open(ini, "w") as f:
        f.write("[pytest]\naddopts =\nfilterwarnings =\n    ignore::DeprecationWarning\n")
    env = dict(os.environ)
    main = instances["main"]
    env.update({
        "PYTHONPATH": os.pathsep.join([HERE, src] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])),
        "PYTHONDONTWRITEBYTECODE": "1",
        "GH_SUITE": name,
        "GH_RESULTS_JSON": out_json,
        "GH_FTP_PORT": str(main.ftp_port),
        "GH_SFTP_PORT": str(main.sftp_port),
        "TZ": "UTC",
    })
    # Only the plugins we name: the venv also has hypothesis/schemathesis/anyio pytest plugins.
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    env.update(extra_env)
    if locpath and sdist == "paramiko":
        env["LOCPATH"] = locpath
    for inst in instances.values():
        if inst.name != "main":
            env[f"GH_FTP_{inst.name.upper()}_PORT"] = str(inst.ftp_port)
    env.pop("GITHUB_ACTIONS", None)
    env.pop("CI", None)  # pyftpdlib reads GITHUB_ACTIONS only, but be safe
    cmd = ["timeout", "-k", "10", str(args.suite_timeout), args.python, "-m", "pytest",
           "-c", ini, "--rootdir", src, "-p", "pytest_timeout", "-p", plugin, "-p", "no:cacheprovider",
           "--timeout", str(args.test_timeout), "-rfEs", "--tb=short", "-q",
           os.path.join(src, testfile)] + args.pytest_args
    log(f"running {name}: cwd={cwd}")
    logpath = os.path.join(results_dir, f"{name}.log")
    with open(logpath, "w") as lf:
        rc = subprocess.call(cmd, cwd=cwd, env=env, stdout=lf, stderr=subprocess.STDOUT)
    data = None
    if os.path.exists(out_json):
        with open(out_json) as f:
            data = json.load(f)
    return rc, data, logpath


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--sdists", required=True, help="directory holding pyftpdlib-*.tar.gz and paramiko-*.tar.gz")
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", default=None)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--suite", action="append", choices=sorted(SUITES))
    ap.add_argument("--suite-timeout", type=int, default=600)
    ap.add_argument("--test-timeout", type=int, default=60)
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    ap.add_argument("pytest_args", nargs="*", help="extra pytest args (after --)")
    args = ap.parse_args()
    suites = args.suite or DEFAULT_SUITES
    binary = os.path.abspath(args.bin)
    work = os.path.abspath(args.work)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    results_dir = os.path.join(work, "results")
    os.makedirs(results_dir)
    out = os.path.abspath(args.out or os.path.join(work, "results.json"))

    if not os.access(binary, os.X_OK):
        log(f"gatehouse binary not found or not executable: {binary}")
        return 1
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
    srcs = {}
    for sdist, ver in (("pyftpdlib", PYFTPDLIB_VERSION), ("paramiko", PARAMIKO_VERSION)):
        tgz = os.path.join(args.sdists, f"{sdist}-{ver}.tar.gz")
        if not os.path.exists(tgz):
            log(f"missing sdist {tgz}")
            return 1
        srcs[sdist] = extract(tgz, os.path.join(work, "src"))
    data_root = os.path.join(work, "data")
    os.makedirs(data_root)

    cert = os.path.join(os.path.dirname(os.path.dirname(HERE)), "fixtures", "tls", "cert.pem")
    key = os.path.join(os.path.dirname(os.path.dirname(HERE)), "fixtures", "tls", "key.pem")
    hashes = (hash_password(binary, FTP_PASSWORD), hash_password(binary, SFTP_PASSWORD),
              hash_password(binary, ANON_PASSWORD))
    v6 = True
    try:
        free_port("::1", socket.AF_INET6)
    except OSError:
        v6 = False
    specs = [
        ("main", dict(tls=False, sftp=True)),
        ("tlsreq", dict(tls=True)),
        ("maxcons", dict(tls=False, limits={"max_connections": "2"})),
        ("perip", dict(tls=False, limits={"max_connections_per_ip": "3"})),
        ("ban1", dict(tls=False, limits={"login_failures": "{ max = 1, window_secs = 60, ban_secs = 1, account_max = 0 }"})),
        ("ban3", dict(tls=False, limits={"login_failures": "{ max = 3, window_secs = 60, ban_secs = 1, account_max = 0 }"})),
    ]
    if v6:
        specs.append(("v6", dict(tls=False, listen_host="::1")))
    ranges = passive_ranges(len(specs))
    locpath = make_locale(work)
    instances = {}
    status = 0
    summary = []
    all_results = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                   "gatehouse_version": version, "binary": binary,
                   "pyftpdlib": PYFTPDLIB_VERSION, "paramiko": PARAMIKO_VERSION, "suites": {}}
    try:
        for (name, kw), pasv in zip(specs, ranges):
            inst = Instance(name, work, data_root, binary, hashes, pasv, cert, key, **kw)
            inst.check()
            inst.start()
            instances[name] = inst
        for inst in instances.values():
            inst.wait()
            log(f"gatehouse {inst.name}: ftp {inst.ftp_host}:{inst.ftp_port}"
                + (f", sftp 127.0.0.1:{inst.sftp_port}" if inst.sftp_port else "") + f" (pid {inst.proc.pid})")
        for name in suites:
            rc, data, logpath = run_suite(name, args, srcs, data_root, instances, results_dir, locpath)
            broken = rc in (2, 3, 4, 5, 124, 137) or data is None or data["counts"].get("collection_error")
            if data is None:
                line = f"{name}: harness error (pytest exit {rc}, no results; see {logpath})"
            else:
                c = data["counts"]
                line = (f"{name}: {c['passed']} passed, {c['failed']} failed, {c['error']} errors, "
                        f"{c['skipped']} skipped, {c['excluded']} excluded (pytest exit {rc})")
                data["log"] = logpath
                data["pytest_exit"] = rc
                all_results["suites"][name] = data
            if broken:
                line += "  <-- HARNESS PROBLEM"
                status = 1
            summary.append(line)
        for inst in instances.values():
            if inst.proc.poll() is not None:
                summary.append(f"gatehouse {inst.name} died during the run (exit {inst.proc.returncode}); "
                               f"see {inst.logfile}")
                status = 1
    except Exception as e:  # harness broke
        log(f"HARNESS ERROR: {e}")
        status = 1
    finally:
        for inst in instances.values():
            inst.stop()
        all_results["gateway_logs"] = {n: i.logfile for n, i in instances.items()}
        with open(out, "w") as f:
            json.dump(all_results, f, indent=1, sort_keys=True)
    print()
    print(f"gatehouse: {version} ({binary})")
    for line in summary:
        print(line)
    print(f"per-test outcomes: {out}")
    return status


if __name__ == "__main__":
    sys.exit(main())
