#!/usr/bin/env bash
# Builds the local stand-in for public.ecr.aws/lambda/provided:al2023 (x86_64) that
# `sam local invoke --invoke-image quayhook-provided-al2023:local --skip-pull-image` runs the
# bootstrap in. No registry is needed: the root filesystem is assembled from this Debian
# host's own files and loaded with `docker import`.
#
#   tools/sam/base-image.sh          # build unless an up-to-date image exists
#   tools/sam/base-image.sh --force  # rebuild
#
# What the image must offer (from samcli/local/docker/lambda_image.py and lambda_container.py,
# SAM CLI 1.170.0):
# - SAM builds `<image repo>:rapid-x86_64` from a generated Dockerfile: FROM this image,
#   `ADD aws-lambda-rie-x86_64 /var/rapid/`, then `RUN mv ... && chmod +x ...`, so /bin/sh,
#   mv and chmod (and cp/rm for layers) must exist. The emulator itself is a static Go binary.
# - The container runs `/var/rapid/aws-lambda-rie --log-level error` as root, working dir
#   /var/task, with the function's code dir bind-mounted at /var/task; with no handler command
#   the emulator starts /var/task/bootstrap (provided runtimes).
# - The bootstrap is a dynamically linked glibc program: ld-linux, libc, libm, libpthread,
#   libdl, libgcc_s (the zig-linked cargo-lambda build needs no libgcc_s; the host `cargo build`
#   does), resolver libraries for DNS, and a CA bundle.
# The environment mirrors the real image (LAMBDA_TASK_ROOT, LAMBDA_RUNTIME_DIR, PATH,
# LD_LIBRARY_PATH, TZ). glibc here is Debian bookworm's 2.36; AL2023 has 2.34, and a
# cargo-lambda build targets an older glibc than both, so what runs here also runs there.
set -euo pipefail
cd "$(dirname "$0")/../.."

IMAGE=${QUAYHOOK_BASE_IMAGE:-quayhook-provided-al2023:local}
RAPID_IMAGE="${IMAGE%:*}:rapid-x86_64" # what SAM derives from it (see lambda_image.py)
WORK=${RUN_DIR:-$PWD/target/run}/base-image

if ! docker info >/dev/null 2>&1; then
  echo "base-image: no Docker engine answers (docker info failed)" >&2
  exit 1
fi
if [ "$(uname -m)" != x86_64 ]; then
  echo "base-image: this script copies an x86_64 Debian host's libraries; host is $(uname -m)" >&2
  exit 1
fi

# The image is current when it was built by this script from this host's glibc.
rev=$( { sha256sum "$0"; dpkg-query -W -f '${Version}\n' libc6 libgcc-s1 coreutils dash; } |
  sha256sum | cut -c1-16)
if [ "${1:-}" != --force ] &&
  [ "$(docker image inspect -f '{{index .Config.Labels "quayhook.base-image.rev"}}' "$IMAGE" 2>/dev/null)" = "$rev" ]; then
  echo "base-image: $IMAGE is up to date"
  exit 0
fi

echo "base-image: building $IMAGE from this host's files (no registry)"
rm -rf "$WORK"
root=$WORK/rootfs
mkdir -p "$root"/usr/{bin,lib/x86_64-linux-gnu,lib64} "$root"/etc/{ssl/certs,pki/tls/certs,ld.so.conf.d} \
  "$root"/var/{task,runtime,rapid,lang/bin} "$root"/opt "$root"/tmp "$root"/proc "$root"/sys "$root"/dev
ln -s usr/bin "$root/bin"
ln -s usr/bin "$root/sbin"
ln -s usr/lib "$root/lib"
ln -s usr/lib64 "$root/lib64"
chmod 1777 "$root/tmp"

libdir=/usr/lib/x86_64-linux-gnu
copy_lib() { # copy a library (following symlinks) into the rootfs under its own name
  local src=$1
  [ -e "$src" ] || { echo "base-image: missing $src on this host" >&2; exit 1; }
  cp -L "$src" "$root$libdir/$(basename "$src")"
}

# The C runtime any glibc program may need (what the libc6 and libgcc-s1 packages provide),
# minus locales, gconv and debugging helpers.
for lib in ld-linux-x86-64.so.2 libc.so.6 libm.so.6 libmvec.so.1 libpthread.so.0 libdl.so.2 \
  librt.so.1 libutil.so.1 libanl.so.1 libresolv.so.2 libnss_files.so.2 libnss_dns.so.2 \
  libgcc_s.so.1; do
  copy_lib "$libdir/$lib"
done
ln -s ../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$root/usr/lib64/ld-linux-x86-64.so.2"

# A shell and the few tools SAM's generated Dockerfile and layer handling run, with their
# libraries.
tools=(sh mv chmod cp rm mkdir ln cat ls env)
for tool in "${tools[@]}"; do
  src=$(command -v "$tool")
  cp -L "$src" "$root/usr/bin/$tool"
  for dep in $(ldd "$src" | grep -o '/[^ ]*\.so[^ ]*'); do
    [ -e "$root$libdir/$(basename "$dep")" ] || copy_lib "$dep"
  done
done

# /etc: users, name service, loader cache, CA bundle (Debian and Amazon Linux paths), zone.
cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
sbx_user1051:x:993:990::/home/sbx_user1051:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
sbx_user1051:x:990:
nogroup:x:65534:
EOF
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$root/etc/nsswitch.conf"
printf 'include /etc/ld.so.conf.d/*.conf\n' >"$root/etc/ld.so.conf"
printf '/usr/lib/x86_64-linux-gnu\n/usr/lib64\n' >"$root/etc/ld.so.conf.d/x86_64-linux-gnu.conf"
ldconfig -r "$root"
cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
ln -s ../../../ssl/certs/ca-certificates.crt "$root/etc/pki/tls/certs/ca-bundle.crt"
cp -L /usr/share/zoneinfo/UTC "$root/etc/localtime" 2>/dev/null || true
cat >"$root/etc/os-release" <<'EOF'
NAME="quayhook provided.al2023 stand-in"
ID=quayhook-local
PRETTY_NAME="Local stand-in for public.ecr.aws/lambda/provided:al2023 (Debian bookworm libraries)"
EOF

# Smoke test before importing: the loader, libc and the shell work inside the rootfs layout.
if command -v chroot >/dev/null && [ "$(id -u)" = 0 ]; then
  chroot "$root" /bin/sh -c 'mv --version >/dev/null && chmod --version >/dev/null' ||
    { echo "base-image: the rootfs cannot run its own shell tools" >&2; exit 1; }
fi

docker image rm -f "$RAPID_IMAGE" >/dev/null 2>&1 || true # SAM would keep using a stale one
tar --numeric-owner --owner=0 --group=0 -C "$root" -c . | docker import \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV TZ=:/etc/localtime' \
  --change 'ENV PATH=/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin' \
  --change 'ENV LD_LIBRARY_PATH=/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib' \
  --change 'ENV LAMBDA_TASK_ROOT=/var/task' \
  --change 'ENV LAMBDA_RUNTIME_DIR=/var/runtime' \
  --change 'WORKDIR /var/task' \
  --change "LABEL quayhook.base-image.rev=$rev" \
  --message "quayhook: local provided.al2023 stand-in" \
  - "$IMAGE" >/dev/null
rm -rf "$WORK"
echo "base-image: built $IMAGE ($(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.1f MB", $1/1e6}'))"
