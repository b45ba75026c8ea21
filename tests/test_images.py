"""The image cache's error rule, on a fake engine client (pure logic: what every step
waiting on one image hears)."""

from __future__ import annotations

import anyio
import pytest

from dagbox.runtimes import SetupError
from dagbox.runtimes.container_engine import ContainerEngineError
from dagbox.runtimes.images import Images


class _Silent:
    """An engine whose image inspect never answers in time."""

    class images:  # the shape of aiodocker's client.images
        calls = 0

        @classmethod
        async def inspect(cls, name: str) -> dict[str, object]:
            cls.calls += 1
            raise ContainerEngineError("the engine did not answer inspecting image x within 1s")


def test_an_image_lookup_that_gets_no_answer_fails_every_step_that_waits_on_it():
    images = Images(_Silent(), lambda message: None)  # type: ignore[arg-type]

    async def main() -> list[str]:
        told = []
        for _ in range(2):
            with pytest.raises(SetupError) as caught:
                await images.ensure("x", "missing", None)
            told.append(str(caught.value))
        return told

    told = anyio.run(main)
    assert (
        told
        == ["cannot inspect image x: the engine did not answer inspecting image x within 1s"] * 2
    )
    assert _Silent.images.calls == 1  # asked once; the second step heard the same answer
