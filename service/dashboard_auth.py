"""The dashboard behind the API tokens: a WSGI middleware around optuna-dashboard.

optuna-dashboard has no authentication of its own, and many of its routes change the study
database or the artifact store (tell a trial, prune it through its user attributes, rename or
delete a study, upload or delete artifacts, notes). :class:`DashboardGuard` applies the REST
service's policy to every request before the dashboard sees it:

- the ``Host`` header must be an allowed host name (:mod:`hpsearch.service.hosts`), else 400;
- reads need a token of scope read, unless anonymous reads are on; writes (any method but
  GET, HEAD and OPTIONS) always need scope write, and are refused before the dashboard reads
  the request (so a refused upload writes no file);
- a token limited to a project sees and changes only the studies whose names it covers (and
  their artifacts); what the guard cannot route it does not pass on. A path that is not UTF-8
  gets 400: Bottle would drop its bad bytes and route what is left;
- a token comes as ``Authorization: Bearer <secret>`` (scripts) or as the HttpOnly,
  SameSite=Strict cookie that ``/dashboard/login`` sets (people in a browser);
  ``/dashboard/logout`` clears it.

Cross-site request forgery: the cookie is SameSite=Strict, so no other site's page makes the
browser send it; a write (and the login itself) that relies on the cookie must also carry an
``Origin`` that is this dashboard's own, which browsers always add to such requests and pages
cannot forge. So neither a page on another site nor one on another port of the same host can
write through someone's login, nor log them in with a token of its choosing.
"""

from __future__ import annotations

import html
import io
import json
import logging
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from http.cookies import CookieError, SimpleCookie
from typing import Any

import bottle
import optuna
import sqlalchemy

from hpsearch.db import tokens
from hpsearch.analysis.artifacts import is_artifact_id
from hpsearch.errors import HpsearchError
from hpsearch.service.hosts import host_allowed, wrong_host_message

__all__ = [
    "COOKIE_NAME",
    "LOGIN_PATH",
    "LOGOUT_PATH",
    "DashboardGuard",
]

log = logging.getLogger(__name__)

#: The cookie that holds a logged-in browser's token secret (HttpOnly: no script reads it).
COOKIE_NAME = "hpsearch_dashboard_token"
LOGIN_PATH = "/dashboard/login"
LOGOUT_PATH = "/dashboard/logout"

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Routes that serve the dashboard's own code or redirect to it: no study data, open to all.
_OPEN_RULES = frozenset({"/", "/favicon.ico", "/static/<filename:path>"})
#: Routes that serve the single-page app's HTML: without a token, the browser gets the login.
_PAGE_RULES = frozenset({"/", "/dashboard<:re:(/.*)?>"})
#: Reads that name no study and that a project token may make (the list is filtered).
_GLOBAL_READ_RULES = frozenset(
    {"/dashboard<:re:(/.*)?>", "/api/meta", "/api/studies", "/incompatible-rdb-schema"}
)
_STUDY_LIST_RULE = "/api/studies"
_RENAME_RULE = "/api/studies/<study_id:int>/rename"
#: Row ids in Optuna's tables are 32-bit integers; larger ones name nothing.
_MAX_ID = 2**31 - 1
#: The login form is one token and a path; nothing legitimate is larger.
_MAX_FORM_BYTES = 4096
#: A study-creating body (name and directions) is small; larger ones are refused unread.
_MAX_JSON_BYTES = 64 * 1024
#: Optuna's key prefix of an artifact's metadata among a study's or trial's system attributes.
_ARTIFACT_ATTR = "artifacts:"
#: What a login's ``next`` keeps unquoted in ``Location``: a URL's reserved characters and ``%``.
_URL_SAFE = "/?#[]@!$&'()*+,;=:%~"

_StartResponse = Callable[..., Any]
_Environ = dict[str, Any]

class _Refusal(Exception):
    def __init__(self, status: str, reason: str, *, bearer: bool = False) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.bearer = bearer


def _how_to_get(scope: str) -> str:
    return (
        f"log in at {LOGIN_PATH} with a token of scope {scope}, or send it as "
        f"'Authorization: Bearer <token>'; create one on the study database with "
        f"`hpsearch token create NAME --scope {scope}`"
    )


class DashboardGuard:
    """A WSGI app: ``app`` (optuna-dashboard) behind the API tokens of ``storage``.

    ``storage`` is the study database the tokens live in (the dashboard's own, unwrapped);
    ``anonymous_reads`` opens reads to requests without a token, never writes;
    ``allowed_hosts`` are the host names to answer to (:func:`hpsearch.service.hosts.allowed_hosts`).
    """

    def __init__(
        self,
        app: bottle.Bottle,
        *,
        storage: optuna.storages.RDBStorage,
        anonymous_reads: bool,
        allowed_hosts: Sequence[str],
    ) -> None:
        self.app = app
        self.storage = storage
        self.anonymous_reads = anonymous_reads
        self.allowed_hosts = list(allowed_hosts)

    def __call__(self, environ: _Environ, start_response: _StartResponse) -> Iterable[bytes]:
        host = environ.get("HTTP_HOST")
        if not host_allowed(host, self.allowed_hosts):
            message = wrong_host_message(host, self.allowed_hosts)
            return _text(start_response, "400 Bad Request", message)
        path = _routed_path(environ)
        if path is None:
            return _text(
                start_response,
                "400 Bad Request",
                "the request's path is not valid UTF-8: percent-encode each character of it "
                "as UTF-8 (as browsers do)",
            )
        method = environ.get("REQUEST_METHOD", "GET").upper()
        try:
            if path.rstrip("/") == LOGIN_PATH:
                return self._login(environ, start_response, method)
            if path.rstrip("/") == LOGOUT_PATH:
                return self._logout(environ, start_response, method)
            return self._guarded(environ, start_response, path, method)
        except _Refusal as refusal:
            return _refuse(start_response, refusal)
        except (sqlalchemy.exc.SQLAlchemyError, HpsearchError) as e:
            log.warning("dashboard: the study database did not answer: %s", e)
            outage = _Refusal(
                "503 Service Unavailable",
                "the study database is not answering; try again in a moment",
            )
            return _refuse(start_response, outage)

    # -- the dashboard's own routes ------------------------------------------------------------

    def _guarded(
        self, environ: _Environ, start_response: _StartResponse, path: str, method: str
    ) -> Iterable[bytes]:
        route, args = self._match(environ, path)
        if "artifact_id" in args and not is_artifact_id(args["artifact_id"]):
            # The store names files by UUIDs only: any other id names nothing (not a 500).
            raise _Refusal(
                "404 Not Found",
                f"artifact id {args['artifact_id'][:80]!r} is not a UUID: no artifact has it",
            )
        if route is not None and route.rule in _PAGE_RULES:
            start_response = _uncached(start_response)
        if route is not None and route.rule in _OPEN_RULES and method in _SAFE_METHODS:
            return self.app(environ, start_response)
        scope = "read" if method in _SAFE_METHODS else "write"
        token, via_cookie = self._token(environ)
        if token is None:
            if scope == "read" and self.anonymous_reads:
                return self.app(environ, start_response)
            if scope == "read" and route is not None and route.rule in _PAGE_RULES:
                return self._to_login(environ, start_response, path)
            raise _Refusal(
                "401 Unauthorized",
                (
                    "this dashboard is read-only without a token of scope write: "
                    if scope == "write"
                    else "this dashboard needs a token of scope read: "
                )
                + _how_to_get(scope),
                bearer=True,
            )
        if not token.allows(scope):
            raise _Refusal(
                "403 Forbidden",
                f"the API token {token.name!r} has scope {','.join(token.scopes)}; this "
                f"request needs scope {scope}: " + _how_to_get(scope),
            )
        if scope == "write" and via_cookie:
            _same_origin_or_refuse(environ, "a change made with the dashboard's login")
        if scope == "write" and "artifact_id" in args:
            self._artifact_of_route_or_refuse(args)
        if token.project is None:
            return self.app(environ, start_response)
        return self._in_project(environ, start_response, token, route, args, method)

    def _match(self, environ: _Environ, path: str) -> tuple[Any, dict[str, Any]]:
        """The dashboard's route for this request, or None.

        ``path`` is exactly the one the dashboard routes on (:func:`_routed_path`), so both
        find the same route.
        """
        probe = {**environ, "PATH_INFO": path}
        try:
            route, args = self.app.router.match(probe)
        except bottle.HTTPError:  # 404 or 405: the dashboard answers it, changing nothing
            return None, {}
        return route, args

    def _token(self, environ: _Environ) -> tuple[tokens.TokenInfo | None, bool]:
        """The request's token and whether it came from the cookie; 401 for a bad bearer."""
        scheme, _, secret = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() == "bearer" and secret.strip():
            token = tokens.authenticate(self.storage, secret.strip())
            if token is None:
                raise _Refusal(
                    "401 Unauthorized",
                    "the API token is unknown or revoked: " + _how_to_get("read"),
                    bearer=True,
                )
            return token, False
        secret = _cookie(environ)
        if not secret:
            return None, False
        # A revoked or foreign cookie is as good as none: the pages send the user to log in.
        return tokens.authenticate(self.storage, secret), True

    def _to_login(
        self, environ: _Environ, start_response: _StartResponse, path: str
    ) -> Iterable[bytes]:
        if environ.get("HTTP_SEC_FETCH_SITE") == "cross-site" and _cookie(environ) is None:
            # A link from another site: the browser held the SameSite=Strict cookie back. A
            # reload from this page is same-site and sends it, so a logged-in user stays in.
            body = '<!doctype html><meta http-equiv="refresh" content="0">'
            return _html(start_response, "200 OK", body)
        query = environ.get("QUERY_STRING", "")
        target = path + ("?" + query if query else "")
        location = LOGIN_PATH + "?" + urllib.parse.urlencode({"next": target})
        start_response("302 Found", [("Location", location), ("Cache-Control", "no-store")])
        return [b""]

    def _in_project(
        self,
        environ: _Environ,
        start_response: _StartResponse,
        token: tokens.TokenInfo,
        route: Any,
        args: dict[str, Any],
        method: str,
    ) -> Iterable[bytes]:
        """Let a project token's request through only where it touches its own studies."""
        project = token.project
        if route is None:
            # What the guard cannot route it cannot check: never pass it on to the dashboard.
            raise _Refusal(
                "404 Not Found",
                f"{method} {environ.get('PATH_INFO', '')[:200]!r} is no route of the dashboard "
                f"(the API token {token.name!r} is limited to project {project!r})",
            )
        hidden = _Refusal(
            "404 Not Found",
            f"no such study or trial among those of project {project!r} "
            f"(the API token {token.name!r} is limited to it)",
        )
        study_id = args.get("study_id")
        if "trial_id" in args:
            trial_study = self._study_of_trial(args["trial_id"])
            if trial_study is None or (study_id is not None and trial_study != study_id):
                raise hidden
            study_id = trial_study
        if study_id is not None:
            name = self._study_name(study_id)
            if name is None or not token.covers(name):
                raise hidden
            if route.rule == _RENAME_RULE:
                self._covered_body_name(environ, token, "rename a study to")
            return self.app(environ, start_response)
        if route.rule == _STUDY_LIST_RULE and method == "POST":
            self._covered_body_name(environ, token, "create a study named")
            return self.app(environ, start_response)
        if route.rule == _STUDY_LIST_RULE:
            return self._filtered_studies(environ, start_response, token)
        if route.rule in _GLOBAL_READ_RULES and method in _SAFE_METHODS:
            return self.app(environ, start_response)
        raise _Refusal(
            "403 Forbidden",
            f"{method} {route.rule} is not about one study, and the API token {token.name!r} "
            f"is limited to project {project!r}: use a token without a project "
            "(`hpsearch token create NAME --scope write`)",
        )

    def _study_name(self, study_id: int) -> str | None:
        if not 0 <= study_id <= _MAX_ID:
            return None
        try:
            return self.storage.get_study_name_from_id(study_id)
        except KeyError:
            return None

    def _artifact_of_route_or_refuse(self, args: dict[str, Any]) -> None:
        """404 unless the route's artifact belongs to its study (or its trial).

        optuna-dashboard removes ``artifact_id`` from the store without asking whose it is;
        Optuna keeps each artifact's metadata as the system attribute ``artifacts:<id>`` of its
        study or trial (the dashboard's older uploads: ``dashboard:artifacts:<trial>:<id>`` of
        the study), set to JSON null once removed.
        """
        artifact_id, study_id = args["artifact_id"], args.get("study_id")
        trial_id = args.get("trial_id")
        found = False
        if study_id is not None and 0 <= study_id <= _MAX_ID:
            key = (
                f"{_ARTIFACT_ATTR}{artifact_id}"
                if trial_id is None
                else f"dashboard:{_ARTIFACT_ATTR}{trial_id}:{artifact_id}"
            )
            try:
                found = _present(self.storage.get_study_system_attrs(study_id).get(key))
            except KeyError:
                found = False
        if not found and trial_id is not None and 0 <= trial_id <= _MAX_ID:
            try:
                attrs = self.storage.get_trial_system_attrs(trial_id)
            except KeyError:
                attrs = {}
            found = _present(attrs.get(f"{_ARTIFACT_ATTR}{artifact_id}"))
        if not found:
            where = f"trial {trial_id}" if trial_id is not None else f"study {study_id}"
            raise _Refusal(
                "404 Not Found",
                f"{where} has no artifact {artifact_id!r}: list its artifacts in the dashboard "
                "and use one of their ids",
            )

    def _study_of_trial(self, trial_id: int) -> int | None:
        if not 0 <= trial_id <= _MAX_ID:
            return None
        query = sqlalchemy.text("SELECT study_id FROM trials WHERE trial_id = :trial_id")
        with self.storage.engine.connect() as conn:
            return conn.execute(query, {"trial_id": trial_id}).scalar_one_or_none()

    def _covered_body_name(self, environ: _Environ, token: tokens.TokenInfo, doing: str) -> None:
        """Refuse unless the JSON body's ``study_name`` is in the token's project; keeps it."""
        body = _read_body(environ, _MAX_JSON_BYTES)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        try:
            name = json.loads(body or b"{}").get("study_name")
        except (ValueError, AttributeError):
            name = None
        if not isinstance(name, str) or not token.covers(name):
            raise _Refusal(
                "403 Forbidden",
                f"the API token {token.name!r} may only {doing} a name that starts with its "
                f"project {token.project!r}, got {name!r}",
            )

    def _filtered_studies(
        self, environ: _Environ, start_response: _StartResponse, token: tokens.TokenInfo
    ) -> Iterable[bytes]:
        """The dashboard's study list with only the studies the token covers."""
        answer: dict[str, Any] = {}
        chunks: list[bytes] = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            answer["status"], answer["headers"] = status, headers
            return chunks.append

        result = self.app(environ, capture)
        try:
            chunks.extend(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        body = b"".join(chunks)
        status, headers = answer["status"], answer["headers"]
        if status.startswith("200"):
            listing = json.loads(body)
            listing["study_summaries"] = [
                s for s in listing.get("study_summaries", []) if token.covers(s["study_name"])
            ]
            body = json.dumps(listing).encode()
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        start_response(status, [*headers, ("Content-Length", str(len(body)))])
        return [body]

    # -- login and logout ----------------------------------------------------------------------

    def _login(
        self, environ: _Environ, start_response: _StartResponse, method: str
    ) -> Iterable[bytes]:
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
        if method in ("GET", "HEAD"):
            current = self._cookie_token(environ)
            note = "You are logged out." if "logged_out" in query else ""
            page = _login_page(next_path=_next_path(query), current=current, note=note)
            return _html(start_response, "200 OK", page)
        if method != "POST":
            raise _Refusal("405 Method Not Allowed", f"{LOGIN_PATH} takes GET or POST")
        _same_origin_or_refuse(environ, "a login")
        form = urllib.parse.parse_qs(_read_body(environ, _MAX_FORM_BYTES).decode("latin-1"))
        secret = (form.get("token") or [""])[0].strip()
        next_path = _next_path(form)
        token = tokens.authenticate(self.storage, secret) if secret else None
        if token is None:
            error = (
                "That token is unknown or revoked. Create one on the study database with "
                "hpsearch token create NAME --scope write (or --scope read to only look)."
                if secret
                else "Paste an API token (it starts with hps_)."
            )
            page = _login_page(next_path=next_path, current=None, error=error)
            return _html(start_response, "401 Unauthorized", page)
        cookie = f"{COOKIE_NAME}={secret}; Path=/; HttpOnly; SameSite=Strict"
        if environ.get("wsgi.url_scheme") == "https":
            cookie += "; Secure"
        start_response(
            "303 See Other",
            [("Location", next_path), ("Set-Cookie", cookie), ("Cache-Control", "no-store")],
        )
        return [b""]

    def _logout(
        self, environ: _Environ, start_response: _StartResponse, method: str
    ) -> Iterable[bytes]:
        if method in ("GET", "HEAD"):
            page = _logout_page(current=self._cookie_token(environ))
            return _html(start_response, "200 OK", page)
        if method != "POST":
            raise _Refusal("405 Method Not Allowed", f"{LOGOUT_PATH} takes GET or POST")
        _same_origin_or_refuse(environ, "a logout")
        cookie = f"{COOKIE_NAME}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
        start_response(
            "303 See Other",
            [
                ("Location", LOGIN_PATH + "?logged_out=1"),
                ("Set-Cookie", cookie),
                ("Cache-Control", "no-store"),
            ],
        )
        return [b""]

    def _cookie_token(self, environ: _Environ) -> tokens.TokenInfo | None:
        secret = _cookie(environ)
        return tokens.authenticate(self.storage, secret) if secret else None


# -- helpers -----------------------------------------------------------------------------------


def _routed_path(environ: _Environ) -> str | None:
    """PATH_INFO as Bottle routes it (the latin-1 bytes read as UTF-8); None if not UTF-8.

    Bottle drops the bytes that are not UTF-8 (``/api/studies/1%FF`` becomes
    ``/api/studies/1``); refusing such paths makes the guard and the dashboard see one path.
    """
    try:
        return environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8")
    except UnicodeError:
        return None


def _present(value: Any) -> bool:
    """Whether a stored attribute value is there and not JSON null (Optuna's removed mark)."""
    if value is None:
        return False
    if isinstance(value, str):
        try:
            return json.loads(value) is not None
        except ValueError:
            return True
    return True


def _cookie(environ: _Environ) -> str | None:
    try:
        jar = SimpleCookie(environ.get("HTTP_COOKIE", ""))
    except CookieError:
        return None
    morsel = jar.get(COOKIE_NAME)
    return morsel.value if morsel is not None and morsel.value else None


def _uncached(start_response: _StartResponse) -> _StartResponse:
    """A page shown only to a login: the browser must ask again after a logout, not reuse it."""
    dropped = {"cache-control", "expires", "last-modified", "etag"}

    def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        kept = [(k, v) for k, v in headers if k.lower() not in dropped]
        return start_response(status, [*kept, ("Cache-Control", "no-store")], exc_info)

    return start


def _same_origin_or_refuse(environ: _Environ, what: str) -> None:
    """Refuse unless the browser says the request comes from this dashboard's own pages."""
    origin = environ.get("HTTP_ORIGIN", "")
    host = environ.get("HTTP_HOST", "").lower()
    netloc = urllib.parse.urlsplit(origin).netloc.lower() if origin else ""
    if not netloc or netloc != host:
        raise _Refusal(
            "403 Forbidden",
            f"{what} must come from this dashboard's own page (Origin {origin or '(none)'!r} "
            f"is not http(s)://{host}); scripts send 'Authorization: Bearer <token>' instead",
        )


def _read_body(environ: _Environ, limit: int) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = -1
    if length < 0 or length > limit:
        raise _Refusal(
            "413 Content Too Large", f"this request's body must be at most {limit} bytes"
        )
    return environ["wsgi.input"].read(length) if length else b""


def _next_path(params: dict[str, list[str]]) -> str:
    """Where to go after the login: a path of this dashboard only (never another site)."""
    target = (params.get("next") or ["/dashboard"])[0]
    if (
        not target.startswith("/dashboard")
        or target.startswith(LOGIN_PATH)
        or "\\" in target
        or not all("\x21" <= c <= "\x7e" for c in target)  # no CR/LF: no header injection
    ):
        return "/dashboard"
    return urllib.parse.quote(target, safe=_URL_SAFE)


def _refuse(start_response: _StartResponse, refusal: _Refusal) -> Iterable[bytes]:
    body = json.dumps({"reason": refusal.reason, "detail": refusal.reason}).encode()
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
    ]
    if refusal.bearer:
        headers.append(("WWW-Authenticate", "Bearer"))
    start_response(refusal.status, headers)
    return [body]


def _text(start_response: _StartResponse, status: str, text: str) -> Iterable[bytes]:
    body = (text + "\n").encode()
    start_response(
        status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    )
    return [body]


_PAGE_HEADERS = [
    ("Content-Type", "text/html; charset=utf-8"),
    ("Cache-Control", "no-store"),
    # No script, no frames (no clickjacking of the form), forms post only here.
    (
        "Content-Security-Policy",
        (
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'"
        ),
    ),
    ("X-Frame-Options", "DENY"),
    # Not no-referrer: with it, Chrome sends "Origin: null" on the form posts.
    ("Referrer-Policy", "same-origin"),
]

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:34rem;margin:4rem auto;padding:0 1rem;"
    "color:#222}h1{font-size:1.4rem}input[type=password]{width:100%;padding:.5rem;"
    "font-family:monospace;box-sizing:border-box}button{margin-top:.8rem;padding:.5rem 1.2rem}"
    ".error{color:#b00020;font-weight:600}.note{color:#555}code{background:#f3f3f3;"
    "padding:0 .2rem}"
)


def _html(start_response: _StartResponse, status: str, page: str) -> Iterable[bytes]:
    body = page.encode()
    start_response(status, [*_PAGE_HEADERS, ("Content-Length", str(len(body)))])
    return [body]


def _page(title: str, content: str) -> str:
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{title}</title>"
        f'<meta name=viewport content="width=device-width"><style>{_STYLE}</style></head>'
        f"<body><h1>{title}</h1>{content}</body></html>"
    )


def _describe(token: tokens.TokenInfo) -> str:
    project = token.project
    limit = f", project {html.escape(project)}" if project else ""
    return f"<b>{html.escape(token.name)}</b> (scope {','.join(token.scopes)}{limit})"


def _login_page(
    *, next_path: str, current: tokens.TokenInfo | None, error: str = "", note: str = ""
) -> str:
    parts = []
    if error:
        parts.append(f"<p class=error id=error role=alert>{html.escape(error)}</p>")
    if note:
        parts.append(f"<p class=note id=note>{html.escape(note)}</p>")
    if current is not None:
        parts.append(
            f"<p id=current>Logged in with the API token {_describe(current)}. "
            f'<a href="/dashboard">Open the dashboard</a> or '
            f'<a href="{LOGOUT_PATH}">log out</a>.</p>'
        )
    parts.append(
        "<p>The dashboard reads and changes the study database with an hpsearch API token. "
        "Paste one to log in; your browser keeps it in a cookie that no page script can read, "
        "until you log out or close the browser. Notes, tell, rename and delete need a token of "
        "scope write: <code>hpsearch token create NAME --scope write</code> prints one.</p>"
        f'<form method=post action="{LOGIN_PATH}" id=login>'
        "<label for=token>API token</label>"
        "<input type=password id=token name=token autocomplete=off required autofocus "
        'placeholder="hps_...">'
        f'<input type=hidden name=next value="{html.escape(next_path)}">'
        "<button type=submit>Log in</button></form>"
    )
    return _page("hpsearch dashboard: log in", "".join(parts))


def _logout_page(*, current: tokens.TokenInfo | None) -> str:
    who = (
        f"<p>Logged in with the API token {_describe(current)}.</p>"
        if current is not None
        else "<p>This browser holds no valid login.</p>"
    )
    form = (
        f'<form method=post action="{LOGOUT_PATH}" id=logout>'
        "<button type=submit>Log out</button></form>"
        f'<p><a href="/dashboard">Back to the dashboard</a></p>'
    )
    return _page("hpsearch dashboard: log out", who + form)
