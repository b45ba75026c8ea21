"""Make an image available according to a pull policy, once per image per run.

``always`` pulls; ``missing`` pulls when no local image matches (the platform
too, when one is set); ``never`` only inspects; ``fallback`` tries to pull and
keeps the local image if that fails. Each failure is one line that names the
image. Pull progress goes to ``notify`` as a line per layer state change,
at most one progress line per second.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import anyio

from dagbox.runtimes import Notify, SetupError
from dagbox.runtimes.container_engine import ContainerEngineError, inspect, message_of

if TYPE_CHECKING:
    import aiodocker


class Images:
    def __init__(self, client: aiodocker.Docker, notify: Notify) -> None:
        self.client = client
        self.notify = notify
        self._ready: dict[tuple[str, str, str | None], anyio.Event] = {}
        self._errors: dict[tuple[str, str, str | None], SetupError] = {}

    async def ensure(
        self, image: str, policy: str, platform: str | None, notify: Notify | None = None
    ) -> None:
        """Raise SetupError (failure class ``infra_image``) when the image cannot be had."""
        key = (image, policy, platform)
        event = self._ready.get(key)
        if event is not None:  # another step is already getting it: wait, share the outcome
            await event.wait()
        else:
            event = self._ready[key] = anyio.Event()
            try:
                await self._get(image, policy, platform, notify or self.notify)
            except SetupError as exc:
                self._errors[key] = exc
            finally:
                event.set()
        if key in self._errors:
            raise self._errors[key]

    async def _local(self, image: str, platform: str | None) -> dict[str, Any] | None:
        try:
            info: dict[str, Any] | None = await inspect(
                self.client.images.inspect(image), f"image {image}"
            )
        except ContainerEngineError as exc:  # no answer: as any refusal, every waiter hears it
            raise SetupError(f"cannot inspect image {image}: {message_of(exc)}") from None
        if info is None:
            return None
        if platform:
            os_, _, arch = platform.partition("/")
            arch = arch.split("/")[0]
            if info.get("Os") != os_ or (arch and info.get("Architecture") != arch):
                return None
        return info

    async def _get(self, image: str, policy: str, platform: str | None, notify: Notify) -> None:
        if policy in ("missing", "never"):
            if await self._local(image, platform) is not None:
                return
            if policy == "never":
                raise SetupError(
                    f"image {image} is not present and pull_policy is never", "infra_image"
                )
        try:
            await self._pull(image, platform, notify)
        except SetupError:
            if policy == "fallback" and await self._local(image, None) is not None:
                notify(f"pull of {image} failed; using the local image (pull_policy: fallback)")
                return
            raise

    async def _pull(self, image: str, platform: str | None, notify: Notify) -> None:
        notify(f"pulling {image}")
        last_progress = 0.0
        states: dict[str, str] = {}
        try:
            async for event in self.client.images.pull(image, stream=True, platform=platform):
                if "error" in event:
                    raise SetupError(f"cannot pull {image}: {event['error']}", "infra_image")
                layer, status = event.get("id"), event.get("status", "")
                if (
                    layer
                    and status
                    and states.get(layer) != status
                    and "Downloading" not in status
                    and "Extracting" not in status
                ):
                    states[layer] = status
                    notify(f"{image}: {layer} {status}")
                elif event.get("progress") and time.monotonic() - last_progress >= 1.0:
                    last_progress = time.monotonic()
                    notify(f"{image}: {layer} {status} {event['progress']}")
        except SetupError:
            raise
        except Exception as exc:
            raise SetupError(f"cannot pull {image}: {message_of(exc)}", "infra_image") from None
        notify(f"pulled {image}")
