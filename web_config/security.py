"""Request guards of the setup page: login required, CSRF tokens, safe headers and cookies."""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Callable
from datetime import timedelta

from flask import Flask, Response, jsonify, redirect, render_template, request, session, url_for

logger = logging.getLogger(__name__)

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
OPEN_ENDPOINTS = {"pages.login", "pages.first_run", "static"}
"""Endpoints served without a login; every other one needs it."""

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data: https: http:; frame-ancestors 'none'; base-uri 'none'"
)


def csrf_token() -> str:
    """This session's token, made on first use; every form and JSON POST must echo it."""
    token = session.get(CSRF_FIELD)
    if not token:
        token = session[CSRF_FIELD] = secrets.token_urlsafe(32)
    return str(token)


def log_in(password_stamp: str) -> None:
    """Start a fresh session (no fixation) for the admin of the password `password_stamp`."""
    session.clear()
    session.permanent = True
    session["admin"] = password_stamp
    csrf_token()


def is_logged_in(password_stamp: str) -> bool:
    """Logged in, with the password that is still the current one."""
    return bool(password_stamp) and session.get("admin") == password_stamp


def safe_next(target: str | None) -> str:
    """Where to go after logging in: only a path on this site."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("pages.status")


def _wants_json() -> bool:
    return request.path.startswith("/api/")


def _refuse(message: str, code: int) -> Response:
    if _wants_json():
        response = jsonify(error=message)
    else:
        response = Response(render_template("error.html", message=message), mimetype="text/html")
    response.status_code = code
    return response


def install(app: Flask, secret_key: bytes, *, password_stamp: Callable[[], str]) -> None:
    """Cookie settings and the before/after hooks; `password_stamp()` is "" until setup is done
    (see `auth.password_stamp`)."""
    app.secret_key = secret_key
    app.config.update(
        SESSION_COOKIE_NAME="moodmelody_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        # Not Secure: the page is plain HTTP on the home network; a Secure cookie would
        # never be sent back.
        SESSION_COOKIE_SECURE=False,
        PERMANENT_SESSION_LIFETIME=timedelta(days=30),
        MAX_CONTENT_LENGTH=64 * 1024,
    )
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.jinja_env.globals["logged_in"] = lambda: is_logged_in(password_stamp())

    @app.before_request
    def guard() -> Response | None:
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            sent = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
            expected = session.get(CSRF_FIELD) or ""
            if not (expected and hmac.compare_digest(str(expected), sent)):
                logger.warning(
                    "setup page: refused %s %s without a valid CSRF token",
                    request.method,
                    request.path,
                )
                return _refuse(
                    "This form has expired or did not come from this page. "
                    "Reload the page and try again.",
                    400,
                )
        if request.endpoint in OPEN_ENDPOINTS:
            return None
        stamp = password_stamp()
        if not stamp:
            return (
                _refuse("Set up the admin password first.", 401)
                if _wants_json()
                else redirect(url_for("pages.first_run"))
            )
        if not is_logged_in(stamp):
            return (
                _refuse("Log in first.", 401)
                if _wants_json()
                else redirect(url_for("pages.login", next=request.full_path.rstrip("?")))
            )
        return None

    @app.after_request
    def headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        if request.endpoint != "static":
            response.headers["Cache-Control"] = "no-store"
        return response
