"""pytest plugin (-p gh_thirdparty_pyftpdlib): run pyftpdlib's unmodified functional tests
(tests/test_functional.py, tests/test_functional_ssl.py) against a live gatehouse FTP listener.

How the adaptation works
- pyftpdlib's tests start an in-process server through `tests.FtpdThreadWrapper` (FTPS:
  a subclass of it). Before the test modules are imported we replace that class in the `tests`
  package with `GatehouseFtpd`, whose start()/stop() do nothing but pick which running gatehouse
  instance to talk to, and whose host/port are that instance's. USER/PASSWD stay pyftpdlib's
  ("user"/"12345"): the gateway config has that user.
- HOME is os.getcwd(): the harness runs pytest inside the directory that is the user's home on
  the gateway's local-disk backend, so files the tests create locally are the server's files
  (the tests rely on that, exactly as with the in-process server).
- Server options that tests set on pyftpdlib's handler classes before start() are mapped onto
  gatehouse instances configured the same way where gatehouse has that knob (TLS required,
  connection caps, login-failure limits, IPv6 listener). Tests whose option has no gatehouse
  counterpart, or that inspect pyftpdlib internals, are deselected in EXCLUDE with a reason.
- ftplib's debug transcript is turned on (ftplib.FTP.debugging = 2, PASS masked by ftplib) so a
  failure's record has the exact command/reply sequence.
- GH_LENIENT=1 ("wording-insensitive" pass): pytest.raises(..., match=RE) only checks the
  3-digit reply code when RE starts with one, and ignores RE otherwise; the exception type
  (ftplib.error_perm = 5xx, error_temp = 4xx) is still checked. Upstream tests match pyftpdlib's
  own reply texts; this pass lets them go on past a differently-worded but correct reply so the
  rest of each test still exercises the server. Plain `assert resp == "..."` stays strict.
- GLOBAL_TIMEOUT (client socket timeout) is raised from 2 s to $GH_CLIENT_TIMEOUT (default 5 s)
  because this machine is shared with a compiler.
"""

import ftplib
import os
import sys
import threading

import pytest

from gh_thirdparty_common import Exclusions, Recorder, env_int, install_lenient_raises_if_asked

HOST = "127.0.0.1"
PORTS = {
    "main": env_int("GH_FTP_PORT"),
    "tlsreq": env_int("GH_FTP_TLSREQ_PORT"),
    "v6": env_int("GH_FTP_V6_PORT"),
    "maxcons": env_int("GH_FTP_MAXCONS_PORT"),
    "perip": env_int("GH_FTP_PERIP_PORT"),
    "ban1": env_int("GH_FTP_BAN1_PORT"),
    "ban3": env_int("GH_FTP_BAN3_PORT"),
}
CLIENT_TIMEOUT = float(os.environ.get("GH_CLIENT_TIMEOUT", "5"))

# Which gatehouse instance a test whose *name* alone says what server behaviour it checks talks
# to (pyftpdlib's default max_login_attempts=3 is in force for every test; only this one checks it).
BY_TEST = {
    "test_max_auth": "ban3",
}

_current_test = {"name": None}

NA = "not applicable (pyftpdlib in-process internals): "
OPT = "not applicable (pyftpdlib runtime server option with no gatehouse equivalent): "
EXCLUDE = Exclusions([
    (r"TestCallbacks", r".*",
     NA + "asserts pyftpdlib FTPHandler.on_* callbacks run inside the test process"),
    (r"TestTimeouts(TLSMixin)?", r"test_data_timeout|test_idle_data_timeout[12]|test_pasv_timeout",
     OPT + "sets 0.1-0.6 s control/data/PASV timeouts on pyftpdlib handler classes at run time "
           "(gatehouse has idle_timeout_secs only, whole seconds, per config)"),
    (r"ThreadedFTPTests", r"test_stou_max_tries",
     NA + "replaces pyftpdlib's AbstractedFS with one whose mkstemp always fails"),
    (r"ThreadedFTPTests", r"test_idle_timeout",
     OPT + "0.1 s control idle timeout set on FTPHandler at run time"),
    (r"ThreadedFTPTests", r"test_permit_foreign_address_(false|true)",
     NA + "rewrites remote_ip of the live pyftpdlib handler object (get_server_handler())"),
    (r"ThreadedFTPTests", r"test_sendfile_fails",
     NA + "patches pyftpdlib.handlers...os.sendfile and asserts the server called it"),
    (r"TestCornerCases(TLSMixin)?", r"test_error_on_callback|test_repr|test_ioloop_fileno",
     NA + "exercises pyftpdlib's IOLoop / handler repr() in the test process"),
    (r"TestConfigurableOptions(TLSMixin)?", r"test_banner",
     OPT + "banner text set on FTPHandler (gatehouse's greeting is fixed)"),
    (r"TestConfigurableOptions(TLSMixin)?", r"test_masquerade_address(_map)?",
     OPT + "per-test PASV masquerade address (gatehouse: passive_host per config; the test's "
           "256.256.256.256 is not even an address)"),
    (r"TestConfigurableOptions(TLSMixin)?", r"test_passive_ports(_busy)?",
     OPT + "per-test passive port list / fallback to a kernel port when the list is busy "
           "(gatehouse: fixed passive_ports range per config, never leaves it)"),
    (r"TestConfigurableOptions(TLSMixin)?", r"test_encoding",
     OPT + "control-channel encoding latin-1 (gatehouse is UTF-8 only)"),
    (r"TestIPv6MixedEnvironment", r".*",
     "harness: needs a dual-stack listener on [::] (all interfaces); the harness binds loopback only"),
])


class _ServerOpts:
    """Stands in for the pyftpdlib FTPServer instance tests reach as `self.server.server`."""

    def __init__(self, handler):
        self.handler = handler
        self.max_cons = 0
        self.max_cons_per_ip = 0
        self.ioloop = None

    def close_all(self):
        pass


def _make_server_class(tests_pkg):
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.servers import FTPServer

    class GatehouseFtpd:
        """Drop-in for tests.FtpdThreadWrapper: the server is the running gatehouse."""

        handler = FTPHandler
        server_class = FTPServer
        poll_interval = 0.001
        daemon = True

        def __init__(self, addr=None):
            self.parent_pid = os.getpid()
            self.addr = addr
            self.server = _ServerOpts(self.handler)
            self.lock = threading.Lock()
            self.instance = None
            self.host, self.port = self._pick()

        def _pick(self):
            inst = "main"
            h = self.handler
            if self.addr is not None and self.addr[0] in ("::1",):
                inst = "v6"
            elif getattr(h, "tls_control_required", False) or getattr(h, "tls_data_required", False):
                inst = "tlsreq"
            elif self.server.max_cons_per_ip:
                inst = "perip"
            elif self.server.max_cons:
                inst = "maxcons"
            elif getattr(h, "max_login_attempts", 3) == 1:
                inst = "ban1"
            elif _current_test["name"] in BY_TEST:
                inst = BY_TEST[_current_test["name"]]
            port = PORTS.get(inst)
            if port is None:
                pytest.fail(f"harness: gatehouse instance {inst!r} not configured", pytrace=False)
            self.instance = inst
            return ("::1" if inst == "v6" else HOST), port

        # threading.Thread-like API used by the tests
        def start(self):
            self.host, self.port = self._pick()

        def stop(self):
            tests_pkg.reset_server_opts()

        def join(self, timeout=None):
            pass

        def is_alive(self):
            return True

    return GatehouseFtpd


_patched = {"done": False}


def _patch():
    if _patched["done"]:
        return
    pkg = sys.modules.get("tests")
    if pkg is None or not hasattr(pkg, "FtpdThreadWrapper"):
        return
    if "tests.test_functional" in sys.modules or "tests.test_functional_ssl" in sys.modules:
        raise RuntimeError("harness: pyftpdlib test modules imported before the shim was applied")
    cls = _make_server_class(pkg)
    pkg.FtpdThreadWrapper = cls
    pkg.FtpdMultiprocWrapper = cls
    pkg.HOST = HOST
    pkg.GLOBAL_TIMEOUT = CLIENT_TIMEOUT
    pkg.HOME = os.getcwd()
    # The server is not a thread of ours: nothing to check for leaked threads / children.
    pkg.assert_free_resources = lambda *a, **k: None
    _patched["done"] = True


# Exact client transcript in failure reports (ftplib masks the password itself).
ftplib.FTP.debugging = 2

_recorder = Recorder(
    suite=os.environ.get("GH_SUITE", "pyftpdlib"),
    path=os.environ.get("GH_RESULTS_JSON"),
    transcript_filter=lambda ln: ln.startswith(("*cmd*", "*put*", "*resp*", "*get*", "*welcome*")),
)


def pytest_configure(config):
    config.pluginmanager.register(_recorder, "gh_recorder")
    install_lenient_raises_if_asked()


@pytest.hookimpl(tryfirst=True)
def pytest_plugin_registered(plugin, manager):
    name = getattr(plugin, "__name__", "")
    if name == "tests.conftest":
        _patch()


@pytest.hookimpl(tryfirst=True)
def pytest_collectstart(collector):
    _patch()


def pytest_collection_modifyitems(session, config, items):
    if not _patched["done"]:
        raise pytest.UsageError("harness: could not patch pyftpdlib's tests.FtpdThreadWrapper")
    EXCLUDE.apply(config, items, _recorder)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    _current_test["name"] = getattr(item, "originalname", item.name)
