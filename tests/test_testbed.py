"""The test bed itself: a real Docker engine and the offline busybox image.

Later runtime tests build on these facts, so they are checked here against
the real engine: the image has what steps need, and aiodocker's attach-before-
start keeps stdout and stderr apart with the exit code from wait().
"""

import os
import subprocess
import uuid

import anyio
import pytest

pytestmark = pytest.mark.docker


def docker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_offline_image_has_a_shell_and_the_usual_tools(docker_engine):
    out = docker(
        "run",
        "--rm",
        "--network",
        "none",
        docker_engine,
        "sh",
        "-c",
        "for t in sh env sleep timeout kill cat wc id hostname; do command -v $t >/dev/null || echo missing $t; done;"
        " test -d /tmp && test -f /etc/passwd && id -un",
    )
    assert (out.returncode, out.stdout) == (0, "root\n"), out.stderr


def test_offline_image_runs_as_another_user(docker_engine):
    out = docker("run", "--rm", "--user", "65534", docker_engine, "id", "-u")
    assert out.stdout.strip() == "65534"


def test_attach_before_start_keeps_streams_apart(docker_engine):
    import aiodocker

    run_id = f"testbed-{uuid.uuid4().hex[:8]}"

    async def main() -> tuple[int, bytes, bytes]:
        async with aiodocker.Docker(url=os.environ.get("DOCKER_HOST")) as client:
            container = await client.containers.create(
                {
                    "Image": docker_engine,
                    "Cmd": ["sh", "-c", "echo out1; echo err1 >&2; printf 'partial'; exit 7"],
                    "Labels": {"dagbox.run_id": run_id, "dagbox.step": "testbed"},
                    "AttachStdout": True,
                    "AttachStderr": True,
                    "HostConfig": {"NetworkMode": "none", "Init": True},
                }
            )
            out, err = bytearray(), bytearray()
            try:
                with anyio.fail_after(30):
                    async with container.attach(stdout=True, stderr=True) as stream:
                        await container.start()
                        while (msg := await stream.read_out()) is not None:
                            (out if msg.stream == 1 else err).extend(msg.data)
                    status = (await container.wait())["StatusCode"]
            finally:
                with anyio.CancelScope(shield=True), anyio.move_on_after(15):
                    await container.delete(force=True)
            return status, bytes(out), bytes(err)

    status, out, err = anyio.run(main)
    assert (status, out, err) == (7, b"out1\npartial", b"err1\n")
    assert docker("ps", "-aq", "--filter", f"label=dagbox.run_id={run_id}").stdout == ""
