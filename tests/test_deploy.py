"""What a Kubernetes deployment relies on: the manifests in deploy/kubernetes agree with the
server's settings, health answers in plaintext on its own port for kubelet's probes, and a
policy directory that Kubernetes or git-sync swaps behind a link is read as one revision."""

from __future__ import annotations

import os
import shutil
import tomllib
from pathlib import Path

import grpc
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

import tiergate.server.sources as sources_module
from tiergate.engine.load import read_policy_sources
from tiergate.server.app import LIVENESS, start_server
from tiergate.server.config import ServeConfig
from tiergate.server.sources import DirectorySource

from conftest import POLICIES, REPO
from pki import Authority

MANIFESTS = REPO / "deploy" / "kubernetes"


def manifests() -> dict[str, dict]:
    out = {}
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            out[document["kind"]] = document
    return out


def test_the_manifests_parse_and_agree_with_each_other_and_the_server_config():
    by_kind = manifests()
    assert set(by_kind) >= {"Kustomization", "Namespace", "ConfigMap", "Deployment", "Service",
                            "PodDisruptionBudget"}
    listed = set(by_kind["Kustomization"]["resources"])
    assert listed == {p.name for p in MANIFESTS.glob("*.yaml")} - {"kustomization.yaml"}

    settings = tomllib.loads(by_kind["ConfigMap"]["data"]["tiergate.toml"])
    config = ServeConfig(**settings)  # every key is a real setting, every value valid
    deployment = by_kind["Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    for kind in ("Service", "PodDisruptionBudget"):
        selector = by_kind[kind]["spec"]["selector"]
        assert selector.get("matchLabels", selector).items() <= labels.items()
    [tiergate] = [c for c in deployment["spec"]["template"]["spec"]["containers"]
                  if c["name"] == "tiergate"]
    ports = {p["name"]: p["containerPort"] for p in tiergate["ports"]}
    assert ports == {"grpc": config.port, "health": int(config.health_listen.rpartition(":")[2]),
                     "metrics": int(config.metrics_listen.rpartition(":")[2])}
    assert tiergate["readinessProbe"]["grpc"]["port"] == ports["health"]
    assert tiergate["livenessProbe"]["grpc"] == {"port": ports["health"], "service": LIVENESS}
    assert tiergate["resources"]["requests"]["cpu"] and tiergate["resources"]["requests"]["memory"]
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > config.drain_seconds
    mounts = {m["mountPath"] for m in tiergate["volumeMounts"]}
    for path in (config.tls_cert, config.tls_key, config.tls_client_ca, config.audit_key):
        assert any(str(path).startswith(m) for m in mounts), path
    assert str(config.policy_dir).startswith("/policies")
    assert [e["name"] for e in tiergate["env"]] == ["TIERGATE_AUDIT_LOG"]
    assert by_kind["Service"]["spec"]["clusterIP"] == "None"  # Envoy balances calls per pod
    assert by_kind["PodDisruptionBudget"]["spec"]["minAvailable"] < deployment["spec"]["replicas"]


def test_health_answers_in_plaintext_on_its_own_port_beside_a_tls_port(tmp_path):
    ca = Authority()
    key, cert = ca.server_cert().write(tmp_path, "server")
    (tmp_path / "ca.crt").write_bytes(ca.pem)
    config = ServeConfig(policy_dir=POLICIES, listen="127.0.0.1:0", audit_log="off",
                         reload_interval=0, tls_cert=cert, tls_key=key,
                         tls_client_ca=tmp_path / "ca.crt", health_listen="127.0.0.1:0")
    running = start_server(config)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.health_port}") as channel:
            check = health_pb2_grpc.HealthStub(channel).Check
            ready = check(health_pb2.HealthCheckRequest(), timeout=5).status
            alive = check(health_pb2.HealthCheckRequest(service=LIVENESS), timeout=5).status
            # Only health is there: the decision API is not reachable without TLS.
            decide = channel.unary_unary("/tiergate.v1.Authorizer/GetPolicyInfo")
            try:
                decide(b"", timeout=5)
                reachable = True
            except grpc.RpcError as error:
                reachable = error.code() != grpc.StatusCode.UNIMPLEMENTED
    finally:
        running.stop(0)
    assert ready == alive == health_pb2.HealthCheckResponse.SERVING
    assert not reachable


def kubelet_layout(directory: Path, version: str, source: Path = POLICIES) -> None:
    """A ConfigMap volume as kubelet writes it: ..<version>/ with the files, ..data -> it, and
    each file a link through ..data."""
    directory.mkdir(exist_ok=True)
    shutil.copytree(source, directory / f"..{version}")
    staged = directory / "..data_tmp"
    staged.symlink_to(f"..{version}")
    staged.replace(directory / "..data")
    for path in (directory / f"..{version}").iterdir():
        link = directory / path.name
        if not link.is_symlink():
            link.symlink_to(f"..data/{path.name}")


def test_a_configmap_mounted_directory_loads_once(tmp_path):
    kubelet_layout(tmp_path / "policies", "2026_12_02_01")
    assert (DirectorySource(tmp_path / "policies").read()[1]
            == DirectorySource(POLICIES).read()[1])


def test_a_directory_swapped_while_it_is_read_is_read_again(tmp_path, monkeypatch):
    directory = tmp_path / "policies"
    kubelet_layout(directory, "v1")
    changed = tmp_path / "changed"
    shutil.copytree(POLICIES, changed)
    grants = changed / "grants.policy"
    grants.write_text(grants.read_text(encoding="utf-8").replace("2027-06-30", "2027-09-30"),
                      encoding="utf-8")
    calls = []

    def read_then_swap(path):
        sources = read_policy_sources(path)
        if not calls:  # kubelet swaps ..data to the new version after the first read
            shutil.copytree(changed, directory / "..v2")
            staged = directory / "..data_tmp"
            staged.symlink_to("..v2")
            os.replace(staged, directory / "..data")
        calls.append(path)
        return sources

    monkeypatch.setattr(sources_module, "read_policy_sources", read_then_swap)
    sources, revision = DirectorySource(directory).read()
    assert len(calls) == 2
    assert all("2027-09-30" in text for name, text in sources.items()
               if name.endswith("grants.policy"))
    assert revision == DirectorySource(changed).read()[1]
