"""pytest plugin (-p gh_thirdparty_paramiko): run paramiko's unmodified SFTP client tests
(tests/test_sftp.py, optionally tests/test_sftp_big.py) against a live gatehouse SFTP listener.

How the adaptation works
- paramiko's tests/conftest.py defines `sftp_server`, a client Transport wired through an
  in-memory LoopSocket to an in-process paramiko SFTP server (StubSFTPServer, rooted at cwd).
  When that conftest module is registered (pytest parses conftest fixtures only later, when its
  directory is collected) we replace its `sftp_server` attribute with the fixture below, which
  opens a real TCP connection to gatehouse and logs in with password. The `sftp` fixture (and
  everything else in conftest) stays upstream's.
- The stub server is rooted at os.getcwd() and the `sftp` fixture creates/removes the test
  folder locally (shutil/os.mkdir): the harness runs pytest inside the directory that is the
  SFTP user's home on the gateway's local-disk backend, so those local operations are the
  server's files, as upstream assumes.
- User/password are upstream's ("slowdive"/"pygmalion"); the gateway config has that user.
- GH_LENIENT=1: the wording-insensitive pass (see gh_thirdparty_common.py): pytest.raises
  checks the exception type but not the server's message text.
- paramiko's own DEBUG logging (enabled by its conftest) is kept; a failure's record has the tail
  of the SFTP request log.
"""

import os
import socket

import pytest

from gh_thirdparty_common import Exclusions, Recorder, env_int, install_lenient_raises_if_asked

HOST = "127.0.0.1"
PORT = env_int("GH_SFTP_PORT")
USER = os.environ.get("GH_SFTP_USER", "slowdive")
PASSWORD = os.environ.get("GH_SFTP_PASSWORD", "pygmalion")

EXCLUDE = Exclusions([
    # Nothing in test_sftp.py / test_sftp_big.py needs the in-process server's internals.
])


@pytest.fixture
def sftp_server():
    """Client Transport connected to the live gatehouse SFTP listener (replaces upstream's
    in-memory loopback server)."""
    from paramiko import Transport

    if PORT is None:
        pytest.fail("harness: GH_SFTP_PORT not set", pytrace=False)
    sock = socket.create_connection((HOST, PORT), timeout=30)
    tc = Transport(sock)
    tc.connect(username=USER, password=PASSWORD)
    yield tc
    tc.close()


_recorder = Recorder(
    suite=os.environ.get("GH_SUITE", "paramiko"),
    path=os.environ.get("GH_RESULTS_JSON"),
    # caplog's copy of paramiko's SFTP request log (its stderr copy is the same lines again)
    transcript_filter=lambda ln: ln.startswith(("DEBUG    paramiko", "INFO     paramiko", "ERROR    ",
                                                "WARNING  ")),
)

_patched = {"done": False}


def pytest_configure(config):
    config.pluginmanager.register(_recorder, "gh_recorder")
    install_lenient_raises_if_asked()


@pytest.hookimpl(tryfirst=True)
def pytest_plugin_registered(plugin, manager):
    if getattr(plugin, "__name__", "") == "tests.conftest" and hasattr(plugin, "sftp_server"):
        plugin.sftp_server = sftp_server
        _patched["done"] = True


def pytest_collection_modifyitems(session, config, items):
    if not _patched["done"]:
        raise pytest.UsageError("harness: could not replace paramiko's sftp_server fixture")
    EXCLUDE.apply(config, items, _recorder)
