"""The stack image: Debian minbase + Python and Node, made with debootstrap and `docker import`, no registry needed.

Dockerfile apps build `FROM` it and buildpacks compile in it. It carries the host's CA bundle so builds
that reach PyPI or npm through a TLS-inspecting proxy work unchanged, `uv` (from PyPI, in a venv at
/opt/uv) for fast Python installs, and the unprivileged user buildpacks run as (uid 32767, home /app).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger

from pushdock import proc
from pushdock.errors import BuildFailed, PushdockError

if TYPE_CHECKING:
    from pushdock.context import Context
    from pushdock.progress import Progress

DEFAULT_SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_INCLUDE = ("python3", "python3-venv", "python3-pip", "ca-certificates", "curl")
# uv from PyPI, pinned, into its own venv in the image (the python buildpack uses it when present).
UV_REQUIREMENT = "uv==0.13.9"  # as set-up's (scripts/uv-requirements.txt): a rebuilt stack is the same stack
UV_VENV = "/opt/uv"
# Node: Debian's nodejs (18 in bookworm); npm from the registry (npm 10 supports node >= 18.17).
NODE_PACKAGES = ("nodejs",)
NPM_REQUIREMENT = "npm@10.9.9"  # pinned, as uv is
CHROOT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8",
    "DEBIAN_FRONTEND": "noninteractive",
}
APP_USER = "herokuishuser"
APP_UID = 32767
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
CHANGES = (
    "ENV LANG=C.UTF-8",
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
)
# What apt leaves behind that an image does not need (relative to the root file system).
APT_LEFTOVERS = ("var/cache/apt/*.bin", "var/cache/apt/archives/*.deb", "var/lib/apt/lists/*")
IMPORT_TIMEOUT = 600
CHUNK = 1 << 20


@dataclass(frozen=True)
class StackImage:
    image: str
    size: int  # bytes, as the engine reports it
    seconds: float  # 0.0 when it already existed and was not rebuilt
    built: bool


def stack_image_info(image: str) -> StackImage | None:
    """The image if the engine has it, else None."""
    import docker  # noqa: PLC0415 -- start-up: docker loads when first used

    api = _docker_api()
    try:
        size = int(api.inspect_image(image).get("Size") or 0)
    except docker.errors.ImageNotFound:
        return None
    return StackImage(image=image, size=size, seconds=0.0, built=False)


def build_stack_image(
    ctx: Context,
    progress: Progress,
    *,
    image: str | None = None,
    suite: str = DEFAULT_SUITE,
    mirror: str = DEFAULT_MIRROR,
    include: Sequence[str] = DEFAULT_INCLUDE,
    ca_bundle: Path = HOST_CA_BUNDLE,
    workdir: Path | None = None,
    extras: Sequence[str] | None = None,
) -> StackImage:
    """Bootstrap Debian `suite` into a temp dir and import it as `image` (default: settings.stack_image).

    Needs root and debootstrap. `extras` names steps of EXTRAS run after debootstrap (default: all of
    them with the default `include`, none with a custom one).
    The temp dir (under `workdir`, default the system's) is removed whatever happens.
    """
    image = image or ctx.settings.stack_image
    if os.geteuid() != 0:
        raise PushdockError("building the stack image needs root (debootstrap)")
    api = _docker_api()
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="pushdock-stack-", dir=workdir))
    rootfs = work / "rootfs"
    try:
        argv = ["debootstrap", "--variant=minbase", f"--include={','.join(include)}", suite, str(rootfs), mirror]
        progress.step(f"Bootstrapping Debian {suite} from {mirror}")
        logger.info("stack debootstrap", image=image, suite=suite, mirror=mirror, include=",".join(include))
        errors: list[str] = []

        def on_line(line: str) -> None:
            if line.startswith("E: "):
                errors.append(line[3:].strip())
            progress.detail(line)

        rc = proc.stream(argv, on_line)
        if rc != 0:
            tail = errors[-1] if errors else _debootstrap_error(rootfs)
            raise BuildFailed(f"debootstrap exited {rc}" + (f": {tail}" if tail else ""))
        _install_ca_bundle(rootfs, ca_bundle)  # first: npm and pip reach their registries through it
        _add_app_user(rootfs)
        for extra in (EXTRAS if extras is None and tuple(include) == DEFAULT_INCLUDE else extras or ()):
            EXTRAS[extra](rootfs, progress)
        _customise(rootfs, ca_bundle)  # again: apt's ca-certificates trigger may have rewritten the bundle
        progress.step(f"Importing {image}")
        old_id = _image_id(api, image)
        new_id = _import(api, rootfs, image, work)
    finally:
        _remove_tree(work)
    if old_id and old_id != new_id:
        _remove_replaced(api, old_id)
    size = int(api.inspect_image(image).get("Size") or 0)
    seconds = time.monotonic() - started
    logger.info("stack image built", image=image, size=size, seconds=round(seconds, 1))
    progress.step(f"Stack image {image} ready ({size / 1e6:.0f} MB in {seconds:.0f}s)")
    return StackImage(image=image, size=size, seconds=seconds, built=True)


def _customise(rootfs: Path, ca_bundle: Path) -> None:
    """The host CA bundle in, apt's caches and lists out. Never write through a link in the rootfs."""
    _install_ca_bundle(rootfs, ca_bundle)
    for pattern in APT_LEFTOVERS:
        for path in rootfs.glob(pattern):
            if path.is_symlink() or path.is_file():
                path.unlink()


def _install_ca_bundle(rootfs: Path, ca_bundle: Path) -> None:
    if ca_bundle.is_file():
        target = rootfs / "etc/ssl/certs/ca-certificates.crt"
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.exists():
            target.unlink()
        shutil.copyfile(ca_bundle, target)
        os.chmod(target, 0o644)
    else:
        logger.warning("no host CA bundle to copy into the stack", path=str(ca_bundle))


def _add_app_user(rootfs: Path) -> None:
    """The user buildpacks and apps run as (Heroku's uid 32767, home /app), and /app, /cache owned by it."""
    if proc.run(["chroot", str(rootfs), "getent", "passwd", APP_USER], check=False).returncode != 0:
        proc.run(["chroot", str(rootfs), "useradd", "--uid", str(APP_UID), "--user-group", "--home-dir", "/app",
                  "--no-create-home", "--shell", "/bin/bash", APP_USER])
    for rel in ("app", "cache"):
        path = rootfs / rel
        path.mkdir(exist_ok=True)
        os.chown(path, APP_UID, APP_UID)


def _install_node(rootfs: Path, progress: Progress) -> None:
    """nodejs from Debian; npm from the npm registry, bootstrapped with Debian's npm, which is then purged.

    Debian's npm 9.2 drags in ~350 node-* packages (+176 MB); the registry's npm is one package (~11 MB).
    """
    progress.step(f"Installing {' '.join(NODE_PACKAGES)} and {NPM_REQUIREMENT}")
    _chroot(rootfs, progress, "apt-get", "update", "-qq")
    _chroot(rootfs, progress, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *NODE_PACKAGES, "npm")
    _chroot(rootfs, progress, "npm", "install", "--global", "--no-fund", "--no-audit", "--no-update-notifier",
            "--loglevel=error", NPM_REQUIREMENT)
    _chroot(rootfs, progress, "apt-get", "purge", "-y", "-qq", "npm")
    _chroot(rootfs, progress, "apt-get", "autoremove", "-y", "-qq", "--purge")
    for rel in ("root/.npm", "root/.cache"):
        shutil.rmtree(rootfs / rel, ignore_errors=True)


def _install_uv(rootfs: Path, progress: Progress) -> None:
    """pip-install uv into a venv in the root file system (the host CA bundle is already in place)."""
    requirement = UV_REQUIREMENT
    progress.step(f"Installing {requirement} into {UV_VENV}")
    _chroot(rootfs, progress, "python3", "-m", "venv", UV_VENV)
    _chroot(rootfs, progress, f"{UV_VENV}/bin/pip", "install", "--no-cache-dir", "--disable-pip-version-check",
            "--progress-bar", "off", requirement)
    # pip and setuptools were only needed for this one install: keep the venv to uv itself
    _chroot(rootfs, progress, f"{UV_VENV}/bin/python", "-m", "pip", "uninstall", "--yes", "--quiet", "pip",
            "setuptools")
    link = rootfs / "usr/local/bin/uv"
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(f"{UV_VENV}/bin/uv")


def _chroot(rootfs: Path, progress: Progress, *argv: str) -> None:
    """Run a program inside the root file system, its output as detail lines; BuildFailed if it fails."""
    lines: list[str] = []

    def on_line(line: str) -> None:
        if "/dev/pts mounted" in line or "delaying package configuration" in line:
            return  # apt's noise in a chroot without a pty: harmless
        lines.append(line)
        progress.detail(line)

    rc = proc.stream(["chroot", str(rootfs), *argv], on_line, env=CHROOT_ENV)
    if rc != 0:
        tail = lines[-1].strip() if lines else ""
        raise BuildFailed(f"stack: {proc.display(argv)} exited {rc}" + (f": {tail}" if tail else ""))


# What the stack adds after debootstrap, in this order (name: step).
EXTRAS: dict[str, Callable[[Path, Progress], None]] = {"node": _install_node, "uv": _install_uv}


def _import(api: Any, rootfs: Path, image: str, work: Path) -> str:
    """`tar -C rootfs -c . | docker import - image`, with no shell: tar's stdout is the request body."""
    from docker.utils import parse_repository_tag  # noqa: PLC0415 -- start-up: docker loads when first used

    repository, tag = parse_repository_tag(image)
    read_fd, write_fd = os.pipe()
    errlog = work / "tar.err"
    with open(os.devnull, "rb") as devnull, open(errlog, "wb") as err:
        try:
            tar = proc.popen(
                ["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."],
                stdin=devnull, stdout=write_fd, stderr=err,
            )
        finally:
            os.close(write_fd)  # tar holds the write end now; EOF arrives when it exits
    with os.fdopen(read_fd, "rb") as body:
        try:
            raw = api.import_image(
                src=iter(lambda: body.read(CHUNK), b""), repository=repository, tag=tag or "latest",
                changes=list(CHANGES), stream_src=True,
            )
        except Exception:
            tar.kill()
            tar.wait()
            raise
    rc = tar.wait()
    if rc != 0:
        tail = errlog.read_text(errors="replace").strip().splitlines()[-1:] or [""]
        raise BuildFailed(f"tar of the stack root file system exited {rc}: {tail[0]}")
    return _import_result(raw)


def _import_result(raw: str) -> str:
    """The image id from the engine's import answer (JSON lines); BuildFailed on an error line."""
    image_id = ""
    for line in str(raw).splitlines():
        if not line.strip():
            continue
        msg = json.loads(line)
        if "error" in msg:
            raise BuildFailed(f"docker import failed: {msg['error']}")
        image_id = str(msg.get("status") or image_id)
    return image_id


def _image_id(api: Any, image: str) -> str | None:
    import docker  # noqa: PLC0415 -- start-up: docker loads when first used

    try:
        return str(api.inspect_image(image)["Id"])
    except docker.errors.ImageNotFound:
        return None


def _remove_replaced(api: Any, image_id: str) -> None:
    """Drop the stack image a rebuild replaced, unless something still uses it (then keep it)."""
    import docker  # noqa: PLC0415 -- start-up: docker loads when first used

    try:
        api.remove_image(image_id)
        logger.info("old stack image removed", image_id=image_id)
    except docker.errors.APIError as e:
        logger.info("old stack image kept", image_id=image_id, reason=e.explanation)


def _debootstrap_error(rootfs: Path) -> str:
    """The last error line of debootstrap's own log, when it left one."""
    with contextlib.suppress(OSError):
        lines = (rootfs / "debootstrap/debootstrap.log").read_text(errors="replace").splitlines()
        errors = [ln for ln in lines if ln.startswith("E:")]
        return (errors or lines or [""])[-1].strip()
    return ""


def _mounts_below(path: Path) -> list[str]:
    """Mount points at or under `path` (debootstrap mounts /proc and /sys in the target)."""
    root = str(path.resolve())
    found = []
    with contextlib.suppress(OSError), open("/proc/self/mountinfo") as f:
        for line in f:
            point = _unescape(line.split()[4])
            if point == root or point.startswith(root + "/"):
                found.append(point)
    return found


def _unescape(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def _remove_tree(path: Path) -> None:
    """Remove the work dir; first unmount what a killed debootstrap left mounted, never delete through it."""
    for point in sorted(_mounts_below(path), key=len, reverse=True):
        proc.run(["umount", point], check=False)
    left = _mounts_below(path)
    if left:
        logger.error("stack work dir still has mounts, left in place", path=str(path), mounts=left)
        return
    shutil.rmtree(path, ignore_errors=True)


def _docker_api() -> Any:
    import docker  # noqa: PLC0415 -- start-up: docker loads when first used

    try:
        return docker.from_env(timeout=IMPORT_TIMEOUT).api
    except docker.errors.DockerException as e:
        raise PushdockError(f"docker engine is not reachable: {e}", hint="is dockerd running?") from None

