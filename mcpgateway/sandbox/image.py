"""Building the default sandbox image from local files (no registry needed).

A `debootstrap --variant=minbase` Debian root filesystem with Python, trimmed (no apt
caches, docs or locales), `docker import`ed with the sandbox's user and working
directory. The recipe's hash is stored in the image's environment, so a rebuild happens
only when the recipe changes. Needs root (debootstrap) and a reachable Debian mirror.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import docker
from docker.errors import DockerException, ImageNotFound

from mcpgateway.sandbox.config import DEFAULT_IMAGE
from mcpgateway.sandbox.errors import SandboxUnavailable

RECIPE_VAR = "AGENTDECK_SANDBOX_RECIPE"
RECIPE_VERSION = "1"
TRIM = ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/info",
        "usr/share/locale", "var/log")


@dataclass(frozen=True)
class Recipe:
    tag: str = DEFAULT_IMAGE
    suite: str = "bookworm"
    mirror: str = ""
    packages: tuple[str, ...] = ("python3",)

    def resolved_mirror(self) -> str:
        return self.mirror or configured_mirror()

    def digest(self) -> str:
        text = "|".join([RECIPE_VERSION, self.suite, self.resolved_mirror(), ",".join(sorted(self.packages))])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def configured_mirror() -> str:
    """The Debian mirror this machine's apt uses (so a proxy or local mirror is honoured)."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            words = line.split()
            if line.startswith("URIs:") and len(words) > 1 and "security" not in words[1]:
                return words[1]
            if words[:1] == ["deb"] and len(words) > 2 and "security" not in line:
                return next(w for w in words[1:] if "://" in w)
    return "http://deb.debian.org/debian"


def current_digest(client: docker.DockerClient, tag: str) -> str | None:
    try:
        image = client.images.get(tag)
    except ImageNotFound:
        return None
    for item in image.attrs.get("Config", {}).get("Env") or []:
        name, _, value = item.partition("=")
        if name == RECIPE_VAR:
            return value
    return ""


def build_image(recipe: Recipe, *, force: bool = False, log=print) -> bool:
    """Build and import the image unless an identical one is there; True if it was built."""
    try:
        client = docker.from_env(timeout=300)
        client.ping()
    except (DockerException, OSError) as exc:
        raise SandboxUnavailable(f"no Docker engine is reachable: {exc}") from None
    digest = recipe.digest()
    if not force and current_digest(client, recipe.tag) == digest:
        log(f"{recipe.tag} is up to date (recipe {digest})")
        return False
    if shutil.which("debootstrap") is None:
        raise SandboxUnavailable("debootstrap is not installed (apt-get install debootstrap)")
    if os.geteuid() != 0:
        raise SandboxUnavailable("building the rootfs needs root (debootstrap); run as root or import an image yourself")
    with tempfile.TemporaryDirectory(prefix="agentdeck-sandbox-") as scratch:
        rootfs = Path(scratch) / "rootfs"
        command = ["debootstrap", "--variant=minbase", f"--include={','.join(recipe.packages)}", recipe.suite,
                   str(rootfs), recipe.resolved_mirror()]
        log("$ " + " ".join(command))
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise SandboxUnavailable(f"debootstrap failed ({done.returncode}): {done.stderr[-2000:] or done.stdout[-2000:]}")
        for relative in TRIM:
            target = rootfs / relative
            if target.is_dir():
                for child in target.iterdir():
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child)
                    else:
                        child.unlink()
        (rootfs / "workspace").mkdir(mode=0o755, exist_ok=True)
        archive = Path(scratch) / "rootfs.tar"
        with tarfile.open(archive, "w") as tar:
            tar.add(rootfs, arcname=".")
        repository, _, tag = recipe.tag.rpartition(":")
        if not repository or "/" in tag:
            repository, tag = recipe.tag, "latest"
        changes = ["USER 65534:65534", "WORKDIR /workspace", "ENV LANG=C.UTF-8", f"ENV {RECIPE_VAR}={digest}",
                   'CMD ["sleep", "infinity"]']
        client.api.import_image_from_file(str(archive), repository=repository, tag=tag, changes=changes)
    log(f"built {recipe.tag} (recipe {digest})")
    return True
