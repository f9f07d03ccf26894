"""cluster/: the launcher YAML and KubeRay manifests parse, keep their promises, and name only real CLI options.

What is checked is the files themselves (no cloud here): the AWS file against Ray's own cluster-config
schema; every cluster is S3-only (no shared volume), token auth on, the head schedules no trials; every
`diad-sweep` command line in cluster/ parses with the real CLI.
"""

import json
import re
import shlex
from pathlib import Path

import click
import pytest
import yaml

from diad.sweep.cli import main

CLUSTER = Path(__file__).resolve().parents[1] / "cluster"
FILES = ("aws-gpu.yaml", "kuberay-raycluster.yaml", "kuberay-rayjob.yaml")


def _load(name: str) -> dict:
    return yaml.safe_load((CLUSTER / name).read_text())


def _pods(doc: dict) -> list[dict]:
    """Pod specs of a RayCluster or RayJob: the head group's and each worker group's."""
    spec = doc["spec"].get("rayClusterSpec", doc["spec"])
    return [spec["headGroupSpec"]["template"]["spec"]] + [g["template"]["spec"] for g in spec["workerGroupSpecs"]]


def _commands(text: str, comments_only: bool) -> list[str]:
    """The `diad-sweep ...` command lines of a file: lines (YAML: comment lines) that start one, or run one after
    `ray job submit ... --`, backslash continuations joined; plus inline `diad-sweep ... --option` code."""
    lines = text.splitlines()
    if comments_only:
        lines = [ln for ln in lines if ln.lstrip().startswith("#")]
    lines = [re.sub(r"^\s*#?\s*", "", ln) for ln in lines]
    out, i = [], 0
    while i < len(lines):
        line = lines[i]
        while line.endswith("\\") and i + 1 < len(lines):
            i += 1
            line = line[:-1].rstrip() + " " + lines[i]
        if line.startswith("diad-sweep ") or " -- diad-sweep " in line:
            out.append(re.split(r"\s+#\s", line[line.index("diad-sweep "):])[0])
        i += 1
    return out + re.findall(r"`(diad-sweep [^`]* --[^`]*)`", text)


def _parses(command: str) -> list[str]:
    args = shlex.split(command)[1:]
    ctx = click.Context(main)
    sub = main.get_command(ctx, args[0])
    assert sub is not None, command
    sub.make_context(args[0], args[1:])  # raises on an unknown option or a missing argument
    return args


@pytest.mark.parametrize("name", FILES)
def test_parses_and_needs_no_shared_file_system(name):
    text = (CLUSTER / name).read_text()
    assert isinstance(_load(name), dict)
    for shared in ("PersistentVolumeClaim", "persistentVolumeClaim", "/mnt/efs", "nfs4", "ReadWriteMany"):
        assert shared not in text, f"{name} mounts a shared file system ({shared}): the clusters are S3-only"
    assert "RAY_AUTH_MODE=disabled" not in text and "mode: disabled" not in text


def test_aws_launcher_config_is_valid_for_ray():
    jsonschema = pytest.importorskip("jsonschema")
    import ray.autoscaler

    cfg = _load("aws-gpu.yaml")
    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(cfg, schema)  # the schema `ray up` validates against (no extra keys allowed)
    assert cfg["available_node_types"]["head"]["resources"] == {"CPU": 0}
    assert any("--num-cpus=0" in c for c in cfg["head_start_ray_commands"])
    assert "-e RAY_AUTH_MODE=token" in cfg["docker"]["run_options"]
    assert all("IamInstanceProfile" in t["node_config"] for t in cfg["available_node_types"].values())


@pytest.mark.parametrize("name", FILES[1:])
def test_kuberay_manifests_token_auth_local_volumes(name):
    doc = _load(name)
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] in ("RayCluster", "RayJob")
    spec = doc["spec"].get("rayClusterSpec", doc["spec"])
    assert spec["authOptions"]["mode"] == "token"
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    for pod in _pods(doc):
        assert all("emptyDir" in v for v in pod["volumes"])  # each pod's own disk
        for container in pod["containers"] + pod.get("initContainers", []):
            assert {"secretRef": {"name": "diad-s3"}} in container["envFrom"]  # S3 credentials everywhere


def test_every_diad_sweep_command_in_cluster_is_valid_and_uses_s3():
    commands = [c for f in (*FILES, "README.md") for c in _commands((CLUSTER / f).read_text(), f != "README.md")]
    commands.append(_load("kuberay-rayjob.yaml")["spec"]["entrypoint"])
    assert len(commands) >= 8
    for command in commands:
        args = _parses(command)
        if args[0] in ("launch", "resume"):
            storage = args[args.index("--storage") + 1]
            assert storage.startswith("s3://") and args[args.index("--address") + 1] == "auto", command
