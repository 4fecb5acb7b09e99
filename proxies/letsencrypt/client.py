"""The ACME v2 conversation, through certbot's `acme` + `josepy`: account, order, HTTP-01 answers, revocation.

The HTTP-01 answers are files in the app's webroot, which the running proxy serves at
`/.well-known/acme-challenge/` (Route.challenge_root); they are removed once the order is over. Every
failure becomes one PushdockError line naming the domain and the CA's own reason.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pushdock.errors import PushdockError
from pushdock.state import GLOBAL, atomic_write

if TYPE_CHECKING:
    from pushdock.context import Context

LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
ORDER_TIMEOUT = 90  # seconds the CA gets to validate every domain and sign
NET_TIMEOUT = 30


@dataclass(frozen=True)
class Account:
    server: str
    email: str | None
    ca_bundle: str | None


def account(ctx: Context) -> Account:
    bundle = ctx.settings.acme_ca_bundle
    return Account(server=ctx.state.get("letsencrypt", GLOBAL, "server") or LETS_ENCRYPT,
                   email=ctx.state.get("letsencrypt", GLOBAL, "email"), ca_bundle=str(bundle) if bundle else None)


def _key_path(ctx: Context) -> Path:
    return ctx.state.path("data", "letsencrypt", GLOBAL, "account.key")


def _account_key(ctx: Context) -> Any:
    """The account's RSA key (made on first use, stored 0600, never printed)."""
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415 -- start-up: cryptography loads when first used
    from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: PLC0415 -- start-up: cryptography loads when first used

    path = _key_path(ctx)
    try:
        return serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        atomic_write(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()), mode=0o600)
        return key


def _client(ctx: Context) -> Any:
    import josepy as jose  # noqa: PLC0415 -- start-up: josepy loads when first used
    from acme import client, errors, messages  # noqa: PLC0415 -- start-up: acme loads when first used

    acct = account(ctx)
    key = jose.JWKRSA(key=_account_key(ctx))  # type: ignore[attr-defined]  # josepy's re-export is not declared
    # acme types verify_ssl bool, but hands it to requests' `verify`, which also takes a CA bundle's path
    net = client.ClientNetwork(key, user_agent="pushdock",
                               verify_ssl=acct.ca_bundle or True, timeout=NET_TIMEOUT)  # type: ignore[arg-type]
    with _reasons(acct.server):
        directory = client.ClientV2.get_directory(acct.server, net)
        acme = client.ClientV2(directory, net)
        reg = messages.NewRegistration.from_data(email=acct.email, terms_of_service_agreed=True)
        try:
            net.account = acme.new_account(reg)
        except errors.ConflictError as e:  # the key has an account already: use it
            net.account = messages.RegistrationResource(uri=e.location, body=messages.Registration())
    return acme


@contextlib.contextmanager
def _reasons(subject: str) -> Any:
    """Any ACME or network failure as one PushdockError line about `subject` (domains or the server)."""
    import requests  # noqa: PLC0415 -- start-up: requests loads when first used
    from acme import errors, messages  # noqa: PLC0415 -- start-up: acme loads when first used

    try:
        yield
    except PushdockError:
        raise
    except errors.ValidationError as e:
        raise PushdockError(_validation_line(e)) from None
    except messages.Error as e:
        raise PushdockError(f"{subject}: the CA refused: {_one_line(e.detail or e.description or str(e))}") from None
    except errors.TimeoutError:
        raise PushdockError(f"{subject}: the CA did not finish within {ORDER_TIMEOUT}s") from None
    except requests.exceptions.SSLError as e:
        raise PushdockError(f"{subject}: the ACME server's certificate is not trusted ({_one_line(str(e))[:160]})",
                            hint="a test CA needs PUSHDOCK_ACME_CA_BUNDLE") from None
    except requests.exceptions.RequestException as e:
        raise PushdockError(f"{subject}: the ACME server is unreachable ({type(e).__name__})") from None
    except errors.Error as e:
        raise PushdockError(f"{subject}: {_one_line(str(e))}") from None


def _validation_line(e: Any) -> str:
    for authzr in e.failed_authzrs:
        domain = authzr.body.identifier.value
        for chall in authzr.body.challenges:
            if chall.error is not None:
                return f"{domain}: the CA refused the challenge: {_one_line(chall.error.detail or str(chall.error))}"
        return f"{domain}: the CA refused the challenge"
    return "the CA refused the challenge"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())[:300]


def issue(ctx: Context, domains: list[str], webroot: Path) -> tuple[bytes, bytes]:
    """A certificate for `domains` (fullchain PEM) and its new key (PEM), validated over HTTP-01."""
    from acme import challenges, crypto_util  # noqa: PLC0415 -- start-up: acme loads when first used
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415 -- start-up: cryptography loads when first used
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415 -- start-up: cryptography loads when first used

    key = ec.generate_private_key(ec.SECP256R1())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    csr = crypto_util.make_csr(key_pem, domains)
    acme = _client(ctx)
    written: list[Path] = []
    subject = " ".join(domains)
    try:
        with _reasons(subject):
            order = acme.new_order(csr)
            for authz in order.authorizations:
                if authz.body.status.name == "valid":
                    continue
                domain = authz.body.identifier.value
                chall = next((c for c in authz.body.challenges if isinstance(c.chall, challenges.HTTP01)), None)
                if chall is None:
                    raise PushdockError(f"{domain}: the CA offers no HTTP-01 challenge")
                response, validation = chall.response_and_validation(acme.net.key)
                written.append(_write_answer(webroot, chall.chall.encode("token"), validation))
                acme.answer_challenge(chall, response)
            deadline = datetime.datetime.now() + datetime.timedelta(seconds=ORDER_TIMEOUT)
            order = acme.poll_and_finalize(order, deadline=deadline)
    finally:
        for path in written:
            path.unlink(missing_ok=True)
    return order.fullchain_pem.encode(), key_pem


def _write_answer(webroot: Path, token: str, validation: str) -> Path:
    if not token or "/" in token or token.startswith("."):
        raise PushdockError("the CA sent an unusable challenge token")
    folder = webroot / ".well-known" / "acme-challenge"
    folder.mkdir(parents=True, exist_ok=True)
    for d in (webroot.parent, webroot, webroot / ".well-known", folder):  # nginx's workers read it
        os.chmod(d, 0o755)
    path = folder / token
    atomic_write(path, validation, mode=0o644)
    return path


def revoke(ctx: Context, crt_pem: bytes, subject: str) -> None:
    """Revoke the certificate (reason: unspecified) with the account that ordered it."""
    from cryptography import x509  # noqa: PLC0415 -- start-up: cryptography loads when first used

    acme = _client(ctx)
    with _reasons(subject):
        acme.revoke(x509.load_pem_x509_certificate(crt_pem), 0)
