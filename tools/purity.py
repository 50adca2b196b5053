#!/usr/bin/env python3
"""The pure core stays pure: no I/O crate in kargo-match's dependency closure.

Reads `cargo metadata` (resolved graph, normal dependencies only: dev- and build-dependencies
never reach the compiled library) and walks the closure of the `kargo-match` package. Any
package whose name marks it as I/O fails the check, with the path that pulls it in. The
compiler already refuses `tokio::` in a crate that does not depend on tokio; this check keeps
such a dependency from being added at all.
"""
import json
import re
import subprocess
import sys

CRATE = sys.argv[1] if len(sys.argv) > 1 else "kargo-match"
# Runtime, network, cloud and Lambda crates: none belongs in the pure core.
IO = re.compile(
    r"^(tokio|tokio-.*|mio|socket2|hyper|hyper-.*|h2|tower|tower-.*|reqwest|kube|kube-.*|"
    r"k8s-openapi|aws-.*|lambda_.*|lambda-.*|rustls|rustls-.*|native-tls|openssl|openssl-sys|"
    r"async-std|smol|futures-io|http-body|http-body-util)$"
)


def main() -> int:
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--locked"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    names = {p["id"]: p["name"] for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    roots = [i for i, name in names.items() if name == CRATE and i in meta["workspace_members"]]
    if not roots:
        print(f"purity: package {CRATE} not found in the workspace", file=sys.stderr)
        return 1
    # Breadth-first over normal (non-dev, non-build) edges, remembering who pulled whom in.
    parent = {roots[0]: None}
    queue = [roots[0]]
    while queue:
        current = queue.pop(0)
        for dep in nodes[current]["deps"]:
            if not any(k.get("kind") is None for k in dep["dep_kinds"]):
                continue
            if dep["pkg"] not in parent:
                parent[dep["pkg"]] = current
                queue.append(dep["pkg"])
    bad = []
    for pkg in parent:
        if IO.match(names[pkg]):
            chain, at = [], pkg
            while at is not None:
                chain.append(names[at])
                at = parent[at]
            bad.append(" <- ".join(chain))
    if bad:
        print(f"purity: {CRATE} must not depend on I/O crates:", file=sys.stderr)
        for line in sorted(bad):
            print(f"  {line}", file=sys.stderr)
        return 1
    print(f"purity: {CRATE}'s {len(parent) - 1} dependencies hold no I/O crate")
    return 0


if __name__ == "__main__":
    sys.exit(main())
