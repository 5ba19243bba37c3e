//! Pieces shared by the pages: the log panel, the session-description and codec panels,
//! the error banner, and formatting helpers. Everything here renders the same on the server
//! and in the browser.
use leptos::prelude::*;

/// Severity of a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Info,
    Ok,
    Warn,
    Error,
}

impl Level {
    fn class(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// One timestamped line of the log panel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub seq: u64,
    pub time: String,
    pub level: Level,
    pub text: String,
}

/// Lines kept in the log panel; older ones are dropped.
const LOG_LIMIT: usize = 300;

/// The log panel's contents.
#[derive(Clone, Copy)]
pub struct Log(RwSignal<Vec<LogLine>>);

impl Default for Log {
    fn default() -> Self {
        Self::new()
    }
}

impl Log {
    pub fn new() -> Self {
        Log(RwSignal::new(Vec::new()))
    }

    pub fn push(self, level: Level, text: impl Into<String>) {
        let text = text.into();
        let time = clock();
        self.0.update(|lines| {
            let seq = lines.last().map_or(0, |l| l.seq + 1);
            lines.push(LogLine {
                seq,
                time,
                level,
                text,
            });
            if lines.len() > LOG_LIMIT {
                let extra = lines.len() - LOG_LIMIT;
                lines.drain(..extra);
            }
        });
    }

    pub fn info(self, text: impl Into<String>) {
        self.push(Level::Info, text)
    }

    pub fn ok(self, text: impl Into<String>) {
        self.push(Level::Ok, text)
    }

    pub fn warn(self, text: impl Into<String>) {
        self.push(Level::Warn, text)
    }

    pub fn error(self, text: impl Into<String>) {
        self.push(Level::Error, text)
    }

    pub fn clear(self) {
        self.0.set(Vec::new());
    }
}

/// Wall-clock time of day for log lines (local time in the browser).
fn clock() -> String {
    #[cfg(feature = "hydrate")]
    {
        let d = js_sys::Date::new_0();
        format!(
            "{:02}:{:02}:{:02}.{:03}",
            d.get_hours(),
            d.get_minutes(),
            d.get_seconds(),
            d.get_milliseconds()
        )
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        let ms = secs % 1000;
        let s = secs / 1000;
        format!(
            "{:02}:{:02}:{:02}.{ms:03}",
            (s / 3600) % 24,
            (s / 60) % 60,
            s % 60
        )
    }
}

/// State of the signaling websocket, as shown to the user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketState {
    Closed,
    Connecting,
    Open,
}

impl SocketState {
    pub fn label(self) -> &'static str {
        match self {
            SocketState::Closed => "closed",
            SocketState::Connecting => "connecting",
            SocketState::Open => "open",
        }
    }
}

/// The connection facts both pages show, as `<div><dt/><dd/></div>` rows inside their `<dl>`:
/// the media bitrate (`bitrate_label`: "Outgoing" / "Incoming"), ICE, peer and websocket state.
#[component]
pub fn LinkFacts(
    #[prop(into)] bitrate_label: String,
    bitrate_kbps: RwSignal<Option<f64>>,
    ice: RwSignal<String>,
    peer: RwSignal<String>,
    socket: RwSignal<SocketState>,
) -> impl IntoView {
    view! {
        <div>
            <dt>{bitrate_label}</dt>
            <dd data-testid="bitrate">{move || format_bitrate(bitrate_kbps.get())}</dd>
        </div>
        <div>
            <dt>"ICE"</dt>
            <dd data-testid="ice-state">{move || ice.get()}</dd>
        </div>
        <div>
            <dt>"Peer"</dt>
            <dd data-testid="peer-state">{move || peer.get()}</dd>
        </div>
        <div>
            <dt>"Server link"</dt>
            <dd data-testid="socket-state">{move || socket.get().label()}</dd>
        </div>
    }
}

/// `1.25 Mbit/s`, `830 kbit/s`, or a dash when unknown.
pub fn format_bitrate(kbps: Option<f64>) -> String {
    match kbps {
        Some(k) if k >= 1000.0 => format!("{:.2} Mbit/s", k / 1000.0),
        Some(k) => format!("{k:.0} kbit/s"),
        None => "—".into(),
    }
}

/// The timestamped log panel.
#[component]
pub fn LogPanel(log: Log) -> impl IntoView {
    let lines = log.0;
    view! {
        <section class="card log-card" aria-labelledby="log-title">
            <div class="card-head">
                <h2 id="log-title">"Log"</h2>
                <button
                    type="button"
                    class="btn small ghost"
                    data-testid="clear-log"
                    disabled=move || lines.with(Vec::is_empty)
                    on:click=move |_| log.clear()
                >
                    "Clear"
                </button>
            </div>
            <ol class="log" data-testid="log" role="log" aria-live="polite" aria-label="Event log">
                <Show when=move || lines.with(Vec::is_empty)>
                    <li class="log-empty">"Nothing yet."</li>
                </Show>
                <For each=move || lines.get() key=|l| l.seq let(line)>
                    <li class=format!("log-line {}", line.level.class())>
                        <time>{line.time}</time>
                        " "
                        <span class="log-text">{line.text}</span>
                    </li>
                </For>
            </ol>
        </section>
    }
}

/// A prominent error banner, shown while `error` holds a message.
#[component]
pub fn ErrorBanner(error: RwSignal<Option<String>>) -> impl IntoView {
    view! {
        <Show when=move || error.with(Option::is_some)>
            <div class="error-banner" role="alert" data-testid="error">
                <span class="error-icon" aria-hidden="true">"!"</span>
                <p class="error-text" data-testid="error-text">
                    {move || error.get().unwrap_or_default()}
                </p>
                <button
                    type="button"
                    class="btn small ghost"
                    aria-label="Dismiss error"
                    on:click=move |_| error.set(None)
                >
                    "Dismiss"
                </button>
            </div>
        </Show>
    }
}

/// The local and remote session descriptions, each in a collapsible block.
#[component]
pub fn SdpPanel(local: RwSignal<String>, remote: RwSignal<String>) -> impl IntoView {
    let block = move |title: &'static str, testid: &'static str, sdp: RwSignal<String>| {
        view! {
            <details class="sdp">
                <summary>
                    {title}
                    <span class="muted">
                        {move || {
                            let n = sdp.with(|s| s.lines().count());
                            if n == 0 { " (none yet)".to_string() } else { format!(" ({n} lines)") }
                        }}
                    </span>
                </summary>
                <pre data-testid=testid tabindex="0">{move || sdp.get()}</pre>
            </details>
        }
    };
    view! {
        <section class="card" aria-labelledby="sdp-title">
            <h2 id="sdp-title">"Session descriptions"</h2>
            {block("Local description (offer)", "local-sdp", local)}
            {block("Remote description (answer)", "remote-sdp", remote)}
        </section>
    }
}

/// The browser's video codecs for this direction.
#[component]
pub fn CodecList(codecs: RwSignal<Vec<String>>, #[prop(into)] title: String) -> impl IntoView {
    view! {
        <section class="card" aria-labelledby="codecs-title">
            <h2 id="codecs-title">{title}</h2>
            <ul class="chips" data-testid="codecs">
                <Show when=move || codecs.with(Vec::is_empty)>
                    <li class="muted">"Detected when the page has loaded."</li>
                </Show>
                <For each=move || codecs.get() key=|c| c.clone() let(codec)>
                    <li class="chip">{codec}</li>
                </For>
            </ul>
        </section>
    }
}

/// `mm:ss`, or `h:mm:ss` from an hour on.
pub fn format_duration(ms: u64) -> String {
    let s = ms / 1000;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
    } else {
        format!("{:02}:{:02}", s / 60, s % 60)
    }
}

/// Bytes in B, KB, MB or GB (powers of 1024, one decimal).
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KB", "MB", "GB", "TB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// An RFC 3339 UTC time as `YYYY-MM-DD HH:MM` (the same on the server and in the browser).
pub fn format_created(created: &str) -> String {
    match (created.get(..10), created.get(11..16)) {
        (Some(date), Some(time)) => format!("{date} {time} UTC"),
        _ => created.to_string(),
    }
}

/// "H264", "VP8"...; "—" when there is no video.
pub fn format_codec(codec: Option<crate::protocol::VideoCodec>) -> String {
    codec.map_or_else(|| "—".to_string(), |c| c.label().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(format_duration(0), "00:00");
        assert_eq!(format_duration(65_400), "01:05");
        assert_eq!(format_duration(3_725_000), "1:02:05");
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(1536), "1.5 KB");
        assert_eq!(format_bytes(5 * 1024 * 1024), "5.0 MB");
        assert_eq!(
            format_created("2024-05-01T12:34:56Z"),
            "2024-05-01 12:34 UTC"
        );
        assert_eq!(format_created("bad"), "bad");
        assert_eq!(format_codec(Some(crate::protocol::VideoCodec::Vp8)), "VP8");
        assert_eq!(
            format_codec(Some(crate::protocol::VideoCodec::H264)),
            "H264"
        );
        assert_eq!(format_codec(None), "—");
    }
}
