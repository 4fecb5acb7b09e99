"""TLS certificates of apps: checked (parses, matches its key, not expired), stored, generated.

Files: `DATA_DIR/data/certs/APP/{server.crt,server.key,meta.json}` (the key 0600), beside the app's
other properties so `apps:destroy|rename` take them along. The proxies copy or inline them when they
render a route; a certificate is checked here before anything is written.
"""

from __future__ import annotations

import datetime
import io
import json
import tarfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from proxies.model import CertRef
from pushdock.errors import PushdockError, UsageError
from pushdock.state import atomic_write, validate_app_name

if TYPE_CHECKING:
    from pushdock.context import Context

MAX_PEM = 256 * 1024
MAX_TAR = 1024 * 1024
GENERATED_DAYS = 365


@dataclass(frozen=True)
class CertInfo:
    subject: str
    issuer: str
    names: tuple[str, ...]
    not_before: float
    not_after: float
    fingerprint: str  # sha256 of the leaf, hex
    self_signed: bool


def _x509() -> Any:
    try:
        from cryptography import x509  # noqa: PLC0415 -- start-up: cryptography loads when first used
    except ImportError as e:  # a dependency of asyncssh: present wherever pushdock runs
        raise PushdockError("the cryptography package is missing", hint="pip install cryptography") from e
    return x509


def check_pair(crt_pem: bytes, key_pem: bytes, *, now: float | None = None) -> CertInfo:
    """Parse a PEM certificate (chain) and its key; UsageError unless they match and the leaf is valid now."""
    x509 = _x509()
    from cryptography.exceptions import UnsupportedAlgorithm  # noqa: PLC0415 -- start-up: cryptography loads when first used
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415 -- start-up: cryptography loads when first used

    if len(crt_pem) > MAX_PEM or len(key_pem) > MAX_PEM:
        raise UsageError("certificate or key too large (at most 256 KiB each)")
    try:
        chain = x509.load_pem_x509_certificates(crt_pem)
    except ValueError:
        raise UsageError("the certificate is not a PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise UsageError("the key is encrypted: give it without a passphrase") from None
    except (ValueError, UnsupportedAlgorithm):
        raise UsageError("the key is not a PEM private key") from None
    leaf = chain[0]
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if leaf.public_key().public_bytes(serialization.Encoding.DER, spki) != key.public_key().public_bytes(
            serialization.Encoding.DER, spki):
        raise UsageError("the certificate does not match the key")
    info = _info(leaf)
    moment = datetime.datetime.now(datetime.UTC).timestamp() if now is None else now
    if info.not_after <= moment:
        raise UsageError(f"the certificate expired on {day(info.not_after)}")
    if info.not_before > moment + 300:
        raise UsageError(f"the certificate is not valid before {day(info.not_before)}")
    return info


def _info(leaf: Any) -> CertInfo:
    x509 = _x509()
    from cryptography.hazmat.primitives import hashes  # noqa: PLC0415 -- start-up: cryptography loads when first used

    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = ()
    return CertInfo(
        subject=leaf.subject.rfc4514_string(), issuer=leaf.issuer.rfc4514_string(), names=names,
        not_before=leaf.not_valid_before_utc.timestamp(), not_after=leaf.not_valid_after_utc.timestamp(),
        fingerprint=leaf.fingerprint(hashes.SHA256()).hex(), self_signed=leaf.subject == leaf.issuer,
    )


def day(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def read_tar(data: bytes) -> tuple[bytes, bytes]:
    """(certificate, key) from a tar holding one `*.crt` and one `*.key` (Dokku's `certs:add` format)."""
    if len(data) > MAX_TAR:
        raise UsageError("the tar on stdin is too large (at most 1 MiB)")
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar.getmembers():
                suffix = Path(member.name).suffix
                if member.isfile() and suffix in (".crt", ".key"):
                    if suffix in found:
                        raise UsageError(f"the tar holds more than one {suffix} file")
                    f = tar.extractfile(member)
                    found[suffix] = f.read(MAX_PEM + 1) if f else b""
    except tarfile.TarError:
        raise UsageError("stdin is not a tar archive: give CRT and KEY, or a tar of server.crt and server.key"
                         ) from None
    if set(found) != {".crt", ".key"}:
        raise UsageError("the tar must hold one .crt and one .key file")
    return found[".crt"], found[".key"]


# -- storage --------------------------------------------------------------------------------------
def _dir(ctx: Context, app: str) -> Path:
    # The app's property folder (state layout `data/<plugin>/<app>`): destroy and rename include it.
    return ctx.state.path("data", "certs", validate_app_name(app))


def exists(ctx: Context, app: str) -> bool:
    return (_dir(ctx, app) / "meta.json").is_file()


def info(ctx: Context, app: str) -> CertInfo | None:
    try:
        raw = json.loads((_dir(ctx, app) / "meta.json").read_text())
    except FileNotFoundError:
        return None
    return CertInfo(**{**raw, "names": tuple(raw["names"])})


def ref(ctx: Context, app: str) -> CertRef | None:
    """What a Route carries: the stored files and their fingerprint."""
    meta = info(ctx, app)
    if meta is None:
        return None
    d = _dir(ctx, app)
    return CertRef(str(d / "server.crt"), str(d / "server.key"), meta.fingerprint, meta.names, meta.not_after)


def snapshot(ctx: Context, app: str) -> dict[str, bytes | None]:
    """The stored files as they are, for `restore` when the proxy refuses the change."""
    d = _dir(ctx, app)
    return {n: (d / n).read_bytes() if (d / n).exists() else None for n in ("server.crt", "server.key", "meta.json")}


def restore(ctx: Context, app: str, saved: dict[str, bytes | None]) -> None:
    d = _dir(ctx, app)
    for name, data in saved.items():
        if data is None:
            (d / name).unlink(missing_ok=True)
        else:
            atomic_write(d / name, data, mode=0o600 if name == "server.key" else 0o644)


def store(ctx: Context, app: str, crt_pem: bytes, key_pem: bytes) -> CertInfo:
    """Check, then write the pair (key first, meta last: meta.json is what marks a certificate present)."""
    meta = check_pair(crt_pem, key_pem)
    d = _dir(ctx, app)
    atomic_write(d / "server.key", key_pem, mode=0o600)
    atomic_write(d / "server.crt", crt_pem)
    atomic_write(d / "meta.json", json.dumps({**asdict(meta), "names": list(meta.names)}, indent=1))
    return meta


def remove(ctx: Context, app: str) -> None:
    d = _dir(ctx, app)
    for name in ("meta.json", "server.crt", "server.key"):
        (d / name).unlink(missing_ok=True)


def generate(domains: list[str], *, days: int = GENERATED_DAYS) -> tuple[bytes, bytes]:
    """A self-signed certificate (ECDSA P-256) for `domains` (all in subjectAltName): (cert, key) PEM."""
    x509 = _x509()
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415 -- start-up: cryptography loads when first used
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415 -- start-up: cryptography loads when first used
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: PLC0415 -- start-up: cryptography loads when first used

    if not domains:
        raise UsageError("no domain to put in the certificate")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domains[0][:64])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in domains]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def report(ctx: Context, app: str, domains: list[str]) -> dict[str, str]:
    meta = info(ctx, app)
    if meta is None:
        return {"ssl enabled": "false"}
    uncovered = [d for d in domains if not covers(meta.names, d)]
    return {
        "ssl enabled": "true",
        "subject": meta.subject,
        "issuer": meta.issuer + (" (self-signed)" if meta.self_signed else ""),
        "names": " ".join(meta.names),
        "starts": day(meta.not_before),
        "expires": day(meta.not_after),
        "fingerprint (sha256)": meta.fingerprint,
        "domains not covered": " ".join(uncovered),
    }


def covers(names: tuple[str, ...], domain: str) -> bool:
    """Whether a certificate for `names` is valid for `domain` (one-label wildcards)."""
    for name in names:
        n = name.lower()
        if n == domain or (n.startswith("*.") and "." in domain and domain.split(".", 1)[1] == n[2:]):
            return True
    return False
