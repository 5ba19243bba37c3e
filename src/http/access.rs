//! Access control: who may read and who may change things (the conventions people know from
//! Jupyter and Grafana).
//!
//! - A token (`--token`, `PION_TOKEN`) is presented as `Authorization: Bearer <token>`, as the
//!   cookie `pion_session` (set when a browser opens `/?token=<token>` once), or as `?token=`
//!   (scripts, the websocket). Comparison is constant-time; a token is never logged, and a
//!   `?token=` is removed from the request's URI before anything after this layer (the trace
//!   layer, handlers) sees it.
//! - The cookie holds the token itself, as Jupyter's does: HttpOnly (page scripts cannot read
//!   it), SameSite=Strict (no other site's page makes the browser send it), Path=/, and no
//!   expiry (it ends with the browser session). A server-side session table would buy nothing
//!   here: the token is the one secret, and a restart with a new token ends every session
//!   anyway.
//! - With a token set, every write needs it, and with `--private` every read too. Without a
//!   token, clients on loopback are trusted when `trust_loopback` (the default) is on; nobody
//!   else can write. `open` turns the token rules off.
//! - Independently of the token (also with `open`): the `Host` header must name this server
//!   (against DNS rebinding) and a write that carries an `Origin` must come from this server's
//!   own origin or an allowed one (against CSRF). `*` in either list turns that check off.
//!
//! [`guard`] is the axum middleware; the websocket handler classifies each message itself and
//! asks [`Access::ws_allowed`] with the [`Who`] the middleware put in the request extensions.
use std::fmt;
use std::io::Read as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::uri::PathAndQuery;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The session cookie's name.
pub const COOKIE: &str = "pion_session";
/// The query parameter that carries a token.
pub const QUERY_PARAM: &str = "token";

/// What the server was told about access (flags and what the server knows about itself).
#[derive(Clone)]
pub struct AccessConfig {
    /// `--token`: the one secret. `None` (or empty) means no token.
    pub token: Option<String>,
    /// `--private`: reads (pages, list, download, PLAY, metrics) need the token too.
    pub private: bool,
    /// `--trust-loopback`: without a token, clients on loopback may write (and read with
    /// `--private`).
    pub trust_loopback: bool,
    /// `--open`: no token rules at all (the Host and Origin checks stay).
    pub open: bool,
    /// Host names and addresses this server answers to besides the localhost names and
    /// loopback addresses, which always are allowed: the configured `--allowed-host` entries,
    /// the machine's own addresses, `--public-ip`. An entry may be a name (`pion.lan`), a
    /// suffix (`*.example.com` or `.example.com`), an IP address (`192.0.2.1`, `[fe80::1]`,
    /// `fe80::1`) or `*` (any host). A port in an entry is ignored.
    pub allowed_hosts: Vec<String>,
    /// Origins besides the server's own that may write and open the websocket
    /// (`--allow-origin`): `http://example.com:3000`, `example.com` (any scheme and port) or
    /// `*` (any origin).
    pub allowed_origins: Vec<String>,
}

impl Default for AccessConfig {
    /// The command line's defaults: no token, loopback trusted, not private, not open.
    fn default() -> Self {
        AccessConfig {
            token: None,
            private: false,
            trust_loopback: true,
            open: false,
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
        }
    }
}

impl fmt::Debug for AccessConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessConfig")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("private", &self.private)
            .field("trust_loopback", &self.trust_loopback)
            .field("open", &self.open)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("allowed_origins", &self.allowed_origins)
            .finish()
    }
}

/// What a request (or a websocket message) needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Anyone: static files, `/healthz`, the websocket upgrade (its messages are checked one
    /// by one).
    Nothing,
    /// A read: needs the token only with `--private`. Pages count as reads, since their
    /// server-side rendering includes the recordings list.
    Read,
    /// A change (record, rename, delete, stop a session): needs the token when one is set.
    Write,
}

/// Who is asking, as the middleware found out; handlers read it from the request extensions
/// (`Extension<Who>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Who {
    /// The client's address is a loopback address (IPv4-mapped IPv6 loopback counts).
    pub loopback: bool,
    /// The client presented the configured token (header, cookie or query).
    pub authenticated: bool,
}

/// The access rules, built once from [`AccessConfig`]; cheap to clone.
#[derive(Clone)]
pub struct Access {
    inner: Arc<Inner>,
}

struct Inner {
    token: Option<String>,
    private: bool,
    trust_loopback: bool,
    open: bool,
    hosts: Vec<HostRule>,
    origins: Vec<OriginRule>,
}

enum HostRule {
    Any,
    Name(String),
    /// A leading-dot suffix: `.example.com`.
    Suffix(String),
    Ip(IpAddr),
}

enum OriginRule {
    Any,
    /// `scheme://host[:port]`, compared with default ports filled in.
    Exact(Origin),
    /// `host[:port]` without a scheme: any scheme, and any port unless given.
    Host { host: String, port: Option<u16> },
}

impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Access")
            .field("token", &self.inner.token.as_ref().map(|_| "<redacted>"))
            .field("private", &self.inner.private)
            .field("trust_loopback", &self.inner.trust_loopback)
            .field("open", &self.inner.open)
            .finish_non_exhaustive()
    }
}

impl Access {
    pub fn new(cfg: AccessConfig) -> Access {
        let token = cfg.token.filter(|t| !t.is_empty());
        let hosts = cfg
            .allowed_hosts
            .iter()
            .filter_map(|entry| HostRule::parse(entry))
            .collect();
        let origins = cfg
            .allowed_origins
            .iter()
            .filter_map(|entry| OriginRule::parse(entry))
            .collect();
        Access {
            inner: Arc::new(Inner {
                token,
                private: cfg.private,
                trust_loopback: cfg.trust_loopback,
                open: cfg.open,
                hosts,
                origins,
            }),
        }
    }

    /// A token is configured.
    pub fn has_token(&self) -> bool {
        self.inner.token.is_some()
    }

    /// `--open`: the token rules are off.
    pub fn is_open(&self) -> bool {
        self.inner.open
    }

    /// `--private`: reads need the token too.
    pub fn is_private(&self) -> bool {
        self.inner.private
    }

    /// The rule: may `who` do something that needs `need`?
    pub fn allowed(&self, who: &Who, need: Need) -> bool {
        let inner = &self.inner;
        if inner.open {
            return true;
        }
        let required = match need {
            Need::Nothing => false,
            Need::Read => inner.private,
            Need::Write => true,
        };
        if !required || who.authenticated {
            return true;
        }
        // With a token set, loopback is not trusted: that is the point of a token.
        inner.token.is_none() && inner.trust_loopback && who.loopback
    }

    /// For the websocket: RECORD and STOP are [`Need::Write`], PLAY is [`Need::Read`].
    pub fn ws_allowed(&self, who: &Who, need: Need) -> bool {
        self.allowed(who, need)
    }

    /// What to tell a client refused for `need` (an ERROR message on the websocket).
    pub fn refusal(&self, need: Need) -> String {
        self.unauthorized_reason(need, &Credentials::default())
    }

    /// Who is asking: the client's address and the credentials in `headers` and in the query
    /// of `uri`. (The middleware does this for every request; this is for callers without it.)
    pub fn who(&self, peer: Option<SocketAddr>, headers: &HeaderMap, uri: &Uri) -> Who {
        let query = query_token(uri.query());
        Who {
            loopback: is_loopback(peer),
            authenticated: self.credentials(headers, query.as_deref()).valid(),
        }
    }

    /// May the server answer to `host` (a `Host` header or URI authority; a port is ignored)?
    pub fn host_allowed(&self, host: &str) -> bool {
        let Some(auth) = Authority::parse(host) else {
            return false;
        };
        let h = auth.host.as_str();
        if h.is_empty() || h == "localhost" || h.ends_with(".localhost") {
            return true;
        }
        let ip = h.parse::<IpAddr>().ok().map(|ip| ip.to_canonical());
        if ip.is_some_and(|ip| ip.is_loopback()) {
            return true;
        }
        self.inner.hosts.iter().any(|rule| match rule {
            HostRule::Any => true,
            HostRule::Name(name) => name == h,
            HostRule::Suffix(suffix) => h.ends_with(suffix.as_str()),
            HostRule::Ip(allowed) => ip == Some(*allowed),
        })
    }

    /// The origin rule for browsers: a request without `Origin` (scripts, tests) passes; one
    /// with it must come from the server's own origin (scheme, host and port of the `Host`
    /// header; https when `X-Forwarded-Proto: https`) or an allowed origin.
    pub fn origin_allowed(&self, headers: &HeaderMap) -> bool {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned);
        self.origin_matches(headers, host.as_deref())
    }

    fn origin_matches(&self, headers: &HeaderMap, authority: Option<&str>) -> bool {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return true;
        };
        if self
            .inner
            .origins
            .iter()
            .any(|r| matches!(r, OriginRule::Any))
        {
            return true;
        }
        let Some(origin) = origin.to_str().ok().and_then(Origin::parse) else {
            // `null` (sandboxed frames, file: pages) and anything unreadable.
            return false;
        };
        if let Some(own) = authority.and_then(|a| own_origin(headers, a))
            && own.same_as(&origin)
        {
            return true;
        }
        self.inner.origins.iter().any(|rule| match rule {
            OriginRule::Any => true,
            OriginRule::Exact(allowed) => allowed.same_as(&origin),
            OriginRule::Host { host, port } => {
                *host == origin.host && port.is_none_or(|p| Some(p) == origin.effective_port())
            }
        })
    }

    fn credentials(&self, headers: &HeaderMap, query: Option<&str>) -> Credentials {
        let Some(token) = self.inner.token.as_deref() else {
            return Credentials::default();
        };
        let check = |presented: &mut dyn Iterator<Item = String>| {
            let mut seen = Check::Absent;
            for value in presented {
                if ct_eq(value.as_bytes(), token.as_bytes()) {
                    return Check::Valid;
                }
                seen = Check::Wrong;
            }
            seen
        };
        let mut bearer = headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| {
                let (scheme, rest) = v.trim().split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then(|| rest.trim().to_owned())
            });
        let mut cookie = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| {
                let (name, value) = pair.trim().split_once('=')?;
                let value = value.trim().trim_matches('"');
                (name.trim() == COOKIE).then(|| percent_decode(value))
            });
        let mut query = query.map(str::to_owned).into_iter();
        Credentials {
            bearer: check(&mut bearer),
            cookie: check(&mut cookie),
            query: check(&mut query),
        }
    }

    fn unauthorized_reason(&self, need: Need, creds: &Credentials) -> String {
        let what = match need {
            Need::Read => "This server is private: viewing its pages and recordings",
            Need::Write | Need::Nothing => {
                "Changing anything on this server (recording, renaming, deleting, stopping a session)"
            }
        };
        let inner = &self.inner;
        if inner.token.is_none() {
            return if inner.trust_loopback {
                format!(
                    "{what} is allowed only from the server's own machine. Ask the operator to \
                     start it with --token, then open the URL it prints."
                )
            } else {
                format!(
                    "{what} needs an access token, but the server has none (--trust-loopback=false \
                     without --token). Ask the operator to start it with --token."
                )
            };
        }
        let problem = if creds.query == Check::Wrong {
            "The token in the address is wrong. "
        } else if creds.bearer == Check::Wrong {
            "The bearer token is wrong. "
        } else if creds.cookie == Check::Wrong {
            "Your session holds an old token (the server may have restarted with a new one). "
        } else {
            ""
        };
        format!(
            "{problem}{what} needs the server's access token: open the URL the server printed at \
             start (/?token=…), or ask the operator for the token. Scripts send \
             `Authorization: Bearer <token>`."
        )
    }
}

/// A random token for a server that has none (48 hex digits from the OS's random source).
pub fn generate_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// What a request needs, from its method and path (the websocket's messages are classified by
/// its handler).
///
/// - OPTIONS: nothing. Any other method that is not GET or HEAD is a write (rename, delete,
///   stopping a session, the rename and delete server functions, anything unknown), except the
///   list server function, a read.
/// - GET and HEAD: `/healthz`, `/ws` and static files (`/pkg/…`, a last segment with a dot
///   outside `/api/` and `/metrics`) need nothing; everything else (pages, `/api/…`,
///   `/metrics`) is a read.
pub fn classify(method: &Method, path: &str) -> Need {
    if method == Method::OPTIONS {
        return Need::Nothing;
    }
    if method != Method::GET && method != Method::HEAD {
        return if is_list_server_fn(path) {
            Need::Read
        } else {
            Need::Write
        };
    }
    if path == "/healthz" || path == "/ws" || is_static(path) {
        Need::Nothing
    } else {
        Need::Read
    }
}

fn under(path: &str, prefix: &str) -> bool {
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

fn is_api(path: &str) -> bool {
    under(path, "/api")
}

fn is_static(path: &str) -> bool {
    if is_api(path) || under(path, "/metrics") {
        return false;
    }
    path.starts_with("/pkg/") || path.rsplit('/').next().is_some_and(|last| last.contains('.'))
}

/// Leptos names a server function `/api/<name><hash>` (the hash in decimal digits; with
/// `SERVER_FN_MOD_PATH` the module path comes before the name).
fn is_list_server_fn(path: &str) -> bool {
    is_api(path)
        && path
            .rsplit('/')
            .next()
            .and_then(|last| last.strip_prefix("list_recordings"))
            .is_some_and(|hash| hash.bytes().all(|b| b.is_ascii_digit()))
}

/// `/api/…` paths that are not the JSON API: Leptos server functions.
fn is_server_fn(path: &str) -> bool {
    is_api(path) && !under(path, "/api/recordings") && !under(path, "/api/sessions")
}

/// The middleware: Host check, the `?token=` cookie flow, classification and the rules, the
/// Origin check for writes; then [`Who`] (and the [`Access`]) go into the request extensions.
/// Use with `axum::middleware::from_fn_with_state(access, guard)`.
pub async fn guard(State(access): State<Access>, mut req: Request, next: Next) -> Response {
    let peer = peer_addr(&req);
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let style = Style::of(&path, req.headers());
    let client = peer.map(|p| p.ip().to_canonical());
    let refuse = |why: &str, refusal: Refusal| {
        tracing::warn!(client = ?client, %method, %path, "refused: {why}");
        refusal.into_response(style, &path)
    };

    // DNS rebinding: a page on another name must not reach us through its own origin.
    let authority = match request_authority(&req) {
        Ok(authority) => authority,
        Err(()) => return refuse("unreadable Host", Refusal::Host(String::new())),
    };
    if let Some(host) = authority.as_deref()
        && !access.host_allowed(host)
    {
        return refuse("Host not allowed", Refusal::Host(host.to_owned()));
    }

    let (query, rest) = split_token(req.uri().query());
    let creds = access.credentials(req.headers(), query.as_deref());
    if creds.query == Check::Wrong && !access.is_open() {
        return refuse(
            "wrong token in the query",
            Refusal::Unauthorized {
                reason: access.unauthorized_reason(Need::Read, &creds),
                sign_in: true,
                clear_cookie: false,
            },
        );
    }
    if let Some(rest) = rest {
        if creds.query == Check::Valid && is_navigation(&method, &path, req.headers()) {
            tracing::info!(client = ?client, %path, "signed in with the token");
            let token = access.inner.token.as_deref().unwrap_or_default();
            return sign_in(token, &path, &rest, forwarded_https(req.headers()));
        }
        // Nothing after this layer (trace, handlers) sees the token.
        strip_query(req.uri_mut(), &rest);
    }

    let who = Who {
        loopback: is_loopback(peer),
        authenticated: creds.valid(),
    };
    let need = classify(&method, &path);
    if need == Need::Write && !access.origin_matches(req.headers(), authority.as_deref()) {
        let origin = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|o| o.to_str().ok())
            .unwrap_or("?")
            .to_owned();
        return refuse("foreign Origin on a write", Refusal::Origin(origin));
    }
    if !access.allowed(&who, need) {
        return refuse(
            "no valid token",
            Refusal::Unauthorized {
                reason: access.unauthorized_reason(need, &creds),
                sign_in: access.has_token(),
                clear_cookie: creds.cookie == Check::Wrong,
            },
        );
    }
    req.extensions_mut().insert(who);
    req.extensions_mut().insert(access.clone());
    next.run(req).await
}

/// The client's address, from `into_make_service_with_connect_info` (or `MockConnectInfo`).
fn peer_addr(req: &Request) -> Option<SocketAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
        .or_else(|| {
            req.extensions()
                .get::<MockConnectInfo<SocketAddr>>()
                .map(|m| m.0)
        })
}

fn is_loopback(peer: Option<SocketAddr>) -> bool {
    peer.is_some_and(|p| p.ip().to_canonical().is_loopback())
}

/// The `Host` header, or the URI's authority (HTTP/2); `None` when there is neither (HTTP/1.0)
/// or it is empty. `Err` when the header is not readable text.
fn request_authority(req: &Request) -> Result<Option<String>, ()> {
    let authority = match req.headers().get(header::HOST) {
        Some(value) => value.to_str().map_err(|_| ())?.trim().to_owned(),
        None => match req.uri().authority() {
            Some(a) => a.as_str().to_owned(),
            None => return Ok(None),
        },
    };
    Ok((!authority.is_empty()).then_some(authority))
}

fn forwarded_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

fn accepts_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"))
}

/// A browser opening a page (not the websocket, not a script calling the API): it gets the
/// cookie and a redirect instead of the page.
fn is_navigation(method: &Method, path: &str, headers: &HeaderMap) -> bool {
    (method == Method::GET || method == Method::HEAD)
        && path != "/ws"
        && !headers.contains_key(header::UPGRADE)
        && (accepts_html(headers)
            || !(is_api(path) || under(path, "/metrics") || path == "/healthz"))
}

/// The first `token` value in a query (percent-decoded).
fn query_token(query: Option<&str>) -> Option<String> {
    split_token(query).0
}

/// Splits a query into its first `token` value and the rest. The rest is `None` when there
/// is no `token` parameter (the query stays as it is) and `Some("")` when nothing else is left.
fn split_token(query: Option<&str>) -> (Option<String>, Option<String>) {
    let Some(query) = query else {
        return (None, None);
    };
    let mut token = None;
    let mut found = false;
    let mut rest = Vec::new();
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key == QUERY_PARAM {
            found = true;
            if token.is_none() {
                token = Some(percent_decode(value));
            }
        } else if !pair.is_empty() {
            rest.push(pair);
        }
    }
    if found {
        (token, Some(rest.join("&")))
    } else {
        (None, None)
    }
}

fn strip_query(uri: &mut Uri, rest: &str) {
    let path = uri.path();
    let pq = if rest.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{rest}")
    };
    let Ok(pq) = pq.parse::<PathAndQuery>() else {
        return;
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(pq);
    if let Ok(stripped) = Uri::from_parts(parts) {
        *uri = stripped;
    }
}

/// 303 to the same page without the token (so it stays out of the address bar and history),
/// with the session cookie holding the token.
fn sign_in(token: &str, path: &str, rest: &str, secure: bool) -> Response {
    // `//host` or `/\host` would leave this server.
    let path = format!("/{}", path.trim_start_matches(['/', '\\']));
    let location = if rest.is_empty() {
        path
    } else {
        format!("{path}?{rest}")
    };
    let cookie = format!(
        "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/{}",
        percent_encode_cookie_value(token),
        if secure { "; Secure" } else { "" }
    );
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::LOCATION,
        HeaderValue::try_from(location).unwrap_or(HeaderValue::from_static("/")),
    );
    if let Ok(cookie) = HeaderValue::try_from(cookie) {
        headers.insert(header::SET_COOKIE, cookie);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

fn percent_encode_cookie_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = bytes.get(i + 1..i + 3)
            && let Some(b) = std::str::from_utf8(hex)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Equal bytes, in time that depends only on the lengths.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Check {
    #[default]
    Absent,
    Valid,
    Wrong,
}

/// What the client presented, each way.
#[derive(Clone, Copy, Debug, Default)]
struct Credentials {
    bearer: Check,
    cookie: Check,
    query: Check,
}

impl Credentials {
    fn valid(&self) -> bool {
        [self.bearer, self.cookie, self.query].contains(&Check::Valid)
    }
}

/// A host and port, lower-case, without brackets or a trailing dot.
struct Authority {
    host: String,
    /// `None`: no port (or an empty one).
    port: Option<u16>,
}

impl Authority {
    /// `host`, `host:port`, `[v6]`, `[v6]:port`, a bare IPv6 address; `None` for a bad port.
    fn parse(s: &str) -> Option<Authority> {
        let s = s.trim();
        let s = s.rsplit_once('@').map_or(s, |(_, host)| host);
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (host, after) = rest.split_once(']')?;
            match after {
                "" => (host, None),
                _ => (host, Some(after.strip_prefix(':')?)),
            }
        } else {
            match s.rsplit_once(':') {
                Some((host, port)) if !host.contains(':') => (host, Some(port)),
                _ => (s, None),
            }
        };
        let port = match port {
            None | Some("") => None,
            Some(p) => Some(p.parse::<u16>().ok()?),
        };
        Some(Authority {
            host: host.trim_end_matches('.').to_ascii_lowercase(),
            port,
        })
    }
}

/// `scheme://host[:port]`.
struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl Origin {
    fn parse(s: &str) -> Option<Origin> {
        let (scheme, rest) = s.trim().split_once("://")?;
        if scheme.is_empty() {
            return None;
        }
        let authority = rest.split('/').next().unwrap_or_default();
        let auth = Authority::parse(authority)?;
        if auth.host.is_empty() {
            return None;
        }
        Some(Origin {
            scheme: scheme.to_ascii_lowercase(),
            host: auth.host,
            port: auth.port,
        })
    }

    fn effective_port(&self) -> Option<u16> {
        self.port.or(match self.scheme.as_str() {
            "http" | "ws" => Some(80),
            "https" | "wss" => Some(443),
            _ => None,
        })
    }

    fn same_as(&self, other: &Origin) -> bool {
        self.scheme == other.scheme
            && self.host == other.host
            && self.effective_port() == other.effective_port()
    }
}

/// This server's origin as the client sees it: the Host, and https behind a proxy that says so.
fn own_origin(headers: &HeaderMap, authority: &str) -> Option<Origin> {
    let auth = Authority::parse(authority)?;
    Some(Origin {
        scheme: if forwarded_https(headers) {
            "https"
        } else {
            "http"
        }
        .to_owned(),
        host: auth.host,
        port: auth.port,
    })
}

impl HostRule {
    fn parse(entry: &str) -> Option<HostRule> {
        let entry = entry.trim();
        if entry.is_empty() {
            return None;
        }
        if entry == "*" {
            return Some(HostRule::Any);
        }
        if let Some(suffix) = entry.strip_prefix("*.").or_else(|| entry.strip_prefix('.')) {
            let suffix = Authority::parse(suffix)?.host;
            return Some(HostRule::Suffix(format!(".{suffix}")));
        }
        let host = Authority::parse(entry)?.host;
        Some(match host.parse::<IpAddr>() {
            Ok(ip) => HostRule::Ip(ip.to_canonical()),
            Err(_) => HostRule::Name(host),
        })
    }
}

impl OriginRule {
    fn parse(entry: &str) -> Option<OriginRule> {
        let entry = entry.trim().trim_end_matches('/');
        if entry.is_empty() {
            return None;
        }
        if entry == "*" {
            return Some(OriginRule::Any);
        }
        if entry.contains("://") {
            return Origin::parse(entry).map(OriginRule::Exact);
        }
        let auth = Authority::parse(entry)?;
        Some(OriginRule::Host {
            host: auth.host,
            port: auth.port,
        })
    }
}

/// How a refusal is written: a page for browsers, the server-function error format for the
/// pages' server functions (so the page shows the message), JSON for the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    Html,
    ServerFn,
    Json,
}

impl Style {
    fn of(path: &str, headers: &HeaderMap) -> Style {
        if accepts_html(headers) {
            Style::Html
        } else if is_server_fn(path) {
            Style::ServerFn
        } else {
            Style::Json
        }
    }
}

enum Refusal {
    /// 403: the Host is not this server's (the value, possibly empty).
    Host(String),
    /// 403: a write from another origin.
    Origin(String),
    /// 401.
    Unauthorized {
        reason: String,
        /// A token exists: the page offers to enter it.
        sign_in: bool,
        /// The cookie holds a wrong token: it is removed.
        clear_cookie: bool,
    },
}

impl Refusal {
    fn into_response(self, style: Style, path: &str) -> Response {
        let (status, message) = match &self {
            Refusal::Host(host) => {
                let host: String = host.chars().take(100).collect();
                (
                    StatusCode::FORBIDDEN,
                    if host.is_empty() {
                        "this server does not answer to an unreadable Host header".to_owned()
                    } else {
                        format!(
                            "this server does not answer to the host name {host:?} (a guard \
                             against DNS rebinding); the operator can allow it with \
                             --allowed-host"
                        )
                    },
                )
            }
            Refusal::Origin(origin) => {
                let origin: String = origin.chars().take(100).collect();
                (
                    StatusCode::FORBIDDEN,
                    format!(
                        "a change requested by the page at {origin:?} is refused: it is not this \
                         server's own origin (the operator can allow it with --allow-origin)"
                    ),
                )
            }
            Refusal::Unauthorized { reason, .. } => (StatusCode::UNAUTHORIZED, reason.clone()),
        };
        let mut response = match (style, &self) {
            (
                Style::Html,
                Refusal::Unauthorized {
                    reason, sign_in, ..
                },
            ) => (
                status,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                refused_page(reason, *sign_in, path),
            )
                .into_response(),
            (Style::Html, _) => (
                status,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                message,
            )
                .into_response(),
            (Style::ServerFn, _) => (
                status,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("ServerError|{message}"),
            )
                .into_response(),
            (Style::Json, _) => (
                status,
                [(header::CONTENT_TYPE, "application/json")],
                serde_json::json!({ "error": message }).to_string(),
            )
                .into_response(),
        };
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Refusal::Unauthorized { clear_cookie, .. } = self {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"pion-the-sky\""),
            );
            if clear_cookie {
                headers.insert(
                    header::SET_COOKIE,
                    HeaderValue::from_static(
                        "pion_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0",
                    ),
                );
            }
        }
        response
    }
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page a refused browser sees: what happened and what to do, and (with a token) a form
/// that opens the same page with `?token=`, which signs in.
fn refused_page(reason: &str, sign_in: bool, path: &str) -> String {
    let form = if sign_in {
        let action = html_escape(&format!("/{}", path.trim_start_matches(['/', '\\'])));
        format!(
            r#"<form method="get" action="{action}">
<label>Access token <input type="password" name="{QUERY_PARAM}" autocomplete="current-password" required autofocus></label>
<button type="submit">Sign in</button>
</form>"#
        )
    } else {
        String::new()
    };
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Access token needed · pion-the-sky</title>
<style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;line-height:1.5}}input{{font:inherit;margin:0 .5rem}}button{{font:inherit}}</style>
</head>
<body>
<h1>Access token needed</h1>
<p id="access-refused">{}</p>
{form}
</body>
</html>
"#,
        html_escape(reason)
    )
}
