"""cluster.yaml against Ray's own cluster-launcher validator, offline.

`ray up` does: prepare_config (merge the provider's defaults.yaml, fold setup_commands
into head/worker setup commands, fill per-type min/max workers) -> ask AWS for instance
types (to fill `resources`; only a warning when that fails) -> validate_config (JSON
schema + cross-field checks) -> provider bootstrap (IAM, key pair, subnets, security
group: AWS calls). The two pure steps are run here, exactly as `ray up` runs them, with
sockets refused and no AWS credentials, so the test proves they need neither. The node
types' commands are then read back through the autoscaler's own view of the config
(autoscaler v2's AutoscalingConfig, the default autoscaler since Ray 2.50), because a
node type's worker_setup_commands replace the common ones rather than extend them.
"""

from __future__ import annotations

import copy
import re
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_YAML = ROOT / "cluster.yaml"
README = ROOT / "README.md"
GUIDE = ROOT / "docs" / "cluster.md"  # the cluster guide the README's section points to

CUDA_TORCH = ("pip install --force-reinstall torch==2.13.0 "
              "--index-url https://download.pytorch.org/whl/cu128")
# The nodes' venv is Python 3.12, so its lock is constraints-py312.txt (.ci/lock); only GPU
# nodes take the gpu extra (nvidia-ml-py).
LOCK = "~/mtdiff/constraints-py312.txt"
PROJECT_INSTALL = {
    "head": f"pip install -q -c {LOCK} -e ~/mtdiff",
    "cpu_worker": f"pip install -q -c {LOCK} -e ~/mtdiff",
    "gpu_worker": f'pip install -q -c {LOCK} -e "$HOME/mtdiff[gpu]"',
}


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No network and no AWS credentials: any attempt to reach AWS fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network access attempted: {args[1:] or kwargs}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def load() -> dict[str, Any]:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def ray_validate(config: dict[str, Any]) -> dict[str, Any]:
    """Ray's own checks, as `ray up` runs them before touching AWS; the prepared config."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def autoscaler_view(config: dict[str, Any]) -> Any:
    """The running autoscaler's reading of the config (it prepares and validates too)."""
    from ray.autoscaler.v2.instance_manager.config import AutoscalingConfig

    # skip_content_hash: do not hash the file_mounts source ("." = the caller's cwd).
    return AutoscalingConfig(copy.deepcopy(config), skip_content_hash=True)


# ---------------------------------------------------------------- Ray's validator


def test_cluster_yaml_passes_ray_validator() -> None:
    prepared = ray_validate(load())
    assert prepared["provider"]["type"] == "aws"
    assert prepared["provider"]["region"]
    types = prepared["available_node_types"]
    assert prepared["head_node_type"] == "head"
    assert set(types) == {"head", "gpu_worker", "cpu_worker"}
    # filled by prepare_config: the head never scales; workers from 0
    assert types["head"]["max_workers"] == 0
    assert types["gpu_worker"]["min_workers"] == 0
    assert types["cpu_worker"]["min_workers"] == 0
    assert prepared["max_workers"] >= types["gpu_worker"]["max_workers"]
    assert prepared["max_workers"] >= types["cpu_worker"]["max_workers"]
    # the values `ray up` hands the autoscaler; per-type min <= max is only checked here
    # (a bare assert in the v2 autoscaler), not by validate_config
    view = autoscaler_view(load())
    assert view.get_head_node_type() == "head"
    node_types = view.get_node_type_configs()
    assert node_types["gpu_worker"].max_worker_nodes == types["gpu_worker"]["max_workers"] > 0
    assert node_types["cpu_worker"].max_worker_nodes == types["cpu_worker"]["max_workers"] > 0
    assert view.get_max_num_worker_nodes() == prepared["max_workers"]
    assert view.get_upscaling_speed() > 0
    assert view.get_idle_timeout_s() == prepared["idle_timeout_minutes"] * 60


def test_validate_config_needs_prepare_config_first() -> None:
    """validate_config alone rejects a hand-written file with a misleading message about
    Ray versions (it looks for fields that only defaults.yaml provides): always run
    prepare_config first, as `ray up` does."""
    from ray.autoscaler._private.util import validate_config

    with pytest.raises(RuntimeError, match="cluster_synced_files"):
        validate_config(load())


def _schema_error(config: dict[str, Any]) -> jsonschema.ValidationError:
    with pytest.raises(jsonschema.ValidationError) as info:
        ray_validate(config)
    return info.value


def test_misspelled_top_level_key_fails_with_rays_message() -> None:
    config = load()
    config["idle_timeout_minute"] = config.pop("idle_timeout_minutes")
    err = _schema_error(config)
    assert "Additional properties are not allowed" in err.message
    assert "'idle_timeout_minute' was unexpected" in err.message


def test_non_integer_max_workers_fails_with_rays_message() -> None:
    config = load()
    config["max_workers"] = "lots"
    err = _schema_error(config)
    assert "'lots' is not of type 'integer'" in err.message
    assert list(err.absolute_path) == ["max_workers"]


def test_node_type_without_node_config_fails_with_rays_message() -> None:
    config = load()
    del config["available_node_types"]["gpu_worker"]["node_config"]
    err = _schema_error(config)
    assert "'node_config' is a required property" in err.message
    assert list(err.absolute_path) == ["available_node_types", "gpu_worker"]


def test_misspelled_node_type_key_fails_with_rays_message() -> None:
    config = load()
    gpu = config["available_node_types"]["gpu_worker"]
    gpu["worker_setup_command"] = gpu.pop("worker_setup_commands")
    err = _schema_error(config)
    assert "'worker_setup_command' was unexpected" in err.message


def test_unknown_head_node_type_fails_with_rays_message() -> None:
    config = load()
    config["head_node_type"] = "head_node"
    with pytest.raises(ValueError, match="`head_node_type` must be one of"):
        ray_validate(config)


# Ray's schema leaves `provider` open (additionalProperties: true) and `node_config`
# free-form (it is passed to EC2's RunInstances as is), so a typo there passes Ray and
# only fails, or is silently ignored, on AWS. Our own stricter check of both:
AWS_PROVIDER_KEYS = {"type", "region", "availability_zone", "cache_stopped_nodes",
                     "use_internal_ips", "security_group", "aws_credentials",
                     "use_fleet_on_demand", "disable_launch_config_check"}
RUN_INSTANCES_KEYS = {"InstanceType", "ImageId", "BlockDeviceMappings",
                      "InstanceMarketOptions", "KeyName", "SubnetIds", "SecurityGroupIds",
                      "IamInstanceProfile", "TagSpecifications", "Placement",
                      "NetworkInterfaces", "UserData", "MetadataOptions"}


def test_provider_and_node_config_keys_are_known() -> None:
    config = load()
    assert set(config["provider"]) <= AWS_PROVIDER_KEYS
    for name, node_type in config["available_node_types"].items():
        assert set(node_type["node_config"]) <= RUN_INSTANCES_KEYS, name
        assert re.fullmatch(r"ami-[0-9a-f]+|resolve:ssm:/aws/service/\S+/ami-id",
                            node_type["node_config"]["ImageId"]), name


# ---------------------------------------------------------------- what the nodes get


def test_head_has_no_gpu_and_gpu_worker_has_one() -> None:
    view = autoscaler_view(load())
    head = view.get_node_resources("head")
    assert head.get("GPU", 0) == 0
    assert head.get("CPU") == 0  # nothing scheduled next to GCS, MLflow and the driver
    assert view.get_node_resources("gpu_worker").get("GPU") == 1
    assert view.get_node_resources("cpu_worker").get("GPU", 0) == 0
    types = load()["available_node_types"]
    assert types["head"]["node_config"]["InstanceType"].startswith(("m", "c", "r"))
    assert types["gpu_worker"]["node_config"]["InstanceType"].startswith(("g", "p"))


def test_workers_are_spot_and_the_head_is_not() -> None:
    types = load()["available_node_types"]
    assert "InstanceMarketOptions" not in types["head"]["node_config"]
    for name in ("gpu_worker", "cpu_worker"):
        assert types[name]["node_config"]["InstanceMarketOptions"] == {"MarketType": "spot"}


def test_every_node_installs_the_project_and_only_gpu_nodes_cuda_torch() -> None:
    config = load()
    assert config["file_mounts"] == {"~/mtdiff": "."}
    view = autoscaler_view(config)
    commands = {
        "head": view.get_head_setup_commands(),
        "gpu_worker": view.get_worker_setup_commands("gpu_worker"),
        "cpu_worker": view.get_worker_setup_commands("cpu_worker"),
    }
    for name, cmds in commands.items():
        text = "\n".join(cmds)
        assert PROJECT_INSTALL[name] in text, name
        assert "python3.12 -m venv ~/venv" in text, name
        # /shared: the head exports it, every worker mounts it from $RAY_HEAD_IP
        if name == "head":
            assert "nfs-kernel-server" in text and "/etc/exports" in text
            assert "boto3" in text  # the autoscaler on the head needs it
        else:
            assert "mount -t nfs4" in text and "$RAY_HEAD_IP:/shared /shared" in text, name
    gpu = "\n".join(commands["gpu_worker"])
    assert CUDA_TORCH in gpu
    # the CUDA build goes in before the project, so pip keeps it
    assert gpu.index(CUDA_TORCH) < gpu.index(PROJECT_INSTALL["gpu_worker"])
    for name in ("head", "cpu_worker"):
        assert "cu128" not in "\n".join(commands[name]), name
        assert "whl/cpu" in "\n".join(commands[name]), name


def _pip_installs(commands: list[str]) -> list[str]:
    """Each `pip install ...` of the commands, up to the next `&&`, `||` or `;`."""
    return [m.group(0).strip() for c in commands
            for m in re.finditer(r"pip install\b[^&|;]*", c)]


def test_every_pip_install_goes_through_the_lock_for_the_nodes_python() -> None:
    """Exact versions on the cluster: every pip install takes the 3.12 lock, except pip's
    own upgrade and torch's build from PyTorch's index (the lock's `torch==2.13.0` then
    accepts it). The lock is the one for the venv's Python and reaches the nodes."""
    config = load()
    view = autoscaler_view(config)
    commands = {
        "head": view.get_head_setup_commands(),
        "gpu_worker": view.get_worker_setup_commands("gpu_worker"),
        "cpu_worker": view.get_worker_setup_commands("cpu_worker"),
    }
    for name, cmds in commands.items():
        installs = _pip_installs(cmds)
        assert installs, name
        for install in installs:
            if install == "pip install -q -U pip":
                continue
            if "--index-url https://download.pytorch.org/whl/" in install:
                assert re.search(r"\btorch==2\.13\.0 ", install), install
                continue
            assert f"-c {LOCK} " in install, f"{name}: not through the lock: {install}"
        assert sum("-e " in i for i in installs) == 1, name
        assert PROJECT_INSTALL[name] in installs, name
    # the venv's Python and the lock's agree, and the lock is a file that rsync uploads
    assert re.search(r"\bpython3\.12 -m venv ~/venv\b", "\n".join(commands["head"]))
    lock = ROOT / Path(LOCK).name
    assert lock.is_file()
    assert re.match(r"# Lock for Python 3\.12 ", lock.read_text())
    assert config["file_mounts"] == {"~/mtdiff": "."}
    assert config["rsync_filter"] == [".gitignore"]
    git = shutil.which("git")
    if git is not None and (ROOT / ".git").exists():
        ignored = subprocess.run([git, "-C", str(ROOT), "check-ignore", "-q", lock.name],
                                 capture_output=True)
        assert ignored.returncode == 1, "the lock is gitignored, so rsync would not upload it"


def test_mlflow_server_runs_on_the_head_and_every_node_gets_its_address() -> None:
    view = autoscaler_view(load())
    head_start = view.get_head_start_ray_commands()
    server = next(c for c in head_start if "mlflow server" in c)
    for flag in ("--backend-store-uri sqlite:///$HOME/mlflow/mlflow.db", "--serve-artifacts",
                 "--artifacts-destination", "--host $HEAD_IP", "--port 5000", "nohup"):
        assert flag in server, flag
    assert re.search(r"mlflow server.*&\)", server), "not started in the background"
    # the server starts before Ray; the URI is exported in the shell that starts Ray
    start_head = next(c for c in head_start if "ray start --head" in c)
    assert head_start.index(server) < head_start.index(start_head)
    assert start_head.index("export MLFLOW_TRACKING_URI=http://") < start_head.index(
        "ray start")
    assert "export MLFLOW_TRACKING_URI=http://$HEAD_IP:5000;" in start_head
    start_worker = next(c for c in view.get_worker_start_ray_commands() if "ray start" in c)
    assert "export MLFLOW_TRACKING_URI=http://$RAY_HEAD_IP:5000;" in start_worker
    assert start_worker.index("MLFLOW_TRACKING_URI") < start_worker.index("ray start")
    assert "--address=$RAY_HEAD_IP:6379" in start_worker


def test_every_command_is_valid_bash() -> None:
    """Quoting mistakes in YAML block scalars show up here, not after a 10-minute boot."""
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    view = autoscaler_view(load())
    commands = (view.get_head_setup_commands() + view.get_head_start_ray_commands()
                + view.get_worker_start_ray_commands()
                + view.get_worker_setup_commands("gpu_worker")
                + view.get_worker_setup_commands("cpu_worker"))
    script = "\n".join(f"( {c} )" for c in commands)
    result = subprocess.run([bash, "-n", "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_readme_cluster_section_matches() -> None:
    section = README.read_text().split("## On a cluster", 1)[1].split("\n## ", 1)[0]
    for needle in ("ray up cluster.yaml", "ray job submit", "pipelines/full_repro.py",
                   "ray down cluster.yaml", "docs/cluster.md"):
        assert needle in section, needle
    guide = GUIDE.read_text()
    for needle in ("ray up cluster.yaml", "ray job submit", "pipelines/full_repro.py",
                   "ray job logs", "ray down cluster.yaml", CUDA_TORCH):
        assert needle in guide, needle


HEAD_IP = "HEAD_IP=$(python -c 'import ray.util; print(ray.util.get_node_ip_address())');"


def test_head_services_listen_on_the_private_address_with_loopback_relays() -> None:
    """No 0.0.0.0: MLflow and the dashboard listen on the head's private address (what
    workers use), each with a loopback relay that `ray dashboard`'s SSH tunnels reach
    (they forward to localhost:<remote port> on the head)."""
    view = autoscaler_view(load())
    head_start = view.get_head_start_ray_commands()
    text = "\n".join(head_start + view.get_head_setup_commands())
    assert not re.search(r"(?<![\d.])0\.0\.0\.0(?![\d/])", text)  # (10.0.0.0/8 is NFS's)
    server = next(c for c in head_start if "mlflow server" in c)
    start_head = next(c for c in head_start if "ray start --head" in c)
    for cmd in (server, start_head):
        assert cmd.startswith(HEAD_IP), cmd  # each command runs in its own shell
    assert "--dashboard-host=$HEAD_IP" in start_head
    # /health is asked where the server listens (127.0.0.1 answers only through the relay)
    assert "curl -sf http://$HEAD_IP:5000/health" in server
    assert "127.0.0.1:5000" not in server
    relay = next(c for c in head_start if "socat" in c)
    assert relay.startswith(HEAD_IP)
    assert head_start.index(relay) > head_start.index(start_head) > head_start.index(server)
    assert "for port in 5000 8265; do" in relay
    assert "socat TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr,fork TCP:$HEAD_IP:$port" in relay
    assert 'pgrep -f "socat TCP-LISTEN:$port,bind=127.0.0.1"' in relay  # once per head
    assert "setsid nohup" in relay
    setup = "\n".join(view.get_head_setup_commands())
    assert re.search(r"apt-get .*install -y -q .*\bsocat\b", setup)
    # the tunnels the README gives land on the relays' ports
    for text in (README.read_text().split("## On a cluster", 1)[1].split("\n## ", 1)[0],
                 GUIDE.read_text()):
        assert "ray dashboard cluster.yaml  " in text
        assert "ray dashboard cluster.yaml --port 5000 --remote-port 5000" in text


def test_the_cluster_guide_says_how_to_turn_on_mlflow_basic_auth() -> None:
    section = GUIDE.read_text()
    for needle in ("--app-name basic-auth", "MLFLOW_FLASK_SERVER_SECRET_KEY",
                   "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_TRACKING_USERNAME",
                   "MLFLOW_TRACKING_PASSWORD", "mlflow[auth]"):
        assert needle in section, needle
