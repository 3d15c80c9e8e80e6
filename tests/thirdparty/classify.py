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
  B   unsupported by design (active mode, anonymous, chmod, symlinks, ASCII, OPTS MLST...,
      and the streaming-upload limits the SFTP server itself names)
  C   harness/adaptation, or the test asserts pyftpdlib's own behaviour/wording where the
      gateway's answer is also correct
"""

import json
import re
import sys

CLASSES = {
    # ---- pyftpdlib ------------------------------------------------------------------------
    ("TestConfigurableOptions", "test_max_connections"):
        ("C", "gatehouse (max_connections = 2) does refuse the 3rd control connection with 421; "
              "the test then expects pyftpdlib's max_cons to count PASV data sockets too (gatehouse "
              "does not), and its last part is active mode (B)"),
    ("TestConfigurableOptions", "test_max_connections_per_ip"):
        ("C", "strict only: 4th connection correctly refused, 421 'Too many connections from your "
              "address, try again later' vs pyftpdlib's wording (passes in the lenient pass)"),
    ("TestConfigurableOptions", "test_max_login_attempts"):
        ("A-", "the test logs in, then tries a 2nd login on the same connection; USER after login "
               "is refused (503 'Please create a new connection to switch user'), so no failed "
               "attempt is made (re-login is optional in RFC 959)"),
    ("TestConfigurableOptions", "test_use_gmt_times"):
        ("A", "STAT <file> answers '451 Local error' (bug 3)"),
    ("TestCornerCases", "test_active_conn_error"): ("B", "PORT (active mode) refused: 502"),
    ("TestCornerCases", "test_port_race_condition"): ("B", "PORT (active mode) refused: 502"),
    ("TestFtpAbort", "test_abor_during_transfer"):
        ("A", "ABOR during RETR is not acted on: no 426, transfer runs to the end, then "
              "'226 Closed data channel' + '226 Successfully sent' (bug 1)"),
    ("TestFtpAbort", "test_abor_no_data"):
        ("C", "ABOR with no transfer: '226 Data channel already closed'; RFC 959 allows 225 or "
              "226, pyftpdlib uses 225"),
    ("TestFtpAbort", "test_abor_pasv"):
        ("C", "ABOR after PASV, no transfer: 226 (RFC 959 allows 225/226; pyftpdlib says 225)"),
    ("TestFtpAbort", "test_abor_port"): ("B", "PORT (active mode) refused"),
    ("TestFtpAbort", "test_oob_abor"):
        ("C", "Telnet IP/Synch + ABOR handled fine; reply 226 where pyftpdlib says 225 (both RFC-valid)"),
    ("TestFtpAuthentication", "test_anon_auth"): ("B", "anonymous login"),
    ("TestFtpAuthentication", "test_max_auth"):
        ("C", "instance ban3 (login_failures max = 3): after the 3rd failure the address is banned "
              "(even the right password is then refused on that connection) but the connection "
              "stays open ('530 Please authenticate'); pyftpdlib disconnects. Closing with 421 once "
              "banned would be friendlier; not a protocol bug"),
    ("TestFtpAuthentication", "test_rein"): ("A-", "REIN not implemented: '500 Command not implemented'"),
    ("TestFtpAuthentication", "test_rein_during_transfer"):
        ("A", "REIN during RETR gets no reply until the transfer has ended (bug 1: commands other "
              "than NOOP are held during a transfer); and REIN is not implemented (500)"),
    ("TestFtpAuthentication", "test_user"):
        ("A-", "USER after login refused: '503 Please create a new connection to switch user'"),
    ("TestFtpAuthentication", "test_user_during_transfer"):
        ("A", "USER during RETR gets no reply until the transfer has ended (bug 1); then 503"),
    ("TestFtpAuthentication", "test_wrong_cmds_order"):
        ("A-", "strict: wording only ('503 Please supply a username first'); lenient: PASS when "
               "already logged in answers '530 Please open a new connection to re-authenticate' "
               "(530 = not logged in; RFC 959 sequence error is 503)"),
    ("TestFtpCmdsSemantic", "test_arg_cmds"):
        ("A", "compares pyftpdlib's exact text (C), but shows bug 2: the first '501 Invalid "
              "Parameter' (e.g. APPE/DELE/MKD/CWD without argument) closes the control connection; "
              "ALLO without argument '202 Ignored' is fine"),
    ("TestFtpCmdsSemantic", "test_auth_cmds"): ("A-", "needs REIN to log out (500 not implemented)"),
    ("TestFtpCmdsSemantic", "test_no_arg_cmds"):
        ("A", "compares pyftpdlib's exact text (C), but 'ABOR arg' -> 501 then the connection is "
              "reset (bug 2)"),
    ("TestFtpCmdsSemantic", "test_no_auth_cmds"): ("A-", "needs REIN to log out (500 not implemented)"),
    ("TestFtpDummyCmds", "test_feat"):
        ("C", "TVFS not advertised (optional, RFC 3659 section 6)"),
    ("TestFtpDummyCmds", "test_help"):
        ("C", "'HELP ?!?' answered 214 (pyftpdlib: 501); the RFC does not require an error"),
    ("TestFtpDummyCmds", "test_mode"):
        ("A", "'mode s' (lower case) -> '501 Invalid Parameter' and the connection is closed; "
              "'MODE S' works (bugs 2, 4)"),
    ("TestFtpDummyCmds", "test_opts_feat"):
        ("A", "strict: wording; lenient: 'opts mlst bad_fact' -> 501 then connection closed (bug 2); "
              "later parts need OPTS MLST fact selection (B) and FEAT's MLST line has no fact list (bug 9)"),
    ("TestFtpDummyCmds", "test_rest"):
        ("A", "strict: wording; lenient: 'rest' without argument -> 501 then the connection is "
              "closed (bug 2); the REST-in-ASCII part is B"),
    ("TestFtpDummyCmds", "test_site"):
        ("C", "strict only: 'site' -> '502 Unknown SITE command' vs pyftpdlib's text (lenient passes)"),
    ("TestFtpDummyCmds", "test_site_help"): ("C", "SITE HELP is a pyftpdlib SITE command (SITE is server-specific)"),
    ("TestFtpDummyCmds", "test_stru"):
        ("A", "'stru f' (lower case) -> '501 Invalid Parameter' and the connection is closed; "
              "'STRU F' works (bugs 2, 4)"),
    ("TestFtpDummyCmds", "test_type"):
        ("C", "'type l7' -> '501 Unknown type' (pyftpdlib accepts L7/L8 without the space); "
              "'TYPE L 8' works"),
    ("TestFtpFsOperations", "test_cwd"):
        ("C", "strict: '550 File not found' vs 'No such file'; lenient: bare 'CWD' (pyftpdlib: go "
              "to /) -> 501, and that 501 closes the connection (bug 2)"),
    ("TestFtpFsOperations", "test_invalid_mfmt_timeval"): ("A-", "MFMT not implemented (500)"),
    ("TestFtpFsOperations", "test_mdtm"): ("C", "strict only: wording ('550 File not found'); lenient passes"),
    ("TestFtpFsOperations", "test_mfmt"): ("A-", "MFMT not implemented (500)"),
    ("TestFtpFsOperations", "test_missing_mfmt_timeval_arg"): ("A-", "MFMT not implemented (500, not 501)"),
    ("TestFtpFsOperations", "test_mkd"):
        ("A", "MKD reply '257 /name' has no quotes; RFC 959 requires '257 \"/name\"', ftplib.mkd() "
              "returns '' (bug 5)"),
    ("TestFtpFsOperations", "test_rmd"): ("C", "strict only: wording; lenient passes"),
    ("TestFtpFsOperations", "test_rnfr_rnto"):
        ("A-", "strict: wording; lenient: RNTO without RNFR -> '450 Please tell me what file you "
               "want to rename first' (4xx transient; RFC 959: 503)"),
    ("TestFtpFsOperations", "test_site_chmod"): ("B", "SITE CHMOD"),
    ("TestFtpFsOperations", "test_size"): ("B", "SIZE in ASCII mode (always binary)"),
    ("TestFtpListingCmds", "test_list"):
        ("A", "LIST <file> -> 150 then '550 File not found' (should list that file); errors come "
              "after the 150 mark (over TLS: SSL 'shutdown while in init') (bug 6)"),
    ("TestFtpListingCmds", "test_mlsd"):
        ("A-", "strict: wording; lenient: MLSD <file> -> 550 where RFC 3659 7.2 wants 501; over "
               "TLS the 150-then-error sequence breaks the data channel (bug 6)"),
    ("TestFtpListingCmds", "test_mlsd_all_facts"):
        ("B", "OPTS MLST <facts> -> 501 (and the 501 closes the connection, bug 2)"),
    ("TestFtpListingCmds", "test_mlst"):
        ("C", "MLST <relative> echoes the name as given, not '/name'; pyftpdlib ties the fully "
              "qualified form to TVFS, which gatehouse does not advertise; later parts are OPTS MLST (B)"),
    ("TestFtpListingCmds", "test_nlst"):
        ("A", "NLST <file> -> 150 then '550 Directory not found' (should name the file) (bug 6)"),
    ("TestFtpListingCmds", "test_stat"):
        ("A", "STAT <file> -> '451 Local error'; STAT <dir> -> '200 ...' (RFC 959: 211/212/213) (bug 3)"),
    ("TestFtpRetrieveData", "test_restore_on_retr"):
        ("C", "sends REST size+1 / RETR with no data connection and expects the offset error first; "
              "gatehouse says 425 first (order is implementation-defined). With a data connection "
              "gatehouse answers 150 then '550 File not found' (bug 7)"),
    ("TestFtpRetrieveData", "test_retr"): ("C", "strict only: wording ('550 File not found'); lenient passes"),
    ("TestFtpRetrieveData", "test_retr_ascii"): ("B", "ASCII mode conversion"),
    ("TestFtpStoreData", "test_appe_rest"):
        ("C", "expects REST+APPE refused before a data connection exists; gatehouse says 425 first "
              "(with one it appends, ignoring REST: acceptable)"),
    ("TestFtpStoreData", "test_failing_rest_on_stor"):
        ("A", "REST 10 + STOR of a missing file is accepted (150) and fails after the data "
              "connection with '502 Command not implemented'; the REST marker then sticks and "
              "every later STOR of the session fails 502 (bug 7)"),
    ("TestFtpStoreData", "test_quit_during_transfer"):
        ("A", "QUIT during STOR: '221 Bye!' and close at once; RFC 959 wants the transfer "
              "reply (226) first, then close (bug 8)"),
    ("TestFtpStoreData", "test_rest_on_stor"):
        ("C", "REST size+1 / STOR sent without a data connection expects the offset error first; "
              "425 first (order). With a data connection: 502 + sticky marker (bug 7)"),
    ("TestFtpStoreData", "test_stor_active"): ("B", "PORT (active mode)"),
    ("TestFtpStoreData", "test_stor_ascii"): ("B", "ASCII mode conversion"),
    ("TestFtpStoreData", "test_stor_ascii_2"): ("B", "ASCII mode conversion"),
    ("TestFtpStoreData", "test_stou"): ("B", "uses makeport() (PORT); STOU itself works over PASV"),
    ("TestFtpStoreData", "test_stou_orphaned_file"):
        ("A-", "re-logs in (as the read-only anonymous stand-in) on the same connection: 503 re-login refused"),
    ("TestFtpStoreData", "test_stou_rest"):
        ("C", "expects REST+STOU refused before a data connection exists; 425 first. With one: "
              "'502 Command not implemented' (pyftpdlib 450)"),
    ("TestIPv4Environment", "test_eprt"): ("B", "EPRT (active mode) refused: 500"),
    ("TestIPv4Environment", "test_eprt_v4"): ("B", "EPRT (active mode) refused: 500"),
    ("TestIPv4Environment", "test_epsv"):
        ("A-", "'EPSV 2' on an IPv4 control connection answered 229 (RFC 2428: 522); 'EPSV 3' "
               "also 229 (bug 10)"),
    ("TestIPv4Environment", "test_epsv_all"):
        ("A", "'EPSV ALL' treated as plain EPSV (229, opens a listener) and PASV stays allowed "
              "(RFC 2428 section 4) (bug 10)"),
    ("TestIPv4Environment", "test_port_v4"): ("B", "PORT (active mode)"),
    ("TestIPv6Environment", "test_eprt"): ("B", "EPRT (active mode) refused: 500"),
    ("TestIPv6Environment", "test_eprt_v6"): ("B", "EPRT (active mode) refused: 500"),
    ("TestIPv6Environment", "test_epsv"): ("A-", "'EPSV 1' on an IPv6 control connection answered 229 (RFC 2428: 522) (bug 10)"),
    ("TestIPv6Environment", "test_epsv_all"):
        ("A", "after 'EPSV ALL' (answered as EPSV), PASV on the IPv6 control connection closes "
              "the connection with no reply (bugs 10, 11)"),
    ("TestIPv6Environment", "test_port_v6"): ("B", "PORT (active mode)"),
    ("TestIPv6Environment", "test_pasv_v6"): ("A", "PASV on an IPv6 control connection: connection closed, no reply (bug 11)"),
    ("TestTimeouts", "test_disabled_port_timeout"): ("B", "makeport() (PORT)"),
    ("ThreadedFTPTests", "test_permit_privileged_ports"): ("B", "PORT (active mode) refused before the privileged-port check"),
    ("TestFTPS", "test_auth"):
        ("A-", "plain login then login() again (AUTH TLS + USER): re-login refused with 503"),
    ("TestFTPS", "test_feat"): ("C", "'AUTH SSL' not advertised (deprecated; AUTH SSL answers 504); AUTH TLS/PBSZ/PROT are"),
    ("TestFTPS", "test_pbsz"):
        ("A-", "PBSZ on a plaintext control connection answered '200 OK' (RFC 4217 section 8: 503) (bug 12)"),
    ("TestFTPS", "test_prot"):
        ("A", "'prot p' (lower case) -> 501 and the connection is closed (bugs 2, 4); 'PROT P' on "
              "a plaintext control connection is accepted (RFC 4217: 503) (bug 12)"),
    ("TestFTPS", "test_tls_control_required"):
        ("C", "instance tlsreq: USER before AUTH TLS refused with '534 A TLS connection is required "
              "on the control channel' (RFC 4217's code) where pyftpdlib says 550"),
    ("TestFTPS", "test_tls_data_required"):
        ("C", "instance tlsreq: LIST without PROT P refused with 534 (RFC 4217-valid) where pyftpdlib says 550"),
    ("TestFTPS", "test_unforseen_ssl_shutdown"):
        ("A-", "client sends TLS close_notify on the control connection; the server drops TCP "
               "without answering close_notify, client gets SSLEOFError (bug 13)"),
    # ---- paramiko -------------------------------------------------------------------------
    ("TestSFTP", "test_append"): ("B", "open 'a+' (read-write): 'read-write open is not supported; uploads stream into place'"),
    ("TestSFTP", "test_check"): ("A-", "check-file extension not supported ('extension not supported')"),
    ("TestSFTP", "test_flush_seek"): ("B", "seek back while writing: 'non-sequential write: this gateway streams uploads'"),
    ("TestSFTP", "test_folder"): ("C", "strict only: SSH_FX_NO_SUCH_FILE text 'no such file or directory' vs paramiko's 'No such file' (lenient passes)"),
    ("TestSFTP", "test_fsetstat"): ("B", "open 'r+' (read-write) not supported (streaming uploads)"),
    ("TestSFTP", "test_mkdir"): ("C", "strict only: status text 'no such file or directory' vs 'No such file' (lenient passes)"),
    ("TestSFTP", "test_readline_seek"): ("B", "open 'r+' (read-write) not supported (streaming uploads)"),
    ("TestSFTP", "test_rename"): ("C", "strict only: status text 'no such file or directory' vs 'No such file' (lenient passes)"),
    ("TestSFTP", "test_setstat"): ("B", "chmod: SETSTAT permissions answered OK but not applied (mode stays 0644); utime works, truncate refused"),
    ("TestSFTP", "test_symlink"): ("B", "symlinks ('symbolic links are not supported')"),
    ("TestSFTP", "test_write_seek"): ("B", "seek back while writing: close() fails 'non-sequential write'; the test's finally: remove() then masks it with FileNotFoundError"),
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
