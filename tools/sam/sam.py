"""The SAM CLI, with `--docker-network host` doing what it says (run with .venv-sam/bin/python).

SAM CLI 1.170.0 accepts `--docker-network host` but creates the function container on
Docker's default bridge anyway: samcli/local/docker/container.py skips `network.connect()` for
"host" and no longer sets `network_mode` (older releases did; aws/aws-sam-cli#3609, #7732 and
the unmerged PR #7278 describe it). The function then cannot reach services on the host's
loopback, such as the moto server and the local Kubernetes API server of
tools/local-stack.sh, whose kubeconfig and TLS certificate name 127.0.0.1.

This wrapper changes nothing on disk. When `--docker-network host` is on the command line it
wraps docker-py's `containers.create` for SAM's Lambda containers only (label
sam.cli.container.type=lambda) to:
- set network_mode=host and drop the port publication (meaningless on the host network);
- move the runtime interface emulator from the container's 0.0.0.0:8080 to 127.0.0.1 on the
  free host port SAM already picked and will connect to, and its Runtime API from
  127.0.0.1:9001 to another free loopback port, so nothing collides with host services.
Everything else is the unmodified SAM CLI.
"""

import re
import socket
import sys


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _host_network_patch():
    from docker.models.containers import ContainerCollection

    original = ContainerCollection.create

    def create(self, image, command=None, **kwargs):
        labels = kwargs.get("labels") or {}
        if labels.get("sam.cli.container.type") == "lambda" and "network_mode" not in kwargs:
            ports = kwargs.pop("ports", None) or {}
            rie_port = None
            for container_port, binding in ports.items():
                if str(container_port).split("/")[0] == "8080":
                    rie_port = binding[1] if isinstance(binding, tuple) else binding
            if rie_port is None:
                raise RuntimeError(f"sam.py: cannot find the emulator's host port in {ports!r}")
            entrypoint = list(kwargs.get("entrypoint") or [])
            if not entrypoint or not entrypoint[0].endswith("aws-lambda-rie"):
                raise RuntimeError(f"sam.py: unexpected entrypoint {entrypoint!r}")
            kwargs["entrypoint"] = entrypoint + [
                "--runtime-interface-emulator-address",
                f"127.0.0.1:{rie_port}",
                "--runtime-api-address",
                f"127.0.0.1:{_free_port()}",
            ]
            kwargs["network_mode"] = "host"
        return original(self, image, command, **kwargs)

    ContainerCollection.create = create


def main():
    args = sys.argv[1:]
    joined = " ".join(args)
    if re.search(r"--docker-network(=|\s+)host(\s|$)", joined):
        _host_network_patch()
    from samcli.cli.main import cli

    sys.argv[0] = "sam"
    sys.exit(cli())


if __name__ == "__main__":
    main()
