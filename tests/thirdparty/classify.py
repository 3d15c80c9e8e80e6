#!/usr/bin/env python3
"""Turn a harness results.json into the per-test failure table of RESULTS.md.

  classify.py RESULTS_JSON > table.md

Every failing/erroring test of every suite is listed, grouped by upstream test (the FTPS
`...TLSMixin` copies and pyftpdlib's NoSendfile/CustomIO re-runs of the same test body are one
row, with the variants named), with the category and reason from CLASSES below. A failure with
no entry is printed as UNCLASSIFIED, so a changed gateway shows up here.

Categories:
  A   gateway bug (RFC violation, wrong reply/sequence, connection dropped, hang)
  A-  gateway gap: an optional command/behaviour not implemented, or a minor deviation
  B   unsupported by design (active mode, anonymous, SITE CHMOD / chmod, symlinks, ASCII mode,
      SFTP truncate)
  C   harness/adaptation, or the test asserts pyftpdlib's own behaviour/wording where the
      gateway's answer is also correct
"""

import json
import re
import sys

CLASSES = {
    # Reasons describe what fails with the binary of f8fb15b (run of 2026-12-01); "strict" = the
    # upstream test as written, "lenient" = the pass that checks only the exception type/code.
    # Only failing tests are printed; tests that pass have no entry.
    # ---- pyftpdlib: gateway bugs (A) --------------------------------------------------------
    ("TestFtpStoreData", "test_quit_during_transfer"):
        ("A", "QUIT during STOR: '221 Bye! (closing after the transfer)', then '226 File successfully "
              "written' as wanted, but the session is not closed at once: the NOOP sent right after the "
              "226 gets '200 Successfully did nothing' (quit.rs polls 'transferring' every 20 ms; an MKD "
              "sent there is executed). About 6 in 100 hand tries, QUIT sent just after the 150 is "
              "answered as if idle ('221 Bye!') and the connection closes with no 226 (bug 1)"),
    ("TestFtpFsOperations", "test_rmd"):
        ("A", "in this run strict-only wording: RMD / -> '550 Directory not empty' (home not empty) "
              "vs 'Can't remove root directory'; but what the step checks is broken: with an empty "
              "home, RMD / answers '250 Successfully removed' and deletes the user's home directory "
              "(SFTP rmdir '/' too); every later command of that user then fails 550 (bug 2)"),
    ("TestFTPS", "test_auth"):
        ("A", "fails first on re-login (plain login, then AUTH TLS + USER: '503 Please create a new "
              "connection to switch user', A-); its last step, AUTH TLS on a control connection "
              "already in TLS, answers '234 Upgrading to TLS' and starts a nested handshake: the next "
              "command is read as a corrupt ClientHello, the server sends a TLS alert and closes "
              "(pyftpdlib/RFC 4217: 503) (bug 3)"),
    # ---- pyftpdlib: gaps and minor deviations (A-) ------------------------------------------
    ("TestConfigurableOptions", "test_max_login_attempts"):
        ("A-", "the test logs in, then logs in again as 'wrong' on the same connection: 'USER wrong' "
               "-> '503 Please create a new connection to switch user', so no failed attempt is "
               "counted and the session stays open (re-login is optional in RFC 959)"),
    ("TestFtpAuthentication", "test_rein"): ("A-", "REIN not implemented: '500 Command not implemented'"),
    ("TestFtpAuthentication", "test_rein_during_transfer"):
        ("A-", "REIN during RETR is answered at once, '500 Command not implemented' (REIN missing)"),
    ("TestFtpAuthentication", "test_user"):
        ("A-", "USER after login: '503 Please create a new connection to switch user' (re-login not supported)"),
    ("TestFtpAuthentication", "test_user_during_transfer"):
        ("A-", "USER during RETR is answered at once, '503 Please create a new connection to switch "
               "user' (re-login not supported)"),
    ("TestFtpAuthentication", "test_wrong_cmds_order"):
        ("A-", "strict: wording ('503 Please supply a username first'); lenient: PASS when already "
               "logged in -> '530 Please open a new connection to re-authenticate' (530 = not logged "
               "in; a sequence error is 503)"),
    ("TestFtpCmdsSemantic", "test_auth_cmds"): ("A-", "starts with REIN to log out: '500 Command not implemented'"),
    ("TestFtpCmdsSemantic", "test_no_auth_cmds"): ("A-", "starts with REIN to log out: '500 Command not implemented'"),
    ("TestFtpStoreData", "test_stou_orphaned_file"):
        ("A-", "logs in again (as the read-only anonymous stand-in) on the same connection: '503 "
               "Please create a new connection to switch user'"),
    ("TestFTPS", "test_pbsz"):
        ("A-", "strict: wording only ('503 PBSZ needs AUTH TLS first' vs pyftpdlib's text); lenient: "
               "then logs in again after AUTH TLS: 503 re-login refused"),
    ("TestFTPS", "test_prot"):
        ("A-", "strict: wording only ('503 PROT needs AUTH TLS first'); lenient: then logs in again "
               "after AUTH TLS: 503 re-login refused (PROT P/C and LIST over TLS work by hand)"),
    ("TestFtpDummyCmds", "test_opts_feat"):
        ("A-", "'opts mlst bad_fact' and 'opts mlst type ;' -> 200 (pyftpdlib: 501); FEAT offers "
               "'MLST type*;size*;modify*;' (no perm fact); OPTS MLST echoes the selection but does not "
               "apply it: MLST still returns all facts and FEAT keeps every '*'"),
    ("TestFtpListingCmds", "test_mlst"):
        ("A-", "first: 'MLST <relative>' echoes the name as given, not '/name' (pyftpdlib ties the "
               "qualified form to TVFS, C); later steps: 'MLST nosuch' -> '550 storage error: 550 "
               "Permanent file not available' (internal text), and OPTS MLST type; is not applied "
               "(MLST still returns type;size;modify;)"),
    ("TestFtpListingCmds", "test_mlsd_all_facts"):
        ("A-", "OPTS MLST type;size;modify; + MLST work; the test then wants the optional facts "
               "perm, unique, unix.mode/uid/gid, which gatehouse does not provide"),
    ("TestFtpStoreData", "test_failing_rest_on_stor"):
        ("A-", "strict only (lenient passes, REST marker is reset): REST 10 + STOR of a missing file "
               "-> '502 Not supported: write offset beyond the end of the file' before the 150; "
               "pyftpdlib says 550 'No such file', RFC 3659 5.5 suggests 554; 502 means 'command not "
               "implemented'"),
    # ---- pyftpdlib: unsupported by design (B) -----------------------------------------------
    ("TestCornerCases", "test_active_conn_error"): ("B", "PORT (active mode): '502 Active mode not enabled.'"),
    ("TestCornerCases", "test_port_race_condition"): ("B", "PORT (active mode): '502 Active mode not enabled.'"),
    ("TestFtpAbort", "test_abor_port"): ("B", "PORT (active mode): '502 Active mode not enabled.'"),
    ("TestFtpStoreData", "test_stor_active"): ("B", "PORT (active mode): '502 Active mode not enabled.'"),
    ("TestFtpStoreData", "test_stou"):
        ("B", "sends STOU before opening its data connection with makeport() (active mode): "
              "'425 No data connection established'; STOU over PASV works"),
    ("TestIPv4Environment", "test_eprt"): ("B", "EPRT (active mode): '500 Command not implemented' (pyftpdlib checks 501 for bad syntax)"),
    ("TestIPv4Environment", "test_eprt_v4"): ("B", "EPRT (active mode): '500 Command not implemented'"),
    ("TestIPv4Environment", "test_port_v4"): ("B", "PORT (active mode): '502 Active mode not enabled.'"),
    ("TestIPv6Environment", "test_eprt"): ("B", "EPRT (active mode): '500 Command not implemented'"),
    ("TestIPv6Environment", "test_eprt_v6"): ("B", "EPRT (active mode): '500 Command not implemented'"),
    ("TestTimeouts", "test_disabled_port_timeout"): ("B", "makeport() (PORT): '502 Active mode not enabled.'"),
    ("ThreadedFTPTests", "test_permit_privileged_ports"):
        ("B", "PORT (active mode) refused with 502 before any privileged-port check"),
    ("TestFtpAuthentication", "test_anon_auth"): ("B", "anonymous login: '530 Authentication failed'"),
    ("TestFtpFsOperations", "test_site_chmod"): ("B", "SITE CHMOD: '502 Unknown SITE command'"),
    ("TestFtpFsOperations", "test_size"): ("B", "SIZE in ASCII mode answered (213); TYPE A is binary ('200 Always in binary mode')"),
    ("TestFtpDummyCmds", "test_rest"):
        ("B", "strict: wording ('501 Invalid Parameter' vs 'needs an argument'); lenient: every bad "
              "REST gets 501 and the session survives, then REST in ASCII mode is accepted (350): no "
              "ASCII mode"),
    ("TestFtpRetrieveData", "test_retr_ascii"): ("B", "ASCII mode conversion (TYPE A sends bytes unchanged)"),
    ("TestFtpStoreData", "test_stor_ascii"): ("B", "ASCII mode conversion (TYPE A stores bytes unchanged)"),
    ("TestFtpStoreData", "test_stor_ascii_2"): ("B", "ASCII mode conversion (TYPE A stores bytes unchanged)"),
    # ---- pyftpdlib: wording, implementation-defined, harness (C) ----------------------------
    ("TestConfigurableOptions", "test_max_connections"):
        ("C", "instance maxcons (max_connections = 2) refuses the 3rd control connection with 421; "
              "the test then expects pyftpdlib's max_cons to count a PASV listener too (gatehouse "
              "counts control connections only); its last part is active mode (B)"),
    ("TestConfigurableOptions", "test_max_connections_per_ip"):
        ("C", "strict only: 4th connection refused, '421 Too many connections from your address, "
              "try again later' vs pyftpdlib's wording"),
    ("TestFtpAuthentication", "test_max_auth"):
        ("C", "instance ban3 (login_failures max = 3): after the 3rd failure the address is banned "
              "(the right password is then refused with 530) but the connection stays open ('530 "
              "Please authenticate'); pyftpdlib disconnects"),
    ("TestFtpAbort", "test_abor_no_data"):
        ("C", "ABOR with no transfer: '226 No transfer to abort' (RFC 959 allows 225 or 226; pyftpdlib 225)"),
    ("TestFtpAbort", "test_abor_pasv"): ("C", "ABOR after PASV, no transfer: 226 (RFC 959 allows 225/226; pyftpdlib 225)"),
    ("TestFtpAbort", "test_oob_abor"): ("C", "Telnet IP/Synch + ABOR handled; 226 where pyftpdlib says 225 (both RFC-valid)"),
    ("TestFtpCmdsSemantic", "test_arg_cmds"):
        ("C", "exact pyftpdlib text: commands without their argument get '501 Invalid Parameter' "
              "and the session survives; ALLO -> '202 Ignored', EPRT -> 500, SITE -> 502, USER -> 503"),
    ("TestFtpCmdsSemantic", "test_no_arg_cmds"):
        ("C", "exact pyftpdlib text: 'abor arg' etc. -> '501 Invalid Parameter', session survives; "
              "'rein arg'/'xcup arg' -> 500 (not implemented), 'syst arg' -> 215"),
    ("TestFtpDummyCmds", "test_feat"): ("C", "TVFS not advertised (optional, RFC 3659 section 6)"),
    ("TestFtpDummyCmds", "test_help"): ("C", "'HELP ?!?' answered 214 like plain HELP (pyftpdlib: 501); not required"),
    ("TestFtpDummyCmds", "test_mode"):
        ("C", "strict only: 'mode b' -> '504 Only Stream transfer mode is supported' vs 'Unimplemented'"),
    ("TestFtpDummyCmds", "test_stru"):
        ("C", "strict only: 'stru p' -> '504 Only File structure mode is supported' vs 'Unimplemented'"),
    ("TestFtpDummyCmds", "test_site"): ("C", "strict only: 'site' -> '502 Unknown SITE command' vs 'needs an argument'"),
    ("TestFtpDummyCmds", "test_site_help"): ("C", "SITE HELP is a pyftpdlib SITE command ('502 Unknown SITE command')"),
    ("TestFtpDummyCmds", "test_type"):
        ("C", "'type l7' -> '501 Unknown type' (pyftpdlib accepts L7/L8 without the space RFC 959 "
              "requires); 'TYPE L 8' works"),
    ("TestFtpFsOperations", "test_cwd"):
        ("C", "bare 'CWD' -> '501 Invalid Parameter' (pyftpdlib: go to /; RFC 959 CWD takes a path)"),
    ("TestFtpFsOperations", "test_invalid_mfmt_timeval"):
        ("C", "strict only: '501 Time must be YYYYMMDDHHMMSS (UTC)' vs 'Invalid time format'"),
    ("TestFtpFsOperations", "test_missing_mfmt_timeval_arg"):
        ("C", "strict only: '501 Invalid Parameter' vs 'Syntax error'"),
    ("TestFtpFsOperations", "test_mdtm"): ("C", "strict only: '550 No such file or directory' vs 'not retrievable'"),
    ("TestFtpFsOperations", "test_rnfr_rnto"): ("C", "strict only: RNTO without RNFR -> '503 RNFR first' vs 'use RNFR first'"),
    ("TestFtpListingCmds", "test_stat"):
        ("C", "exact text: 'STAT *' -> '550 No such file or directory' vs '550 Globbing not "
              "supported.'; STAT / and STAT <file> answer 213 listings"),
    ("TestFtpRetrieveData", "test_restore_on_retr"):
        ("C", "sends REST size+1 / RETR with no data connection and expects the offset error first; "
              "gatehouse says 425 first (order is implementation-defined). With a data connection: "
              "'550 File not found' before the 150 (the file exists: misleading text), marker reset"),
    ("TestFtpStoreData", "test_rest_on_stor"):
        ("C", "sends REST size+1 / STOR with no data connection: 425 first (order). With one: "
              "'502 Not supported: write offset beyond the end of the file' before the 150; resuming "
              "inside the file works"),
    ("TestFtpStoreData", "test_appe_rest"):
        ("C", "strict only: REST + APPE with no data connection: 425 first (pyftpdlib refuses APPE "
              "after REST first); with one, APPE appends and ignores REST"),
    ("TestFtpStoreData", "test_stou_rest"):
        ("C", "strict only: REST + STOU with no data connection: 425 first; with one: '502 Not "
              "supported: write offset beyond the end of the file' (pyftpdlib 450)"),
    ("TestFTPS", "test_feat"): ("C", "'AUTH SSL' not advertised (deprecated; AUTH SSL answers 504); AUTH TLS/PBSZ/PROT are"),
    ("TestFTPS", "test_tls_control_required"):
        ("C", "instance tlsreq: USER before AUTH TLS -> '534 A TLS connection is required on the "
              "control channel' (RFC 4217's code) where pyftpdlib says 550"),
    ("TestFTPS", "test_tls_data_required"):
        ("C", "instance tlsreq: without PROT P, PASV is refused with '534 A TLS connection is "
              "required on the data channel' (RFC 4217-valid) where pyftpdlib refuses LIST with 550"),
    # ---- paramiko ---------------------------------------------------------------------------
    ("TestSFTP", "test_fsetstat"):
        ("A", "r+ open works; f.chmod() answers OK without effect (mode stays 0644, by design); "
              "beyond that, FSTAT on the fresh r+ handle reports size 0 (the next write offset, not "
              "the file's 1024 bytes) and f.truncate(512) (FSETSTAT size) answers SSH_FX_OK but "
              "changes nothing, on any handle, while SETSTAT by path refuses truncation (bug 4)"),
    ("TestSFTP", "test_setstat"):
        ("A-", "chmod answers OK without effect (mode stays 0644; by design, B); then utime sets "
               "mtime but not atime (stat reports atime = mtime); truncate by path is refused "
               "('truncating files is not supported', B)"),
    ("TestSFTP", "test_check"): ("A-", "check-file extension not supported ('extension not supported')"),
    ("TestSFTP", "test_symlink"): ("B", "symlinks: 'symbolic links are not supported'"),
}

VARIANT = re.compile(r"(TLSMixin|NoSendfile|DataCustomIO|WithCustomIO|CustomIO)$")


def base_class(cls):
    cls = cls.replace("TestTFtp", "TestFtp")
    cls = re.sub(r"TLSMixin$", "", cls)
    cls = re.sub(r"(NoSendfile|WithCustomIO|CustomIO)$", "", cls)
    return cls


def main():
    data = json.load(open(sys.argv[1]))
    rows = {}
    for suite, s in data["suites"].items():
        for nodeid, t in s["tests"].items():
            if t["outcome"] in ("passed", "skipped", "xfailed"):
                continue
            parts = nodeid.split("::")
            cls, meth = (parts[1], parts[2]) if len(parts) >= 3 else ("", parts[-1])
            key = (base_class(cls), meth)
            r = rows.setdefault(key, {"where": [], "msg": t.get("message", "")})
            r["where"].append(f"{suite}:{cls}")
    print("| test | category | where it failed | reason |")
    print("|---|---|---|---|")
    unclassified = 0
    order = {"A": 0, "A-": 1, "B": 2, "C": 3}
    for key in sorted(rows, key=lambda k: (order.get(CLASSES.get(k, ("?",))[0], 9), k)):
        cat, why = CLASSES.get(key, ("UNCLASSIFIED", rows[key]["msg"][:200].replace("\n", " ")))
        if cat == "UNCLASSIFIED":
            unclassified += 1
        where = ", ".join(sorted(set(w.replace("pyftpdlib-functional", "ftp").replace("paramiko-sftp", "sftp")
                                     for w in rows[key]["where"])))
        print(f"| {key[0]}::{key[1]} | {cat} | {where} | {why.replace('|', '/')} |")
    print(f"\n{len(rows)} distinct failing tests, {unclassified} unclassified.")


if __name__ == "__main__":
    main()
