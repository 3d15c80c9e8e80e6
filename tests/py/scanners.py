"""Third-party scanners against a live gateway: ssh-audit on the SFTP listener (no "fail"
finding, no CVE), sslyze on an HTTPS or explicit-FTPS listener (no SSL 2/3, TLS 1.0/1.1, no
known vulnerability, TLS 1.2 only with forward-secret AEAD suites, no compression). Prints one
summary line; exits non-zero with the findings otherwise.

usage: scanners.py ssh PORT
       scanners.py tls PORT [ftp]
"""
import json
import os
import subprocess
import sys
import tempfile

BIN = os.path.dirname(sys.executable)


def ssh(port):
    out = subprocess.run(
        [os.path.join(BIN, "ssh-audit"), "--skip-rate-test", "-j", "-p", str(port), "127.0.0.1"],
        capture_output=True, text=True, timeout=120,
    )
    report = json.loads(out.stdout)
    fails, warns = [], []
    for section in ("kex", "key", "enc", "mac"):
        for alg in report.get(section, []):
            notes = alg.get("notes", {})
            if notes.get("fail"):
                fails.append(f"{section} {alg['algorithm']}: {notes['fail']}")
            if notes.get("warn"):
                warns.append(alg["algorithm"])
    if report.get("cves"):
        fails.append(f"cves: {report['cves']}")
    if fails:
        raise SystemExit("ssh-audit failures:\n" + "\n".join(fails))
    names = lambda s: ",".join(a["algorithm"] for a in report.get(s, []))
    print(f"ssh-audit: 0 fail; kex={names('kex')} enc={names('enc')} mac={names('mac')} key={names('key')}; warn on: {','.join(warns) or 'none'}")


def tls(port, starttls=None):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "out.json")
        cmd = [os.path.join(BIN, "sslyze"), f"--json_out={path}"]
        if starttls:
            cmd.append(f"--starttls={starttls}")
        cmd.append(f"127.0.0.1:{port}")
        subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        report = json.load(open(path))
    server = report["server_scan_results"][0]
    if server["connectivity_status"] != "COMPLETED":
        raise SystemExit(f"sslyze could not connect: {server.get('connectivity_error_trace')}")
    r = server["scan_result"]
    problems = []
    for old in ("ssl_2_0", "ssl_3_0", "tls_1_0", "tls_1_1"):
        n = len(r[f"{old}_cipher_suites"]["result"]["accepted_cipher_suites"])
        if n:
            problems.append(f"{old} accepted ({n} suites)")
    tls12 = [c["cipher_suite"]["name"] for c in r["tls_1_2_cipher_suites"]["result"]["accepted_cipher_suites"]]
    for name in tls12:
        if not name.startswith("TLS_ECDHE_") or not ("GCM" in name or "CHACHA20" in name):
            problems.append(f"weak TLS 1.2 suite {name}")
    tls13 = [c["cipher_suite"]["name"] for c in r["tls_1_3_cipher_suites"]["result"]["accepted_cipher_suites"]]
    if not tls13:
        problems.append("no TLS 1.3")
    if r["heartbleed"]["result"]["is_vulnerable_to_heartbleed"]:
        problems.append("heartbleed")
    if r["openssl_ccs_injection"]["result"]["is_vulnerable_to_ccs_injection"]:
        problems.append("ccs injection")
    if "VULNERABLE" in r["robot"]["result"]["robot_result"] and "NOT_VULNERABLE" not in r["robot"]["result"]["robot_result"]:
        problems.append(f"robot {r['robot']['result']['robot_result']}")
    reneg = r["session_renegotiation"]["result"]
    if reneg["is_vulnerable_to_client_renegotiation_dos"]:
        problems.append("client renegotiation DoS")
    if r["tls_compression"]["result"]["supports_compression"]:
        problems.append("TLS compression (CRIME)")
    if problems:
        raise SystemExit("sslyze findings:\n" + "\n".join(problems))
    what = f"starttls {starttls}" if starttls else "https"
    print(f"sslyze ({what}): no SSL/TLS<1.2, TLS 1.2: {','.join(tls12)}; TLS 1.3: {','.join(tls13)}; not vulnerable to heartbleed, ccs, robot, renegotiation DoS, CRIME (only the self-signed test certificate is untrusted)")


def main():
    kind = sys.argv[1]
    if kind == "ssh":
        ssh(int(sys.argv[2]))
    elif kind == "tls":
        tls(int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None)
    else:
        raise SystemExit(f"unknown scanner {kind}")


if __name__ == "__main__":
    main()
