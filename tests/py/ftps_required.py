"""FTPS with `required = true`: every command that sets up or uses a data connection needs
PROT P (RFC 4217 section 9: 534/521), not only PASV. Stock ftplib.FTP_TLS, user acme/secret.

usage: ftps_required.py PORT
"""
import ftplib
import sys


def refused(ftp, cmd):
    try:
        reply = ftp.sendcmd(cmd)
    except ftplib.error_perm as e:
        assert str(e)[:3] in ("534", "521"), (cmd, str(e))
        return
    raise AssertionError(f"{cmd} without PROT P was accepted: {reply}")


def main():
    port = int(sys.argv[1])
    ftp = ftplib.FTP_TLS()
    ftp.connect("127.0.0.1", port, timeout=30)
    ftp.auth()
    ftp.login("acme", "secret")
    for cmd in ("EPSV", "PASV", "PORT 127,0,0,1,4,1", "EPRT |1|127.0.0.1|1025|"):
        if cmd.startswith("EPRT"):
            # libunftp does not implement EPRT at all: it must not open anything either.
            try:
                ftp.sendcmd(cmd)
            except ftplib.error_perm:
                continue
            raise AssertionError("EPRT accepted")
        refused(ftp, cmd)
    ftp.prot_p()
    assert ftp.sendcmd("EPSV").startswith("229")
    # Back to clear data after a passive port was opened: the transfer itself is refused.
    ftp.sendcmd("PROT C")
    refused(ftp, "LIST")
    refused(ftp, "STOR x.txt")
    ftp.prot_p()
    names = ftp.nlst()
    print("protected listing ok:", names)
    ftp.quit()


if __name__ == "__main__":
    main()
