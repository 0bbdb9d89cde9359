"""The Spotify account link: Authorization Code with PKCE, tokens kept in the state dir.

No client secret lives on the device: each household registers its own Spotify app and
gives its client id. The login starts with `begin_login` (an address for the browser)
and ends with `finish_login` (the address Spotify sent the browser back to), whether
that arrives at the device's HTTPS callback or is pasted by the user. Tokens are kept
in one 0600 file, written atomically; a new refresh token is saved before the access
token that came with it is used, because a PKCE refresh token may be single-use.
Spotify refresh tokens stop working six months after the user's consent, so the
consent date is recorded and the deadline reported.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

from device.atomic import write_atomic
from device.config import Config

logger = logging.getLogger(__name__)

# The least that playback control needs: reading the devices and what plays
# (user-read-playback-state), starting, pausing, transferring, shuffle and volume
# (user-modify-playback-state), and the account's `product` in /v1/me to tell a missing
# Premium apart from other failures (user-read-private; without it the field is left
# out). Search and public playlists need no scope; a private playlist still plays
# without playlist-read-private, only its name cannot be shown, so that is not asked.
SCOPES = ("user-read-playback-state", "user-modify-playback-state", "user-read-private")

LOOPBACK_REDIRECT = "http://127.0.0.1:8888/callback"
"""The paste-the-address redirect: nothing listens there; the user copies the address."""
HTTPS_CALLBACK_PORT = 8443

REFRESH_TOKEN_LIFETIME_S = 182 * 86400  # Spotify: six months after the user's consent
LOGIN_TIMEOUT_S = 600  # a started login must finish within ten minutes
EXPIRY_MARGIN_S = 60  # refresh this long before the access token expires
TOKEN_FILE = "spotify_token.json"
LOGIN_FILE = "spotify_login.json"
REQUEST_TIMEOUT_S = 10


class LoginError(Exception):
    """The login did not complete; the message is for the user."""


class LinkError(Exception):
    """There is no usable account link: the user must log in (again)."""


class AuthUnavailable(Exception):
    """The accounts service could not be reached or failed; trying later may help."""


@dataclass(frozen=True)
class Account:
    """Who is linked, and until when the link lasts."""

    user_id: str
    display_name: str
    product: str  # "premium", "free", ... ("" when Spotify did not say)
    consent_at: float  # wall-clock seconds of the user's consent
    broken: str = ""  # why the link no longer works ("" while it does)

    @property
    def premium(self) -> bool:
        return self.product == "premium"

    @property
    def deadline(self) -> float:
        """When the refresh token stops working (consent + 182 days)."""
        return self.consent_at + REFRESH_TOKEN_LIFETIME_S

    def days_left(self, now: float) -> int:
        return max(0, int((self.deadline - now) // 86400))


def pkce_challenge(verifier: str) -> str:
    """The S256 code challenge of `verifier` (RFC 7636)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _oauth_problem(answer: requests.Response) -> tuple[str, str]:
    """(error, error_description) of an accounts-service error answer."""
    try:
        body = answer.json()
    except ValueError:
        return "", answer.text[:200]
    if not isinstance(body, dict):
        return "", str(body)[:200]
    return str(body.get("error", "")), str(body.get("error_description", ""))


class SpotifyAuth:
    """The account link of one device. Safe to use from several threads and processes."""

    def __init__(
        self, config: Config, state_dir: Path, clock: Callable[[], float] = time.time
    ) -> None:
        self._spotify = config.spotify
        self._dir = Path(state_dir)
        self._clock = clock
        self._token_file = self._dir / TOKEN_FILE
        self._login_file = self._dir / LOGIN_FILE
        self._accounts = config.spotify.accounts_url.rstrip("/")

    @property
    def state_dir(self) -> Path:
        return self._dir

    # --- login -------------------------------------------------------------------------
    def begin_login(self, redirect_uri: str) -> str:
        """The address to open in a browser; remembers its verifier and state for 10 min."""
        if not self._spotify.client_id:
            raise LoginError("Enter the client id of your Spotify app first.")
        verifier = secrets.token_urlsafe(64)  # 86 characters, within RFC 7636's 43..128
        state = secrets.token_urlsafe(16)
        now = self._clock()
        with self._locked():
            pending = {
                s: p
                for s, p in self._read(self._login_file).items()
                if now - p["created_at"] < LOGIN_TIMEOUT_S
            }
            pending[state] = {"verifier": verifier, "redirect_uri": redirect_uri, "created_at": now}
            write_atomic(self._login_file, json.dumps(pending))
        query = urlencode(
            {
                "client_id": self._spotify.client_id,
                "response_type": "code",
                "redirect_uri": redirect_uri,
                "code_challenge_method": "S256",
                "code_challenge": pkce_challenge(verifier),
                "state": state,
                "scope": " ".join(SCOPES),
            }
        )
        return f"{self._accounts}/authorize?{query}"

    def finish_login(self, redirected_url: str) -> Account:
        """Complete the login from the address Spotify redirected to (or its query string)."""
        text = redirected_url.strip()
        query = parse_qs(urlsplit(text).query if "?" in text else text.lstrip("?"))
        params = {k: v[-1] for k, v in query.items()}
        if params.get("error") == "access_denied":
            raise LoginError("Access was declined on Spotify's page; start again to link.")
        if params.get("error"):
            raise LoginError(f"Spotify did not link the account ({params['error']}).")
        if "code" not in params or "state" not in params:
            raise LoginError(
                "That address has no login code in it: copy the whole address "
                "from the browser's address bar after approving on Spotify."
            )
        login = self._take_pending(params["state"])
        answer = self._post_token(
            {
                "grant_type": "authorization_code",
                "code": params["code"],
                "redirect_uri": login["redirect_uri"],
                "client_id": self._spotify.client_id,
                "code_verifier": login["verifier"],
            },
            LoginError,
        )
        if answer.status_code != 200:
            error, description = _oauth_problem(answer)
            raise LoginError(
                f"Spotify refused the login: {description or error} "
                f"(HTTP {answer.status_code}); start again."
            )
        tokens = self._tokens_from(answer.json(), refresh_token=None)
        tokens["consent_at"] = self._clock()
        tokens["user"] = self._fetch_user(tokens["access_token"])
        with self._locked():
            write_atomic(self._token_file, json.dumps(tokens))
        account = self.account()
        assert account is not None
        logger.info("Spotify linked as %s (%s)", account.display_name, account.product or "?")
        return account

    def _take_pending(self, state: str) -> dict[str, Any]:
        """The pending login with this state, removed so that it is used once."""
        with self._locked():
            pending = self._read(self._login_file)
            login = pending.pop(state, None)
            write_atomic(self._login_file, json.dumps(pending))
        if login is None:
            raise LoginError(
                "This login was not started here or was already used: "
                "start again from the setup page."
            )
        if self._clock() - login["created_at"] > LOGIN_TIMEOUT_S:
            raise LoginError("This login took longer than 10 minutes: start again.")
        return dict(login)

    def _fetch_user(self, access_token: str) -> dict[str, str]:
        url = self._spotify.api_url.rstrip("/") + "/me"
        try:
            answer = requests.get(
                url, headers={"Authorization": f"Bearer {access_token}"}, timeout=REQUEST_TIMEOUT_S
            )
        except requests.RequestException as err:
            raise LoginError(f"Could not reach Spotify to read the account: {err}") from err
        if answer.status_code != 200:
            raise LoginError(f"Spotify did not return the account (HTTP {answer.status_code})")
        me = answer.json()
        return {
            "id": str(me.get("id", "")),
            "display_name": str(me.get("display_name") or ""),
            "product": str(me.get("product", "")),
        }

    def logout(self) -> None:
        with self._locked():
            self._token_file.unlink(missing_ok=True)
            self._login_file.unlink(missing_ok=True)
        logger.info("Spotify account unlinked")

    def account(self) -> Account | None:
        tokens = self._read(self._token_file)
        if not tokens:
            return None
        user = tokens.get("user", {})
        return Account(
            user_id=user.get("id", ""),
            display_name=user.get("display_name", ""),
            product=user.get("product", ""),
            consent_at=tokens["consent_at"],
            broken=tokens.get("broken", ""),
        )

    def redirect_uris(self, host: str) -> list[str]:
        """What the user registers in their Spotify app: the HTTPS callback and the loopback."""
        return [f"https://{host}:{HTTPS_CALLBACK_PORT}/callback", LOOPBACK_REDIRECT]

    # --- tokens ------------------------------------------------------------------------
    def access_token(self) -> str:
        """A valid access token, refreshed first when it has (nearly) expired.

        Raises LinkError when the user must log in again, AuthUnavailable when the
        accounts service cannot be reached.
        """
        with self._locked():
            tokens = self._usable_tokens()
            if tokens["expires_at"] - EXPIRY_MARGIN_S > self._clock():
                return str(tokens["access_token"])
            return self._refresh(tokens)

    def refresh_rejected(self, rejected: str) -> str:
        """After a 401 with `rejected`: a new access token (unless another caller made one)."""
        with self._locked():
            tokens = self._usable_tokens()
            if tokens["access_token"] != rejected:
                return str(tokens["access_token"])
            return self._refresh(tokens)

    def _usable_tokens(self) -> dict[str, Any]:
        tokens = self._read(self._token_file)
        if not tokens:
            raise LinkError("Spotify is not linked: log in on the setup page.")
        if tokens.get("broken"):
            raise LinkError(tokens["broken"])
        if self._clock() >= tokens["consent_at"] + REFRESH_TOKEN_LIFETIME_S:
            self._mark_broken(
                tokens, "The Spotify login is six months old and has expired: log in again."
            )
        return tokens

    def _refresh(self, tokens: dict[str, Any]) -> str:
        """Called with the lock held: exchange the refresh token, save, then hand out."""
        answer = self._post_token(
            {
                "grant_type": "refresh_token",
                "refresh_token": tokens["refresh_token"],
                "client_id": self._spotify.client_id,
            },
            AuthUnavailable,
        )
        if answer.status_code == 400 or answer.status_code == 401:
            error, description = _oauth_problem(answer)
            if error in ("invalid_grant", "invalid_client"):
                self._mark_broken(
                    tokens,
                    f"Spotify no longer accepts this device's login "
                    f"({description or error}): log in again.",
                )
        if answer.status_code != 200:
            raise AuthUnavailable(f"Spotify's accounts service answered HTTP {answer.status_code}")
        fresh = self._tokens_from(answer.json(), refresh_token=tokens["refresh_token"])
        tokens.update(fresh)
        write_atomic(self._token_file, json.dumps(tokens))  # before the token is used
        logger.info("Spotify access token refreshed")
        return str(tokens["access_token"])

    def _mark_broken(self, tokens: dict[str, Any], why: str) -> None:
        tokens["broken"] = why
        write_atomic(self._token_file, json.dumps(tokens))
        logger.warning("%s", why)
        raise LinkError(why)

    def _tokens_from(self, answer: dict[str, Any], refresh_token: str | None) -> dict[str, Any]:
        """The fields we keep from a token answer; a missing refresh token keeps the old one."""
        refresh = answer.get("refresh_token") or refresh_token
        if not refresh:
            raise LoginError("Spotify returned no refresh token.")
        return {
            "access_token": answer["access_token"],
            "refresh_token": refresh,
            "expires_at": self._clock() + float(answer.get("expires_in", 3600)),
            "scope": answer.get("scope", ""),
        }

    def _post_token(self, form: dict[str, str], failure: type[Exception]) -> requests.Response:
        try:
            return requests.post(
                f"{self._accounts}/api/token", data=form, timeout=REQUEST_TIMEOUT_S
            )
        except requests.RequestException as err:
            # The message names the host only: the form holds the code or refresh token.
            raise failure(
                f"Could not reach Spotify's accounts service at {self._accounts}: "
                f"{type(err).__name__}"
            ) from err

    # --- files -------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Exclusive use of the token files, across threads and processes (flock)."""
        self._dir.mkdir(parents=True, exist_ok=True)
        with open(self._dir / ".spotify.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    @staticmethod
    def _read(path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as err:
            logger.warning("%s is unreadable (%s); treating it as empty", path, err)
            return {}
        return data if isinstance(data, dict) else {}


def login_command(config: Config, state_dir: Path, stdin: TextIO, stdout: TextIO) -> int:
    """`moodmelody login`: link the account from a terminal (over SSH). Returns the exit code."""
    auth = SpotifyAuth(config, state_dir)
    try:
        url = auth.begin_login(LOOPBACK_REDIRECT)
    except LoginError as err:
        print(f"error: {err}", file=stdout)
        return 2
    print(
        f"Your Spotify app must list this redirect URI: {LOOPBACK_REDIRECT}\n"
        "1. Open this address in a browser and approve:\n\n"
        f"   {url}\n\n"
        "2. The browser then fails to load a 127.0.0.1 page. That is expected.\n"
        "   Copy the whole address from its address bar and paste it here:",
        file=stdout,
        flush=True,
    )
    try:
        account = auth.finish_login(stdin.readline())
    except LoginError as err:
        print(f"error: {err}", file=stdout)
        return 1
    product = "Premium" if account.premium else f"not Premium ({account.product or 'unknown'})"
    print(
        f"Linked as {account.display_name or account.user_id}, {product}. "
        f"Log in again before {time.strftime('%Y-%m-%d', time.localtime(account.deadline))}.",
        file=stdout,
    )
    return 0
