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
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::connect_info::MockConnectInfo;
use axum::extract::{ConnectInfo, OriginalUri, Request, State};
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
    /// The token was generated at start because the server listens beyond loopback and the
    /// operator set none: remote clients need it, loopback clients stay trusted (with
    /// `--trust-loopback`), so a laptop's own browser and the seed's pages keep working.
    pub token_generated: bool,
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
            token_generated: false,
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
    token_generated: bool,
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
    Host {
        host: String,
        port: Option<u16>,
    },
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
                token_generated: cfg.token_generated,
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
        // With a token the operator set, loopback is not trusted: that is the point of it.
        (inner.token.is_none() || inner.token_generated) && inner.trust_loopback && who.loopback
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
        if h.is_empty() {
            return false;
        }
        if h == "localhost" || h.ends_with(".localhost") {
            return true;
        }
        let ip = h.parse::<IpAddr>().ok().map(|ip| ip.to_canonical());
        // DNS rebinding needs a name that resolves to us: an address literal (the machine's
        // own, a NAT's public one) cannot be one, so every IP is allowed.
        if ip.is_some() {
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
        let bearer = headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| {
                let (scheme, rest) = v.trim().split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then(|| rest.trim().to_owned())
            });
        let cookie = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| {
                let (name, value) = pair.trim().split_once('=')?;
                let value = value.trim().trim_matches('"');
                (name.trim() == COOKIE).then(|| percent_decode(value))
            });
        Credentials {
            bearer: check(token, bearer),
            cookie: check(token, cookie),
            query: check(token, query.map(str::to_owned)),
        }
    }

    fn unauthorized_reason(&self, need: Need, creds: &Credentials) -> String {
        let inner = &self.inner;
        let what = match need {
            Need::Write => Some(
                "Changing anything on this server (recording, renaming, deleting, stopping a \
                 session)",
            ),
            Need::Read if inner.private => {
                Some("This server is private: viewing its pages and recordings")
            }
            _ => None,
        };
        if inner.token.is_none() {
            let what = what.unwrap_or("This");
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
        let needs = what.map_or(String::new(), |what| {
            format!("{what} needs the server's access token. ")
        });
        format!(
            "{problem}{needs}Open the URL the server printed at start (/?token=…), or ask the \
             operator for the token. Scripts send `Authorization: Bearer <token>`."
        )
    }
}

/// A random token for a server that has none (48 hex digits from the OS's random source).
pub fn generate_token() -> std::io::Result<String> {
    crate::random::hex(24).map_err(std::io::Error::other)
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
        // WHEP (starting, trickling to and ending a playback) reads; WHIP records: a write.
        return if is_list_server_fn(path) || under(path, "/whep") {
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
    path.starts_with("/pkg/")
        || path
            .rsplit('/')
            .next()
            .is_some_and(|last| last.contains('.'))
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
    is_api(path)
        && !under(path, "/api/recordings")
        && !under(path, "/api/sessions")
        && !under(path, "/api/ingest")
        && !under(path, "/api/forwards")
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
        refusal.render(style, &path)
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

    let need = classify(&method, &path);
    let (query, rest) = split_token(req.uri().query());
    let creds = access.credentials(req.headers(), query.as_deref());
    if creds.query == Check::Wrong && !access.is_open() {
        return refuse(
            "wrong token in the query",
            Refusal::Unauthorized {
                reason: access.unauthorized_reason(need, &creds),
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
        if let Some(OriginalUri(original)) = req.extensions_mut().get_mut::<OriginalUri>() {
            strip_query(original, &rest);
        }
    }

    let who = Who {
        loopback: is_loopback(peer),
        authenticated: creds.valid(),
    };
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
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
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

/// Whether any of the presented values is the token.
fn check(token: &str, presented: impl IntoIterator<Item = String>) -> Check {
    let mut seen = Check::Absent;
    for value in presented {
        if ct_eq(value.as_bytes(), token.as_bytes()) {
            return Check::Valid;
        }
        seen = Check::Wrong;
    }
    seen
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
    fn render(self, style: Style, path: &str) -> Response {
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Extension;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::{get, post};
    use tower::ServiceExt;

    const TOKEN: &str = "s3cret-token";
    const LOOP4: &str = "127.0.0.1:50000";
    const LOOP6: &str = "[::1]:50000";
    const MAPPED: &str = "[::ffff:127.0.0.1]:50000";
    const REMOTE: &str = "192.0.2.7:50000";
    const HOST: &str = "localhost:8082";
    const LIST_FN: &str = "/api/list_recordings1234567890";
    const DELETE_FN: &str = "/api/delete_recording987654321";

    #[derive(Clone, Copy, Debug)]
    enum Cfg {
        /// The laptop default: no token, loopback trusted.
        Laptop,
        /// No token, `--trust-loopback=false` (a test standing in for a remote client).
        Untrusting,
        /// A token set.
        Token,
        /// A token set and `--private`.
        Private,
        /// `--open`.
        Open,
        /// A token, `--allowed-host pion.lan`, an own address, an allowed origin.
        Lists,
        /// `*` in both lists.
        Stars,
    }

    fn config(cfg: Cfg) -> AccessConfig {
        let base = AccessConfig::default();
        match cfg {
            Cfg::Laptop => base,
            Cfg::Untrusting => AccessConfig {
                trust_loopback: false,
                ..base
            },
            Cfg::Token => AccessConfig {
                token: Some(TOKEN.into()),
                ..base
            },
            Cfg::Private => AccessConfig {
                token: Some(TOKEN.into()),
                private: true,
                ..base
            },
            Cfg::Open => AccessConfig {
                open: true,
                trust_loopback: false,
                ..base
            },
            Cfg::Lists => AccessConfig {
                token: Some(TOKEN.into()),
                allowed_hosts: vec![
                    "pion.lan".into(),
                    "192.0.2.1".into(),
                    "*.example.net".into(),
                    "[2001:db8::1]:8082".into(),
                ],
                allowed_origins: vec!["http://app.example.org:3000".into(), "tool.test".into()],
                ..base
            },
            Cfg::Stars => AccessConfig {
                allowed_hosts: vec!["*".into()],
                allowed_origins: vec!["*".into()],
                ..base
            },
        }
    }

    /// Answers with what the middleware found out, and the URI it passed on.
    async fn echo(
        Extension(who): Extension<Who>,
        OriginalUri(original): OriginalUri,
        uri: Uri,
    ) -> String {
        format!(
            "loopback={} authenticated={} original={original} uri={uri}",
            who.loopback, who.authenticated
        )
    }

    fn app(cfg: Cfg) -> Router {
        Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/ws", get(echo))
            .route("/", get(echo))
            .route("/play", get(echo))
            .route("/pkg/pion_the_sky.js", get(echo))
            .route("/favicon.ico", get(echo))
            .route("/metrics", get(echo))
            .route("/api/recordings", get(echo))
            .route("/api/recordings/{id}", get(echo).patch(echo).delete(echo))
            .route("/api/recordings/{id}/file", get(echo))
            .route("/api/sessions", get(echo))
            .route("/api/sessions/{id}", axum::routing::delete(echo))
            .route(LIST_FN, post(echo))
            .route(DELETE_FN, post(echo))
            .layer(axum::middleware::from_fn_with_state(
                Access::new(config(cfg)),
                guard,
            ))
    }

    /// A request from `peer`; `Host: localhost:8082` unless `headers` has a Host (or
    /// `("host", "")`, which means none).
    fn request(method: &str, uri: &str, peer: &str, headers: &[(&str, &str)]) -> Request<Body> {
        let mut builder = Request::builder().method(method).uri(uri);
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            builder = builder.header("host", HOST);
        }
        for (k, v) in headers {
            if !(k.eq_ignore_ascii_case("host") && v.is_empty()) {
                builder = builder.header(*k, *v);
            }
        }
        let mut req = builder.body(Body::empty()).unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        req
    }

    async fn send(cfg: Cfg, req: Request<Body>) -> (StatusCode, HeaderMap, String) {
        let response = app(cfg).oneshot(req).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, headers, String::from_utf8(body.to_vec()).unwrap())
    }

    struct Case {
        name: &'static str,
        cfg: Cfg,
        method: &'static str,
        uri: &'static str,
        peer: &'static str,
        headers: &'static [(&'static str, &'static str)],
        status: u16,
    }

    const fn case(
        name: &'static str,
        cfg: Cfg,
        method: &'static str,
        uri: &'static str,
        peer: &'static str,
        headers: &'static [(&'static str, &'static str)],
        status: u16,
    ) -> Case {
        Case {
            name,
            cfg,
            method,
            uri,
            peer,
            headers,
            status,
        }
    }

    const BEARER: &[(&str, &str)] = &[("authorization", "Bearer s3cret-token")];
    const BEARER_LOWER: &[(&str, &str)] = &[("authorization", "bearer s3cret-token")];
    const BEARER_WRONG: &[(&str, &str)] = &[("authorization", "Bearer s3cret-tokem")];
    const BEARER_SHORT: &[(&str, &str)] = &[("authorization", "Bearer s3cret")];
    const BASIC: &[(&str, &str)] = &[("authorization", "Basic czNjcmV0LXRva2Vu")];
    const COOKIE_OK: &[(&str, &str)] = &[("cookie", "theme=dark; pion_session=s3cret-token")];
    const COOKIE_WRONG: &[(&str, &str)] = &[("cookie", "pion_session=old-token")];
    const HTML: &[(&str, &str)] = &[("accept", "text/html,application/xhtml+xml")];
    const NONE: &[(&str, &str)] = &[];

    #[rustfmt::skip]
    const CASES: &[Case] = &[
        // Without a token: loopback is trusted (by default), nobody else writes.
        case("loopback renames", Cfg::Laptop, "PATCH", "/api/recordings/a", LOOP4, NONE, 200),
        case("v6 loopback deletes", Cfg::Laptop, "DELETE", "/api/recordings/a", LOOP6, NONE, 200),
        case("mapped loopback deletes", Cfg::Laptop, "DELETE", "/api/recordings/a", MAPPED, NONE, 200),
        case("loopback server fn delete", Cfg::Laptop, "POST", DELETE_FN, LOOP4, NONE, 200),
        case("loopback stops a session", Cfg::Laptop, "DELETE", "/api/sessions/s1", LOOP4, NONE, 200),
        case("remote cannot delete", Cfg::Laptop, "DELETE", "/api/recordings/a", REMOTE, NONE, 401),
        case("remote cannot server fn delete", Cfg::Laptop, "POST", DELETE_FN, REMOTE, NONE, 401),
        case("remote reads the list", Cfg::Laptop, "GET", "/api/recordings", REMOTE, NONE, 200),
        case("remote downloads", Cfg::Laptop, "GET", "/api/recordings/a/file", REMOTE, NONE, 200),
        case("remote lists via server fn", Cfg::Laptop, "POST", LIST_FN, REMOTE, NONE, 200),
        case("remote sees a page", Cfg::Laptop, "GET", "/play", REMOTE, HTML, 200),
        // --trust-loopback=false without a token: loopback is like any other client.
        case("untrusted loopback cannot delete", Cfg::Untrusting, "DELETE", "/api/recordings/a", LOOP4, NONE, 401),
        case("untrusted loopback cannot stop", Cfg::Untrusting, "DELETE", "/api/sessions/s1", LOOP4, NONE, 401),
        case("untrusted loopback reads", Cfg::Untrusting, "GET", "/api/recordings", LOOP4, NONE, 200),
        // With a token, every write needs it, from loopback too.
        case("token: loopback without it", Cfg::Token, "DELETE", "/api/recordings/a", LOOP4, NONE, 401),
        case("token: bearer", Cfg::Token, "DELETE", "/api/recordings/a", REMOTE, BEARER, 200),
        case("token: bearer, any case", Cfg::Token, "PATCH", "/api/recordings/a", REMOTE, BEARER_LOWER, 200),
        case("token: wrong bearer", Cfg::Token, "DELETE", "/api/recordings/a", REMOTE, BEARER_WRONG, 401),
        case("token: a prefix of it", Cfg::Token, "DELETE", "/api/recordings/a", REMOTE, BEARER_SHORT, 401),
        case("token: basic is not bearer", Cfg::Token, "DELETE", "/api/recordings/a", REMOTE, BASIC, 401),
        case("token: cookie", Cfg::Token, "POST", DELETE_FN, REMOTE, COOKIE_OK, 200),
        case("token: wrong cookie", Cfg::Token, "POST", DELETE_FN, REMOTE, COOKIE_WRONG, 401),
        case("token: query", Cfg::Token, "DELETE", "/api/recordings/a?token=s3cret-token", REMOTE, NONE, 200),
        case("token: encoded query", Cfg::Token, "DELETE", "/api/recordings/a?token=s3cret%2Dtoken", REMOTE, NONE, 200),
        case("token: wrong query", Cfg::Token, "DELETE", "/api/recordings/a?token=nope", REMOTE, NONE, 401),
        case("token: wrong query on a read", Cfg::Token, "GET", "/api/recordings?token=nope", REMOTE, NONE, 401),
        case("token: reads are free", Cfg::Token, "GET", "/api/recordings", REMOTE, NONE, 200),
        case("token: pages are free", Cfg::Token, "GET", "/", REMOTE, HTML, 200),
        case("token: list server fn is a read", Cfg::Token, "POST", LIST_FN, REMOTE, NONE, 200),
        case("token: stop session", Cfg::Token, "DELETE", "/api/sessions/s1", REMOTE, NONE, 401),
        case("token: unknown method is a write", Cfg::Token, "PUT", "/api/recordings/a", REMOTE, NONE, 401),
        case("token: ws upgrade needs nothing", Cfg::Token, "GET", "/ws", REMOTE, NONE, 200),
        // --private: reads too.
        case("private: list", Cfg::Private, "GET", "/api/recordings", REMOTE, NONE, 401),
        case("private: list, loopback", Cfg::Private, "GET", "/api/recordings", LOOP4, NONE, 401),
        case("private: list with bearer", Cfg::Private, "GET", "/api/recordings", REMOTE, BEARER, 200),
        case("private: download", Cfg::Private, "GET", "/api/recordings/a/file", REMOTE, NONE, 401),
        case("private: download with cookie", Cfg::Private, "GET", "/api/recordings/a/file", REMOTE, COOKIE_OK, 200),
        case("private: sessions", Cfg::Private, "GET", "/api/sessions", REMOTE, NONE, 401),
        case("private: metrics", Cfg::Private, "GET", "/metrics", REMOTE, NONE, 401),
        case("private: metrics with bearer", Cfg::Private, "GET", "/metrics", REMOTE, BEARER, 200),
        case("private: list server fn", Cfg::Private, "POST", LIST_FN, REMOTE, NONE, 401),
        case("private: list server fn with cookie", Cfg::Private, "POST", LIST_FN, REMOTE, COOKIE_OK, 200),
        case("private: pages", Cfg::Private, "GET", "/play", REMOTE, HTML, 401),
        case("private: pages with cookie", Cfg::Private, "GET", "/play", REMOTE, COOKIE_OK, 200),
        case("private: static files", Cfg::Private, "GET", "/pkg/pion_the_sky.js", REMOTE, NONE, 200),
        case("private: favicon", Cfg::Private, "GET", "/favicon.ico", REMOTE, NONE, 200),
        case("private: healthz", Cfg::Private, "GET", "/healthz", REMOTE, NONE, 200),
        case("private: ws upgrade", Cfg::Private, "GET", "/ws", REMOTE, NONE, 200),
        // --open: no token rules.
        case("open: remote deletes", Cfg::Open, "DELETE", "/api/recordings/a", REMOTE, NONE, 200),
        case("open: wrong query ignored", Cfg::Open, "DELETE", "/api/recordings/a?token=x", REMOTE, NONE, 200),
        case("open: still no rebinding", Cfg::Open, "GET", "/api/recordings", REMOTE, &[("host", "evil.example")], 403),
        case("open: still no CSRF", Cfg::Open, "DELETE", "/api/recordings/a", REMOTE, &[("origin", "http://evil.example")], 403),
        // Host allowlist (DNS rebinding).
        case("rebinding host", Cfg::Laptop, "GET", "/api/recordings", LOOP4, &[("host", "evil.example")], 403),
        case("rebinding host with port", Cfg::Laptop, "GET", "/api/recordings", LOOP4, &[("host", "evil.example:8082")], 403),
        case("rebinding host on a page", Cfg::Laptop, "GET", "/", LOOP4, &[("host", "evil.example:8082"), ("accept", "text/html")], 403),
        case("rebinding host on the ws", Cfg::Laptop, "GET", "/ws", LOOP4, &[("host", "evil.example:8082")], 403),
        case("rebinding host on healthz", Cfg::Laptop, "GET", "/healthz", LOOP4, &[("host", "evil.example")], 403),
        case("localhost subdomain", Cfg::Laptop, "GET", "/api/recordings", LOOP4, &[("host", "app.localhost:8082")], 200),
        case("localhost, any case, dot", Cfg::Laptop, "GET", "/api/recordings", LOOP4, &[("host", "LocalHost.:8082")], 200),
        case("127.0.0.1", Cfg::Laptop, "GET", "/api/recordings", LOOP4, &[("host", "127.0.0.1:8082")], 200),
        case("127.0.0.1, no port", Cfg::Laptop, "GET", "/api/recordings", LOOP4, &[("host", "127.0.0.1")], 200),
        case("[::1]", Cfg::Laptop, "GET", "/api/recordings", LOOP6, &[("host", "[::1]:8082")], 200),
        case("no Host (HTTP/1.0)", Cfg::Laptop, "GET", "/api/recordings", LOOP4, &[("host", "")], 200),
        case("any IP literal (cannot be rebound)", Cfg::Laptop, "GET", "/api/recordings", REMOTE, &[("host", "192.0.2.1:8082")], 200),
        case("a name not listed (DNS rebinding)", Cfg::Laptop, "GET", "/api/recordings", REMOTE, &[("host", "rebind.attacker.example:8082")], 403),
        case("own IP listed", Cfg::Lists, "GET", "/api/recordings", REMOTE, &[("host", "192.0.2.1:8082")], 200),
        case("own v6 listed", Cfg::Lists, "GET", "/api/recordings", REMOTE, &[("host", "[2001:db8::1]:8082")], 200),
        case("allowed host", Cfg::Lists, "GET", "/api/recordings", REMOTE, &[("host", "pion.lan:8082")], 200),
        case("allowed host suffix", Cfg::Lists, "GET", "/api/recordings", REMOTE, &[("host", "a.example.net")], 200),
        case("suffix is not the bare name", Cfg::Lists, "GET", "/api/recordings", REMOTE, &[("host", "badexample.net")], 403),
        case("host star", Cfg::Stars, "GET", "/api/recordings", REMOTE, &[("host", "anything.example")], 200),
        // Origin on writes (CSRF).
        case("foreign origin write", Cfg::Laptop, "DELETE", "/api/recordings/a", LOOP4, &[("origin", "http://evil.example")], 403),
        case("foreign origin server fn", Cfg::Laptop, "POST", DELETE_FN, LOOP4, &[("origin", "http://evil.example")], 403),
        case("foreign origin with the token", Cfg::Token, "DELETE", "/api/recordings/a", REMOTE, &[("origin", "http://evil.example"), ("authorization", "Bearer s3cret-token")], 403),
        case("same origin write", Cfg::Laptop, "DELETE", "/api/recordings/a", LOOP4, &[("origin", "http://localhost:8082")], 200),
        case("other port", Cfg::Laptop, "DELETE", "/api/recordings/a", LOOP4, &[("origin", "http://localhost:9999")], 403),
        case("other scheme", Cfg::Laptop, "DELETE", "/api/recordings/a", LOOP4, &[("origin", "https://localhost:8082")], 403),
        case("null origin", Cfg::Laptop, "DELETE", "/api/recordings/a", LOOP4, &[("origin", "null")], 403),
        case("default port", Cfg::Lists, "DELETE", "/api/recordings/a", REMOTE, &[("host", "pion.lan"), ("origin", "http://pion.lan"), ("authorization", "Bearer s3cret-token")], 200),
        case("default port, explicit", Cfg::Lists, "DELETE", "/api/recordings/a", REMOTE, &[("host", "pion.lan:80"), ("origin", "http://pion.lan"), ("authorization", "Bearer s3cret-token")], 200),
        case("behind https proxy", Cfg::Lists, "DELETE", "/api/recordings/a", REMOTE, &[("host", "pion.lan"), ("x-forwarded-proto", "https"), ("origin", "https://pion.lan"), ("authorization", "Bearer s3cret-token")], 200),
        case("allowed origin", Cfg::Lists, "DELETE", "/api/recordings/a", REMOTE, &[("origin", "http://app.example.org:3000"), ("authorization", "Bearer s3cret-token")], 200),
        case("allowed origin, other port", Cfg::Lists, "DELETE", "/api/recordings/a", REMOTE, &[("origin", "http://app.example.org:3001"), ("authorization", "Bearer s3cret-token")], 403),
        case("allowed origin host", Cfg::Lists, "DELETE", "/api/recordings/a", REMOTE, &[("origin", "https://tool.test:8443"), ("authorization", "Bearer s3cret-token")], 200),
        case("origin star", Cfg::Stars, "DELETE", "/api/recordings/a", LOOP4, &[("origin", "http://evil.example")], 200),
        case("foreign origin on a read", Cfg::Laptop, "GET", "/api/recordings", LOOP4, &[("origin", "http://evil.example")], 200),
    ];

    #[tokio::test]
    async fn every_rule() {
        let mut failures = Vec::new();
        for c in CASES {
            let (status, _, body) = send(c.cfg, request(c.method, c.uri, c.peer, c.headers)).await;
            if status.as_u16() != c.status {
                failures.push(format!(
                    "{}: {:?} {} {} from {}: want {}, got {status}: {body}",
                    c.name, c.cfg, c.method, c.uri, c.peer, c.status
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[tokio::test]
    async fn who_reaches_the_handler() {
        let cases: &[(Cfg, &str, &str, &[(&str, &str)], &str)] = &[
            (
                Cfg::Laptop,
                "/api/recordings",
                LOOP4,
                NONE,
                "loopback=true authenticated=false",
            ),
            (
                Cfg::Laptop,
                "/api/recordings",
                MAPPED,
                NONE,
                "loopback=true authenticated=false",
            ),
            (
                Cfg::Laptop,
                "/api/recordings",
                REMOTE,
                BEARER,
                "loopback=false authenticated=false",
            ),
            (
                Cfg::Token,
                "/api/recordings",
                REMOTE,
                BEARER,
                "loopback=false authenticated=true",
            ),
            (
                Cfg::Token,
                "/api/recordings",
                REMOTE,
                COOKIE_OK,
                "loopback=false authenticated=true",
            ),
            (
                Cfg::Token,
                "/api/recordings",
                REMOTE,
                COOKIE_WRONG,
                "loopback=false authenticated=false",
            ),
            (
                Cfg::Token,
                "/ws?token=s3cret-token",
                REMOTE,
                NONE,
                "loopback=false authenticated=true",
            ),
        ];
        for (cfg, uri, peer, headers, want) in cases {
            let (status, _, body) = send(*cfg, request("GET", uri, peer, headers)).await;
            assert_eq!(status, StatusCode::OK, "{cfg:?} {uri}: {body}");
            assert!(body.starts_with(want), "{cfg:?} {uri} {headers:?}: {body}");
        }
    }

    #[tokio::test]
    async fn the_token_does_not_go_further() {
        for uri in [
            "/ws?token=s3cret-token",
            "/ws?room=1&token=s3cret-token&x=2",
            "/api/recordings?token=s3cret-token",
        ] {
            let (status, headers, body) = send(Cfg::Token, request("GET", uri, REMOTE, NONE)).await;
            assert_eq!(status, StatusCode::OK, "{uri}: {body}");
            assert!(!body.contains(TOKEN), "{uri}: {body}");
            assert!(!headers.contains_key(header::SET_COOKIE), "{uri}");
        }
        let (_, _, body) = send(
            Cfg::Token,
            request("GET", "/ws?room=1&token=s3cret-token&x=2", REMOTE, NONE),
        )
        .await;
        assert!(body.ends_with("uri=/ws?room=1&x=2"), "{body}");
    }

    #[tokio::test]
    async fn a_browser_signs_in_with_the_token_once() {
        for (uri, location) in [
            ("/?token=s3cret-token", "/"),
            ("/play?token=s3cret-token&id=abc", "/play?id=abc"),
            ("/play?id=abc&token=s3cret-token", "/play?id=abc"),
            ("//evil.example/?token=s3cret-token", "/evil.example/"),
        ] {
            let (status, headers, _) = send(Cfg::Token, request("GET", uri, REMOTE, HTML)).await;
            assert_eq!(status, StatusCode::SEE_OTHER, "{uri}");
            assert_eq!(headers[header::LOCATION], location, "{uri}");
            let cookie = headers[header::SET_COOKIE].to_str().unwrap();
            assert_eq!(
                cookie, "pion_session=s3cret-token; HttpOnly; SameSite=Strict; Path=/",
                "{uri}"
            );
        }
        // A page opened without `Accept: text/html` (curl) is a navigation too.
        let (status, _, _) = send(
            Cfg::Token,
            request("GET", "/?token=s3cret-token", REMOTE, NONE),
        )
        .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        // Behind an https proxy the cookie is Secure.
        let (_, headers, _) = send(
            Cfg::Token,
            request(
                "GET",
                "/?token=s3cret-token",
                REMOTE,
                &[("accept", "text/html"), ("x-forwarded-proto", "https")],
            ),
        )
        .await;
        assert!(
            headers[header::SET_COOKIE]
                .to_str()
                .unwrap()
                .ends_with("; Secure")
        );
        // The cookie then lets the browser write.
        let (status, _, body) = send(
            Cfg::Token,
            request(
                "POST",
                DELETE_FN,
                REMOTE,
                &[
                    ("cookie", "pion_session=s3cret-token"),
                    ("origin", "http://localhost:8082"),
                ],
            ),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    #[tokio::test]
    async fn a_wrong_token_in_the_address_gets_the_page() {
        let (status, headers, body) =
            send(Cfg::Token, request("GET", "/?token=nope", REMOTE, HTML)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(!headers.contains_key(header::SET_COOKIE));
        assert!(
            headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert!(body.contains("The token in the address is wrong"), "{body}");
        assert!(body.contains("/?token=…"), "{body}");
        assert!(body.contains(r#"name="token""#), "{body}");
        assert!(!body.contains("nope"), "{body}");
    }

    #[tokio::test]
    async fn refusals_speak_the_clients_language() {
        // An API client: 401 with a JSON error.
        let (status, headers, body) = send(
            Cfg::Token,
            request("DELETE", "/api/recordings/a", REMOTE, NONE),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        assert!(headers.contains_key(header::WWW_AUTHENTICATE));
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(
            json["error"].as_str().unwrap().contains("access token"),
            "{body}"
        );
        // A page's server function: the server-function error format, so the page shows it.
        let (status, _, body) = send(Cfg::Token, request("POST", DELETE_FN, REMOTE, NONE)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(body.starts_with("ServerError|"), "{body}");
        // A browser: the page, with the form.
        let (status, _, body) = send(Cfg::Private, request("GET", "/play", REMOTE, HTML)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(body.contains("<form"), "{body}");
        assert!(body.contains("private"), "{body}");
        // Without a token there is nothing to enter: the page says so.
        let (status, _, body) = send(
            Cfg::Untrusting,
            request("DELETE", "/api/recordings/a", LOOP4, HTML),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(!body.contains("<form"), "{body}");
        assert!(body.contains("--token"), "{body}");
        // A stale cookie is cleared.
        let (_, headers, body) = send(
            Cfg::Token,
            request("DELETE", "/api/recordings/a", REMOTE, COOKIE_WRONG),
        )
        .await;
        assert!(body.contains("old token"), "{body}");
        assert!(
            headers[header::SET_COOKIE]
                .to_str()
                .unwrap()
                .contains("Max-Age=0")
        );
        // A rebinding Host: 403 with a clear error.
        let (status, headers, body) = send(
            Cfg::Laptop,
            request("GET", "/api/recordings", LOOP4, &[("host", "evil.example")]),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        assert!(body.contains("--allowed-host"), "{body}");
        // A foreign Origin: 403.
        let (status, _, body) = send(
            Cfg::Laptop,
            request(
                "DELETE",
                "/api/recordings/a",
                LOOP4,
                &[("origin", "http://evil.example")],
            ),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(body.contains("--allow-origin"), "{body}");
        // No response carries the token.
        for (cfg, method, uri, headers) in [
            (Cfg::Token, "DELETE", "/api/recordings/a", BEARER_WRONG),
            (Cfg::Private, "GET", "/", HTML),
            (Cfg::Token, "GET", "/?token=nope", HTML),
        ] {
            let (_, _, body) = send(cfg, request(method, uri, REMOTE, headers)).await;
            assert!(!body.contains(TOKEN), "{body}");
        }
    }

    #[test]
    fn classification() {
        let get = Method::GET;
        let post = Method::POST;
        let cases: &[(&Method, &str, Need)] = &[
            (&get, "/healthz", Need::Nothing),
            (&get, "/ws", Need::Nothing),
            (&get, "/pkg/pion_the_sky.js", Need::Nothing),
            (&get, "/pkg/pion_the_sky_bg.wasm", Need::Nothing),
            (&get, "/favicon.ico", Need::Nothing),
            (&Method::HEAD, "/favicon.ico", Need::Nothing),
            (&Method::OPTIONS, "/api/recordings", Need::Nothing),
            (&get, "/", Need::Read),
            (&get, "/record", Need::Read),
            (&get, "/play", Need::Read),
            (&get, "/play/", Need::Read),
            (&get, "/api/recordings", Need::Read),
            (&get, "/api/recordings/a.b", Need::Read),
            (&get, "/api/recordings/a/file", Need::Read),
            (&Method::HEAD, "/api/recordings/a/file", Need::Read),
            (&get, "/api/sessions", Need::Read),
            (&get, "/metrics", Need::Read),
            (&post, "/api/list_recordings12345", Need::Read),
            (&post, "/api/list_recordings", Need::Read),
            (
                &post,
                "/api/app/server_fns/list_recordings12345",
                Need::Read,
            ),
            (&post, "/api/list_recordingsX", Need::Write),
            (&post, "/api/rename_recording12345", Need::Write),
            (&post, "/api/delete_recording12345", Need::Write),
            (&Method::PATCH, "/api/recordings/a", Need::Write),
            (&Method::DELETE, "/api/recordings/a", Need::Write),
            (&Method::DELETE, "/api/sessions/a", Need::Write),
            (&Method::PUT, "/api/recordings/a", Need::Write),
            (&post, "/ws", Need::Write),
            (&post, "/", Need::Write),
        ];
        for (method, path, need) in cases {
            assert_eq!(classify(method, path), *need, "{method} {path}");
        }
    }

    #[test]
    fn websocket_messages() {
        let loopback = Who {
            loopback: true,
            authenticated: false,
        };
        let remote = Who::default();
        let signed_in = Who {
            loopback: false,
            authenticated: true,
        };
        // (config, who, need, allowed)
        let cases: &[(Cfg, Who, Need, bool)] = &[
            (Cfg::Laptop, loopback, Need::Write, true),
            (Cfg::Laptop, remote, Need::Write, false),
            (Cfg::Laptop, remote, Need::Read, true),
            (Cfg::Untrusting, loopback, Need::Write, false),
            (Cfg::Token, loopback, Need::Write, false),
            (Cfg::Token, remote, Need::Read, true),
            (Cfg::Token, signed_in, Need::Write, true),
            (Cfg::Private, remote, Need::Read, false),
            (Cfg::Private, loopback, Need::Read, false),
            (Cfg::Private, signed_in, Need::Read, true),
            (Cfg::Open, remote, Need::Write, true),
            (Cfg::Private, remote, Need::Nothing, true),
        ];
        for (cfg, who, need, allowed) in cases {
            let access = Access::new(config(*cfg));
            assert_eq!(
                access.ws_allowed(who, *need),
                *allowed,
                "{cfg:?} {who:?} {need:?}"
            );
        }
        assert!(
            Access::new(config(Cfg::Token))
                .refusal(Need::Write)
                .contains("access token")
        );
    }

    #[test]
    fn origin_rule_for_the_websocket() {
        let access = Access::new(config(Cfg::Lists));
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (k, v) in pairs {
                map.insert(*k, HeaderValue::from_static(*v));
            }
            map
        };
        let cases: &[(&[(&'static str, &'static str)], bool)] = &[
            (&[("host", "localhost:8082")], true),
            (
                &[
                    ("host", "localhost:8082"),
                    ("origin", "http://localhost:8082"),
                ],
                true,
            ),
            (
                &[
                    ("host", "localhost:8082"),
                    ("origin", "http://LOCALHOST:8082/"),
                ],
                true,
            ),
            (
                &[
                    ("host", "localhost:8082"),
                    ("origin", "http://evil.example"),
                ],
                false,
            ),
            (
                &[
                    ("host", "localhost:8082"),
                    ("origin", "http://localhost:8083"),
                ],
                false,
            ),
            (
                &[("host", "[::1]:8082"), ("origin", "http://[::1]:8082")],
                true,
            ),
            (
                &[("host", "localhost"), ("origin", "http://localhost:80")],
                true,
            ),
            (&[("origin", "http://localhost:8082")], false),
            (
                &[
                    ("host", "localhost:8082"),
                    ("origin", "http://app.example.org:3000"),
                ],
                true,
            ),
            (&[("host", "localhost:8082"), ("origin", "null")], false),
        ];
        for (pairs, allowed) in cases {
            assert_eq!(
                access.origin_allowed(&headers(*pairs)),
                *allowed,
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn helpers() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"abcd"));
        assert_eq!(percent_decode("a%2Db%zz%4"), "a-b%zz%4");
        assert_eq!(percent_encode_cookie_value("a b;c"), "a%20b%3Bc");
        assert_eq!(
            split_token(Some("a=1&token=x%41&b=2")),
            (Some("xA".to_owned()), Some("a=1&b=2".to_owned()))
        );
        assert_eq!(split_token(Some("a=1")), (None, None));
        assert_eq!(
            split_token(Some("token=")),
            (Some(String::new()), Some(String::new()))
        );
        assert_eq!(split_token(None), (None, None));
        let token = generate_token().unwrap();
        assert_eq!(token.len(), 48);
        assert_ne!(token, generate_token().unwrap());
        // A cookie with an encoded token (a token with characters a cookie cannot hold).
        let access = Access::new(AccessConfig {
            token: Some("a b;c".into()),
            ..AccessConfig::default()
        });
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("pion_session=a%20b%3Bc"),
        );
        let uri: Uri = "/".parse().unwrap();
        assert!(access.who(None, &headers, &uri).authenticated);
        // An empty token is no token.
        let access = Access::new(AccessConfig {
            token: Some(String::new()),
            ..AccessConfig::default()
        });
        assert!(!access.has_token());
        // Debug output never shows the token.
        let shown = format!(
            "{:?} {:?}",
            config(Cfg::Token),
            Access::new(config(Cfg::Token))
        );
        assert!(!shown.contains(TOKEN), "{shown}");
    }
}
