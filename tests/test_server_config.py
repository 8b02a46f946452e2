"""Serve settings: flags beat TIERGATE_* variables, which beat the TOML file; mistakes are errors."""

from __future__ import annotations


import grpc
import pytest

from tiergate.server.config import ConfigError, load_config
from tiergate.server.holder import PolicyHolder
from tiergate.server.service import AuthorizerService
from server_support import to_proto
from conftest import make_request
from tiergate.v1 import authorizer_pb2 as pb


def test_flags_beat_environment_beat_file(tmp_path):
    config_file = tmp_path / "tiergate.toml"
    config_file.write_text('policy_dir = "from-file"\nlisten = "0.0.0.0:7000"\n'
                           'workers = 3\ncache_size = 5\n', encoding="utf-8")
    config = load_config({"workers": 2, "listen": None}, config_file=config_file,
                         environ={"TIERGATE_LISTEN": "127.0.0.1:7001", "TIERGATE_CACHE_SIZE": "9"})
    assert (str(config.policy_dir), config.listen, config.workers, config.cache_size) == \
        (str(tmp_path / "from-file"), "127.0.0.1:7001", 2, 9)


def test_config_file_named_by_environment(tmp_path):
    config_file = tmp_path / "serve.toml"
    config_file.write_text('policy_dir = "p"\nreload_interval = 0.5\n', encoding="utf-8")
    config = load_config({}, environ={"TIERGATE_CONFIG": str(config_file)})
    assert config.reload_interval == 0.5


@pytest.mark.parametrize("settings, named", [
    ({"policy_dir": "p", "listne": "x"}, "listne"),
    ({"policy_dir": "p", "listen": "50051"}, "listen"),
    ({"policy_dir": "p", "workers": 0}, "workers"),
    ({}, "policy_dir"),
])
def test_bad_settings_name_the_setting(settings, named):
    with pytest.raises(ConfigError, match=named):
        load_config(settings, environ={})


def test_unreadable_config_file_is_an_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("listen = \n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not TOML"):
        load_config({"policy_dir": "p"}, config_file=bad, environ={})


class _ExpiredContext:
    """A call whose deadline has already passed."""

    def __init__(self):
        self.aborted = None

    def time_remaining(self):
        return 0.0

    def abort(self, code, details):
        self.aborted = (code, details)
        raise grpc.RpcError(details)


def test_work_stops_once_the_deadline_has_passed(policy):
    holder = PolicyHolder(policy, cache_size=10)
    service = AuthorizerService(holder)
    context = _ExpiredContext()
    with pytest.raises(grpc.RpcError):
        service.DecideBatch(pb.DecideBatchRequest(requests=[to_proto(make_request())] * 10),
                            context)
    assert context.aborted[0] == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "after 0 of 10" in context.aborted[1]
    with pytest.raises(grpc.RpcError):
        # Decide is handed the request's bytes, as gRPC hands them (service._handlers).
        service.Decide(to_proto(make_request(context__time=None)).SerializeToString(), context)
    assert len(holder.current.cache) == 0  # nothing was decided
