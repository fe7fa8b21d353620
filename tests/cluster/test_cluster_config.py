"""cluster.yaml (AWS) and clusters/local/cluster.yaml: Ray's own validation plus security checks.

Validation runs the same two steps `ray up` runs before it touches a cloud
(ray.autoscaler._private.commands._bootstrap_config): `prepare_config` (merge the provider's
defaults.yaml, merge setup commands, check the docker section, fill per-type min/max workers;
for the local provider also `prepare_local`) and `validate_config` (the JSON schema in
ray/autoscaler/ray-schema.json plus the cross-field checks). The provider bootstrap that follows
in `ray up` (AWS: IAM role, key pair, subnets, security group via boto3) is deliberately not
run; boto3/botocore imports and socket connections are blocked while validating, so a config
that needed the cloud to validate would fail here instead of calling out.
"""

from __future__ import annotations

import copy
import ipaddress
import re
import shlex
import socket
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

REPO = Path(__file__).resolve().parents[2]
CONFIGS = {
    "aws": REPO / "cluster.yaml",
    "local": REPO / "clusters" / "local" / "cluster.yaml",
}
PROJECT_MOUNT = "~/ensemble-efficiency"
INSTALL = f"pip install -c {PROJECT_MOUNT}/constraints.txt -e {PROJECT_MOUNT}"
TOKEN_PATH = "~/.ray/auth_token"
IMAGE_RE = re.compile(r"^rayproject/ray:2\.60\.\d+-py311-(gpu|cu\d+)$")
# Ports that must never be reachable from outside the cluster: dashboard/Jobs API, GCS, client.
RAY_PORTS = (8265, 6379, 10001)

# Things that look like credentials. Matching any of these in a committed config is a leak.
SECRET_PATTERNS = {
    "AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "AWS secret key setting": re.compile(r"aws_secret_access_key|aws_session_token", re.I),
    "private key block": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "inline Ray token": re.compile(r"RAY_AUTH_TOKEN\s*[=:]\s*\S"),
    "password": re.compile(r"passw(or)?d\s*[=:]", re.I),
}


def find_secrets(text: str) -> list[str]:
    return [name for name, pattern in SECRET_PATTERNS.items() if pattern.search(text)]


@pytest.fixture
def no_cloud(monkeypatch):
    """Make any cloud SDK import or network connection fail loudly during the test."""
    for mod in ("boto3", "botocore"):
        monkeypatch.setitem(sys.modules, mod, None)  # `import boto3` -> ImportError

    def refuse(*args, **kwargs):
        raise AssertionError(f"network connection attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


def load(name: str) -> dict:
    return yaml.safe_load(CONFIGS[name].read_text())


def ray_validate(raw: dict) -> dict:
    """What `ray up` does before the provider bootstrap; returns the prepared config."""
    prepared = prepare_config(copy.deepcopy(raw))
    validate_config(prepared)
    return prepared


def start_commands(cfg: dict, which: str) -> list[str]:
    return [c for c in cfg[f"{which}_start_ray_commands"] if "ray start" in c]


def flag_value(command: str, flag: str) -> str | None:
    """Value of --flag=X or --flag X in a shell command (None when absent)."""
    words = shlex.split(command.replace(";", " ; "))
    for i, word in enumerate(words):
        if word.startswith(flag + "="):
            return word.split("=", 1)[1]
        if word == flag and i + 1 < len(words):
            return words[i + 1]
    return None


def worker_types(cfg: dict) -> dict:
    return {k: v for k, v in cfg["available_node_types"].items() if k != cfg["head_node_type"]}


# --------------------------------------------------------------------------- Ray validation
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_ray_validation_accepts_config(name, no_cloud):
    prepared = ray_validate(load(name))
    assert prepared["provider"]["type"] == name
    assert prepared["head_node_type"] in prepared["available_node_types"]
    # Setup commands were merged for both node kinds: every node installs the project.
    for kind in ("head", "worker"):
        assert INSTALL in prepared[f"{kind}_setup_commands"]


def _unknown_top_level_key(cfg):
    cfg["max_worker"] = 4  # typo of max_workers


def _wrong_type(cfg):
    cfg["idle_timeout_minutes"] = "ten"


def _unknown_node_type_key(cfg):
    cfg["available_node_types"]["ray.worker.gpu"]["min_worker"] = 0


def _head_type_missing(cfg):
    cfg["head_node_type"] = "ray.head.gpu"


def _min_above_max(cfg):
    cfg["available_node_types"]["ray.worker.gpu"]["min_workers"] = cfg["max_workers"] + 1


BREAKAGES = [
    ("aws", _unknown_top_level_key, jsonschema.ValidationError),
    ("local", _unknown_top_level_key, jsonschema.ValidationError),
    ("aws", _wrong_type, jsonschema.ValidationError),
    ("local", _wrong_type, jsonschema.ValidationError),
    ("aws", _unknown_node_type_key, jsonschema.ValidationError),
    ("aws", _head_type_missing, ValueError),
    ("aws", _min_above_max, ValueError),
]


@pytest.mark.parametrize(
    "name,breakage,error", BREAKAGES, ids=[f"{n}-{b.__name__[1:]}" for n, b, _ in BREAKAGES]
)
def test_ray_validation_rejects_broken_copy(name, breakage, error, no_cloud):
    cfg = load(name)
    breakage(cfg)
    with pytest.raises(error):
        ray_validate(cfg)


# --------------------------------------------------------------------------- security
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_dashboard_listens_on_localhost_only(name):
    cfg = load(name)
    (head,) = [c for c in start_commands(cfg, "head") if "--head" in c]
    assert flag_value(head, "--dashboard-host") in ("127.0.0.1", "localhost"), head
    text = CONFIGS[name].read_text()
    assert "0.0.0.0" not in text and "::/0" not in text


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_token_authentication_enabled_on_every_node(name):
    cfg = load(name)
    for which in ("head", "worker"):
        commands = start_commands(cfg, which)
        assert commands, f"no `ray start` in {which}_start_ray_commands"
        for command in commands:
            assert re.search(r"RAY_AUTH_MODE=token\s+ray start", command), command
    # Every node gets the launching user's token file; nothing token-like is inlined.
    assert cfg["file_mounts"][TOKEN_PATH] == TOKEN_PATH
    # Every process in the container (ray status, job drivers) runs with token auth too.
    assert "--env RAY_AUTH_MODE=token" in cfg["docker"]["run_options"]
    assert not re.search(r"RAY_AUTH_MODE\s*=\s*(?!token\b)", CONFIGS[name].read_text())


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_no_secrets_in_file(name):
    text = CONFIGS[name].read_text()
    assert find_secrets(text) == []


def test_secret_scanner_catches_planted_secrets():
    # Built at run time so this file itself holds no secret-looking literal.
    planted = {
        "AWS access key id": "key: " + "AKIA" + "ABCDEFGHIJKLMNOP",
        "AWS secret key setting": "aws_secret_" + "access_key: x",
        "private key block": "-----BEGIN OPENSSH " + "PRIVATE KEY-----",
        "inline Ray token": "--env RAY_AUTH_" + "TOKEN=abc123",
    }
    for name, text in planted.items():
        assert name in find_secrets(CONFIGS["aws"].read_text() + "\n" + text), name


def test_aws_security_group_opens_nothing_to_the_world():
    rules = load("aws")["provider"].get("security_group", {}).get("IpPermissions", [])
    for rule in rules:
        cidrs = [r.get("CidrIp") for r in rule.get("IpRanges", [])]
        cidrs += [r.get("CidrIpv6") for r in rule.get("Ipv6Ranges", [])]
        assert not {"0.0.0.0/0", "::/0"} & set(cidrs), rule
        low, high = rule.get("FromPort", -1), rule.get("ToPort", -1)
        for port in RAY_PORTS:
            assert not (low == -1 or low <= port <= high), (port, rule)


# --------------------------------------------------------------------------- cluster shape
def test_aws_gpu_workers_autoscale_from_zero(no_cloud):
    prepared = ray_validate(load("aws"))
    gpu_types = {k: v for k, v in worker_types(prepared).items() if v["resources"].get("GPU", 0)}
    assert gpu_types, "no GPU worker type"
    for name, node_type in gpu_types.items():
        assert node_type["resources"]["GPU"] >= 2, f"{name}: want several GPUs per node"
        assert node_type["min_workers"] == 0, f"{name}: idle cluster must shrink to the head"
        assert 1 <= node_type["max_workers"] <= prepared["max_workers"]
    assert prepared["idle_timeout_minutes"] > 0
    head = prepared["available_node_types"][prepared["head_node_type"]]
    assert head["max_workers"] == 0
    assert head["resources"].get("GPU", 0) == 0
    assert head["resources"].get("CPU") == 0, "trials must not be scheduled on the head"
    assert prepared["provider"]["cache_stopped_nodes"] is False


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_docker_image_is_ray_260_py311_gpu(name):
    docker = load(name)["docker"]
    images = [docker["image"]] + [docker[k] for k in ("head_image", "worker_image") if k in docker]
    for image in images:
        assert IMAGE_RE.match(image), image


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_workers_join_the_head(name):
    cfg = load(name)
    (head,) = start_commands(cfg, "head")
    assert "--head" in head and flag_value(head, "--port") == "6379", head
    assert flag_value(head, "--autoscaling-config") == "~/ray_bootstrap_config.yaml"
    (worker,) = start_commands(cfg, "worker")
    assert flag_value(worker, "--address") == "$RAY_HEAD_IP:6379", worker
    assert "--head" not in worker


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_project_synced_and_installed(name):
    cfg = load(name)
    assert cfg["file_mounts"][PROJECT_MOUNT] == "."  # `ray up` runs from the repo root
    assert (REPO / "pyproject.toml").is_file()
    assert INSTALL in cfg["setup_commands"]  # from the lock, as README installs
    assert ".gitignore" in cfg["rsync_filter"]  # results, caches, venvs stay local


def test_local_provider_has_head_and_worker_ips(no_cloud):
    cfg = load("local")
    provider = cfg["provider"]
    head = ipaddress.ip_address(provider["head_ip"])
    workers = [ipaddress.ip_address(ip) for ip in provider["worker_ips"]]
    assert workers and head not in workers and len(set(workers)) == len(workers)
    assert cfg["auth"]["ssh_user"]
    prepared = ray_validate(cfg)
    (node_type,) = prepared["available_node_types"].values()
    assert node_type["max_workers"] == len(workers)


def test_local_file_shares_the_aws_setup_and_security():
    aws, local = load("aws"), load("local")
    for key in ("setup_commands", "file_mounts", "rsync_filter", "rsync_exclude"):
        assert local[key] == aws[key], key
    assert local["docker"]["image"] == aws["docker"]["image"]
    assert local["docker"]["run_options"] == aws["docker"]["run_options"]
    for which in ("head", "worker"):
        assert start_commands(local, which) == start_commands(aws, which), which
