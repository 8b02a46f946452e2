"""Loading never fails open: every entry of a policy directory is read whole or the load fails,
the revision is the bytes, and the same bytes give the same result through the CLI, the API and
a running server's reload."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from conftest import POLICIES
from server_support import running_server
from tiergate.engine import DiagnosticError, compile_sources, load_policy_set
from tiergate.engine.load import read_policy_sources, revision_of
from tiergate.server.reload import PolicyWatcher
from tiergate.v1 import authorizer_pb2 as pb


def copy_of_policies(tmp_path):
    target = tmp_path / "policies"
    shutil.copytree(POLICIES, target, ignore=shutil.ignore_patterns("tests"))
    return target


def check(directory) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tiergate.cli.main", "check", str(directory),
                           "--error-format", "plain"], capture_output=True, text=True)


def load_errors(directory) -> list:
    with pytest.raises(DiagnosticError) as caught:
        load_policy_set(directory)
    return list(caught.value.diagnostics)


@pytest.mark.parametrize("make", ["dangling symlink", "fifo", "directory named .policy"])
def test_an_entry_that_is_not_a_readable_file_fails_the_load(tmp_path, make):
    policies = copy_of_policies(tmp_path)
    target = policies / "prohibitions.policy"
    target.unlink()  # without it, storing data overseas would be permitted
    if make == "dangling symlink":
        target.symlink_to(tmp_path / "nowhere.policy")
    elif make == "fifo":
        os.mkfifo(target)
    else:
        target.mkdir()
    [error] = load_errors(policies)
    assert error.code == "TG004" and str(target) in error.message
    result = check(policies)
    assert result.returncode == 1 and "TG004" in result.stderr and "ok:" not in result.stdout


def test_a_file_that_is_not_utf8_names_its_line(tmp_path):
    policies = copy_of_policies(tmp_path)
    path = policies / "access.policy"
    path.write_bytes(path.read_bytes().replace(b"rule government-sharing", b"rule gov\xff", 1))
    [error] = load_errors(policies)
    assert error.code == "TG003" and error.span.line > 1 and "not UTF-8" in error.message


def test_the_revision_is_the_bytes(tmp_path):
    policies = copy_of_policies(tmp_path)
    reviewed = load_policy_set(policies).revision
    assert load_policy_set(policies).revision == reviewed  # the same bytes, the same revision
    path = policies / "grants.policy"
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    crlf = load_policy_set(policies)
    assert crlf.revision != reviewed  # only the line endings changed: still a new revision
    assert [g.id for g in crlf.grants] == [g.id for g in load_policy_set(POLICIES).grants]


def test_a_lone_carriage_return_is_refused_on_every_path(tmp_path):
    # A CR inside a comment ends the line for some readers: a rule could hide behind it.
    hidden = "# 备注\rrule sneak { cite \"x\" message zh \"x\" en \"x\" permit always }\n"
    policies = copy_of_policies(tmp_path)
    (policies / "note.policy").write_bytes(hidden.encode())
    [error] = load_errors(policies)
    assert (error.code, error.span.line, error.span.column) == ("TG101", 1, 5)
    with pytest.raises(DiagnosticError) as caught:
        compile_sources({**read_policy_sources(POLICIES), "note.policy": hidden})
    assert [d.code for d in caught.value.diagnostics] == ["TG101"]
    assert "TG101" in check(policies).stderr


@pytest.mark.parametrize("text, code", [
    ('grant g {\n  granteefzu\n}\n', "TG100"),
    ('rule r {\n  cite "c"\n  deny when notcontext.consent\n}\n', "TG100"),
    ('rule r {\n  deny when action not\u00a0in [query]\n}\n', "TG102"),
    ('rule r\u3000{\n}\n', "TG102"),
    ('rule r {\n  cite "a\x00b"\n}\n', "TG102"),
    ('rule r {\n  deny when ' + "not " * 500 + 'context.consent\n}\n', "TG104"),
    ('rule r {\n  deny when ' + "(context.consent and " * 400 + "context.consent"
     + ")" * 400 + "\n}\n", "TG104"),
])
def test_tokens_are_words_and_nesting_is_bounded(text, code):
    sources = {**read_policy_sources(POLICIES), "odd.policy": text}
    with pytest.raises(DiagnosticError) as caught:
        compile_sources(sources)
    assert [d.code for d in caught.value.diagnostics] == [code]
    assert caught.value.diagnostics[0].span.file == "odd.policy"


def test_a_byte_order_mark_is_accepted_and_counted_in_the_revision():
    sources = read_policy_sources(POLICIES)
    name = str(POLICIES / "access.policy")
    with_bom = {**sources, name: "\ufeff" + sources[name]}
    policy = compile_sources(with_bom)
    assert [r.id for r in policy.rules] == [r.id for r in compile_sources(sources).rules]
    assert revision_of(with_bom) != revision_of(sources)


def test_an_oversized_file_is_refused(tmp_path):
    policies = copy_of_policies(tmp_path)
    with open(policies / "huge.policy", "wb") as f:
        f.truncate(33 * 2**20)  # 33 MiB of NULs: never read as a policy
    [error] = load_errors(policies)
    assert error.code == "TG005" and "huge.policy" in error.message


def test_hot_reload_shows_every_failure_and_keeps_the_last_good_policy(tmp_path):
    policies = copy_of_policies(tmp_path)
    with running_server(policies) as (running, stub, _):
        good = stub.GetPolicyInfo(pb.GetPolicyInfoRequest()).policy_revision
        watcher = PolicyWatcher(running.holder, interval=0)
        target = policies / "prohibitions.policy"
        target.unlink()
        target.symlink_to(tmp_path / "nowhere.policy")
        watcher.poll()
        info = stub.GetPolicyInfo(pb.GetPolicyInfoRequest())
        assert info.policy_revision == good
        [line] = info.last_reload_error.diagnostics
        assert "TG004" in line and "prohibitions.policy" in line
        # The same text `check --error-format plain` prints, without the server's path.
        assert str(policies) not in line
        assert line in check(policies).stderr.replace(f"{policies}/", "")
        # A deep condition is a diagnostic in GetPolicyInfo, not a traceback in the log.
        target.unlink()
        shutil.copy(POLICIES / "prohibitions.policy", target)
        (policies / "deep.policy").write_text(
            'rule r {\n  deny when ' + "not " * 500 + "context.consent\n}\n", encoding="utf-8")
        watcher.poll()
        watcher.poll()  # a change is compiled once it is seen twice
        info = stub.GetPolicyInfo(pb.GetPolicyInfoRequest())
        assert info.policy_revision == good
        assert any("TG104" in line for line in info.last_reload_error.diagnostics)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root to drop to the nobody user (setpriv)")
@pytest.mark.parametrize("what", ["file", "directory"])
def test_what_the_server_user_cannot_read_fails_the_load(tmp_path_factory, what):
    # Root reads everything, so the check runs as nobody, as a server account would.
    import tempfile
    as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable]
    if subprocess.run([*as_nobody, "-c", "import tiergate.engine"], capture_output=True).returncode:
        pytest.skip("the nobody user cannot run this checkout's Python")
    top = tempfile.mkdtemp(prefix="tiergate-unreadable-")
    try:
        os.chmod(top, 0o755)
        policies = shutil.copytree(POLICIES, os.path.join(top, "policies"))
        for folder, _, files in os.walk(top):
            os.chmod(folder, 0o755)
            for name in files:
                os.chmod(os.path.join(folder, name), 0o644)
        if what == "file":
            hidden = os.path.join(policies, "prohibitions.policy")
        else:
            os.mkdir(os.path.join(policies, "more"))
            shutil.copy(POLICIES / "prohibitions.policy", os.path.join(policies, "more", "x.policy"))
            hidden = os.path.join(policies, "more")
        os.chmod(hidden, 0)
        result = subprocess.run([*as_nobody, "-m", "tiergate.cli.main", "check", policies,
                                 "--error-format", "plain"], capture_output=True, text=True)
        assert result.returncode == 1, result.stdout + result.stderr
        assert f"error[TG004]: {hidden}" in result.stderr and "Permission denied" in result.stderr
        assert "Traceback" not in result.stderr
    finally:
        for folder, _, _ in os.walk(top):
            os.chmod(folder, 0o755)
        shutil.rmtree(top, ignore_errors=True)


def test_a_lone_carriage_return_in_a_catalog_data_file_is_refused_too():
    sources = {**read_policy_sources(POLICIES),
               "extra.catalog.csv": "id,catalog_class,tier\rds-x,basic_info,open\n"}
    with pytest.raises(DiagnosticError) as caught:
        compile_sources(sources)
    [error] = caught.value.diagnostics
    assert (error.code, error.span.file, error.span.line) == ("TG101", "extra.catalog.csv", 1)
