# Shared by scripts/ensure-docker and scripts/ensure-podman (sourced, not run).

IMAGE="${DAGBOX_TEST_IMAGE:-dagbox-test/busybox:latest}"
FAKE_AGENT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/tests/fixtures/fake-agent"
# The image carries the fake agent's hash, so that changing the agent rebuilds the image.
FAKE_AGENT_SHA="$(sha256sum "$FAKE_AGENT" | cut -c1-16)"

say() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; }
die() { say "error: $*"; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        die "need root to run: $*"
    fi
}

apt_install() {
    command -v apt-get >/dev/null || die "this is not a Debian-like system; install $* yourself"
    say "installing $* with apt"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# A dynamically linked busybox would not run inside an empty rootfs.
file_is_static() { ! ldd "$1" >/dev/null 2>&1; }

# Write the offline test image's root filesystem, as a tar stream, to stdout:
# static busybox with its applet links, /bin/sh, /tmp, /etc/passwd and /etc/group, and
# the fake agent as /usr/local/bin/fake-agent, claude and codex.
test_rootfs_tar() {
    local busybox root
    busybox="$(command -v busybox || true)"
    if [ -z "$busybox" ] || ! file_is_static "$busybox"; then
        apt_install busybox-static
        busybox="$(command -v busybox)"
    fi
    root="$(mktemp -d)"
    mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root,work}
    chmod 1777 "$root/tmp"
    cp "$busybox" "$root/bin/busybox"
    local applet
    for applet in $("$busybox" --list-full); do
        [ "$applet" = bin/busybox ] && continue
        mkdir -p "$root/$(dirname "$applet")"
        ln -sf /bin/busybox "$root/$applet"
    done
    [ -e "$root/bin/sh" ] || ln -s /bin/busybox "$root/bin/sh"
    mkdir -p "$root/usr/local/bin"
    cp "$FAKE_AGENT" "$root/usr/local/bin/fake-agent"
    ln -s fake-agent "$root/usr/local/bin/claude"   # the fake agent answers as claude and codex
    ln -s fake-agent "$root/usr/local/bin/codex"
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
    tar -C "$root" -c .
    rm -rf "$root"
}

# `docker import` / `podman import` options that make the rootfs a usable image.
IMPORT_CHANGES=(
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
    --change 'CMD ["/bin/sh"]'
    --change "LABEL dagbox.fake-agent=$FAKE_AGENT_SHA"
)

# True when engine $1 (docker or podman) has the test image with the current fake agent.
image_is_current() {
    [ "$("$1" image inspect -f '{{index .Config.Labels "dagbox.fake-agent"}}' "$IMAGE" 2>/dev/null)" = "$FAKE_AGENT_SHA" ]
}
