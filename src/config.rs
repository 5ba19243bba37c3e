//! Command line and environment configuration.
//!
//! Every flag has an environment variable (`PION_*`). The Go demo's single-dash spelling
//! (`-port=8080 -vcodec=vp8`, also `-port 8080`) is accepted as well as `--port 8080`.
use clap::{CommandFactory, Parser, ValueEnum, error::ContextKind, error::ContextValue};
use std::net::IpAddr;
use std::path::PathBuf;

/// The video codec the server asks recorders for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum VideoCodec {
    H264,
    Vp8,
}

impl VideoCodec {
    pub fn codec(self) -> media::Codec {
        match self {
            VideoCodec::H264 => media::Codec::H264,
            VideoCodec::Vp8 => media::Codec::Vp8,
        }
    }
}

/// pion-the-sky: record browser camera and microphone over WebRTC, play every recording back.
#[derive(Clone, Debug, Parser)]
#[command(name = "pion-the-sky", version, about, long_about = None)]
pub struct Config {
    /// HTTP and websocket port.
    #[arg(long, env = "PION_PORT", default_value_t = 8082, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,

    /// Video codec requested from recording browsers.
    #[arg(long, env = "PION_VCODEC", value_enum, default_value_t = VideoCodec::H264)]
    pub vcodec: VideoCodec,

    /// Address the HTTP server listens on.
    #[arg(long, env = "PION_BIND", default_value = "0.0.0.0")]
    pub bind: IpAddr,

    /// Directory where recordings are stored (created if missing).
    #[arg(long, env = "PION_DATA_DIR", default_value = "recordings")]
    pub data_dir: PathBuf,

    /// Directory holding the built site (wasm, css, assets). Defaults to LEPTOS_SITE_ROOT,
    /// then `site/` next to the executable's directory (target/site for target/release/…),
    /// then `target/site`.
    #[arg(long, env = "PION_SITE_ROOT")]
    pub site_root: Option<PathBuf>,

    /// Longest recording in seconds; the recording is finalized when it is reached.
    #[arg(long, env = "PION_MAX_RECORD_SECONDS", default_value_t = 3600)]
    pub max_record_seconds: u64,

    /// Most concurrent recording + playback sessions; further ones get an ERROR.
    #[arg(long, env = "PION_MAX_SESSIONS", default_value_t = 500)]
    pub max_sessions: usize,

    /// Async worker threads for HTTP, websockets and the API (0 = one per CPU); sessions run
    /// on the media threads (`--media-threads`).
    #[arg(long, env = "PION_WORKERS", default_value_t = 0)]
    pub workers: usize,

    /// Media threads: every session (its peer's sockets, driver and recorder) runs on one of
    /// them, chosen by load, so a packet is read, decrypted and recorded on one thread without
    /// waking another. Default: one per CPU; 0 runs sessions on the async workers instead.
    #[arg(long, env = "PION_MEDIA_THREADS")]
    pub media_threads: Option<usize>,

    /// Seconds between picture loss indications sent to recorders (keyframe requests).
    #[arg(long, env = "PION_PLI_INTERVAL", default_value_t = 3)]
    pub pli_interval: u64,

    /// Seconds a peer may stay disconnected before its session ends.
    #[arg(long, env = "PION_DISCONNECT_TIMEOUT", default_value_t = 5)]
    pub disconnect_timeout: u64,

    /// Extra origins allowed to open the websocket (the page's own origin always is).
    /// Repeat or separate with commas; `*` allows any.
    #[arg(long, env = "PION_ALLOW_ORIGIN", value_delimiter = ',')]
    pub allow_origin: Vec<String>,

    /// Public IP to advertise in ICE candidates (NAT 1:1), e.g. a cloud VM's address.
    #[arg(long, env = "PION_PUBLIC_IP", value_delimiter = ',')]
    pub public_ip: Vec<IpAddr>,

    /// Local IPs to gather ICE candidates on (default: every interface, loopback included).
    #[arg(long, env = "PION_ICE_IP", value_delimiter = ',')]
    pub ice_ip: Vec<IpAddr>,

    /// The one UDP port every peer's WebRTC media uses, on each ICE address (0 = an
    /// ephemeral port per peer). STUN/TURN servers are then not used by the server itself.
    #[arg(long, env = "PION_UDP_PORT", default_value_t = 0)]
    pub udp_port: u16,

    /// What drives the server's WebRTC peers: `own` (a loop of ours per peer over the
    /// library's sans-IO core, host candidates only) or `library` (webrtc-rs's driver task).
    /// With --ice-server and no --udp-port, peers use `library` (it gathers STUN/TURN
    /// candidates).
    #[arg(long, env = "PION_PEER_LOOP", value_enum, default_value_t = crate::rtc::PeerLoop::Own)]
    pub peer_loop: crate::rtc::PeerLoop,

    /// Forward every new recording as plain RTP to HOST:PORT (video on PORT, audio on PORT+2);
    /// repeat or separate with commas. The address must pass `--forward-allow`.
    #[arg(long, env = "PION_FORWARD_RTP", value_delimiter = ',')]
    pub forward_rtp: Vec<std::net::SocketAddr>,

    /// Networks RTP may be forwarded to (`10.0.0.0/8`, `192.0.2.7`); loopback always may.
    /// Repeat or separate with commas.
    #[arg(long, env = "PION_FORWARD_ALLOW", value_delimiter = ',', value_parser = parse_net)]
    pub forward_allow: Vec<ipnet::IpNet>,

    /// The address RTP ingests listen on (`POST /api/ingest`); loopback unless set.
    #[arg(long, env = "PION_INGEST_BIND", default_value = "127.0.0.1")]
    pub ingest_bind: std::net::IpAddr,

    /// STUN/TURN server URLs (none by default: nothing leaves the host unless asked).
    #[arg(long, env = "PION_ICE_SERVER", value_delimiter = ',')]
    pub ice_server: Vec<String>,

    /// Seconds a new peer may take to connect (ICE + DTLS) before its session is released.
    #[arg(long, env = "PION_CONNECT_TIMEOUT", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub connect_timeout: u64,

    /// Seconds a connected recorder may send no media before its session ends (a recording
    /// with no media is removed).
    #[arg(long, env = "PION_MEDIA_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub media_timeout: u64,

    /// Seconds a websocket may stay silent (no message, no pong to our pings) before it is
    /// closed. The server pings every third of this.
    #[arg(long, env = "PION_WS_IDLE_TIMEOUT", default_value_t = 60, value_parser = clap::value_parser!(u64).range(3..=86400))]
    pub ws_idle_timeout: u64,

    /// Most concurrent websockets from one client IP address (0 = no limit).
    #[arg(long, env = "PION_MAX_SOCKETS_PER_IP", default_value_t = 32)]
    pub max_sockets_per_ip: usize,

    /// Most concurrent recording + playback sessions from one client IP address (0 = no
    /// limit), within --max-sessions.
    #[arg(long, env = "PION_MAX_SESSIONS_PER_IP", default_value_t = 16)]
    pub max_sessions_per_ip: usize,

    /// The access token. HTTP clients send `Authorization: Bearer <token>`; a browser opens
    /// `/?token=<token>` once and keeps a cookie; scripts may add `?token=` to `/ws`. With a
    /// token every write needs it (and with --private every read). Bound beyond loopback
    /// without one, the server makes one at start and prints the URL with it.
    #[arg(long, env = "PION_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Reads (pages, the list, downloads, PLAY, /api/sessions, /metrics) need the token too.
    #[arg(long, env = "PION_PRIVATE")]
    pub private: bool,

    /// Without a token set by the operator, clients on loopback may do everything.
    #[arg(long, env = "PION_TRUST_LOOPBACK", default_value_t = true, action = clap::ArgAction::Set)]
    pub trust_loopback: bool,

    /// No token rules at all (on purpose: a warning is logged). Host and Origin checks stay.
    #[arg(long, env = "PION_OPEN")]
    pub open: bool,

    /// Host names the server answers to besides localhost names and IP addresses (against
    /// DNS rebinding): `pion.example.com`, `*.example.com`, or `*` for any. Repeat or
    /// separate with commas.
    #[arg(long, env = "PION_ALLOWED_HOST", value_delimiter = ',')]
    pub allowed_host: Vec<String>,

    /// Seconds a shutdown (SIGTERM, Ctrl-C) waits for sessions to finalize their recordings.
    #[arg(long, env = "PION_SHUTDOWN_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub shutdown_timeout: u64,
}

/// A command line error as one line, naming the flag and what it accepts.
#[derive(Debug)]
pub struct ConfigError {
    pub message: String,
    pub exit_code: i32,
}

impl Config {
    /// Parses the process arguments (and environment).
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::parse_from_args(std::env::args_os().map(|a| a.to_string_lossy().into_owned()))
    }

    /// Parses the given arguments (the first one is the program name).
    pub fn parse_from_args(args: impl IntoIterator<Item = String>) -> Result<Config, ConfigError> {
        let args = go_style_args(args);
        Config::try_parse_from(args).map_err(one_line_error)
    }
}

/// Rewrites Go-style `-name=value` / `-name value` into `--name=value` / `--name value` for
/// every long flag the command knows.
fn go_style_args(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let cmd = Config::command();
    let longs: Vec<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_long().map(str::to_owned))
        .chain(["help".to_owned(), "version".to_owned()])
        .collect();
    args.into_iter()
        .map(|arg| {
            let is_single_dash = arg.starts_with('-') && !arg.starts_with("--") && arg.len() > 2;
            if is_single_dash {
                let name = arg[1..].split('=').next().unwrap_or_default();
                if longs.iter().any(|l| l == name) {
                    return format!("-{arg}");
                }
            }
            arg
        })
        .collect()
}

fn one_line_error(err: clap::Error) -> ConfigError {
    use clap::error::ErrorKind;
    let exit_code = err.exit_code();
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        return ConfigError {
            message: err.to_string(),
            exit_code,
        };
    }
    let ctx = |kind| match err.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        Some(ContextValue::Strings(v)) => Some(v.join(", ")),
        _ => None,
    };
    let flag = ctx(ContextKind::InvalidArg)
        .map(|a| a.split_whitespace().next().unwrap_or_default().to_owned());
    let value = ctx(ContextKind::InvalidValue);
    let accepted = ctx(ContextKind::ValidValue);
    let message = match (err.kind(), flag, value) {
        (ErrorKind::InvalidValue | ErrorKind::ValueValidation, Some(flag), Some(value)) => {
            let accepted = accepted.unwrap_or_else(|| accepted_for(&flag));
            format!("error: invalid value '{value}' for {flag} (accepted: {accepted})")
        }
        _ => {
            // Other errors: clap's first line, without the usage block.
            let text = err.render().to_string();
            let first = text
                .lines()
                .next()
                .unwrap_or("invalid arguments")
                .to_owned();
            format!("{first} (see --help)")
        }
    };
    ConfigError { message, exit_code }
}

fn accepted_for(flag: &str) -> String {
    match flag.trim_start_matches('-') {
        "port" | "udp-port" => "a port number from 1 to 65535".into(),
        "connect-timeout" | "media-timeout" => "a number of seconds from 1 to 3600".into(),
        "ws-idle-timeout" => "a number of seconds from 3 to 86400".into(),
        "shutdown-timeout" => "a number of seconds from 0 to 3600".into(),
        "bind" | "public-ip" | "ice-ip" => "an IP address such as 0.0.0.0 or 127.0.0.1".into(),
        _ => "see --help".into(),
    }
}

/// A network (`10.0.0.0/8`) or one address (`192.0.2.7`).
fn parse_net(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{s:?} is neither an address nor a network like 10.0.0.0/8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        Config::parse_from_args(
            std::iter::once("pion-the-sky")
                .chain(args.iter().copied())
                .map(str::to_owned),
        )
    }

    #[test]
    fn accepts_go_and_gnu_spellings() {
        let cases: &[(&[&str], u16, VideoCodec)] = &[
            (&[], 8082, VideoCodec::H264),
            (&["-port=8080", "-vcodec=vp8"], 8080, VideoCodec::Vp8),
            (&["-port", "8081"], 8081, VideoCodec::H264),
            (
                &["--port", "9000", "--vcodec", "h264"],
                9000,
                VideoCodec::H264,
            ),
            (&["--port=9001", "--vcodec=vp8"], 9001, VideoCodec::Vp8),
        ];
        for (args, port, vcodec) in cases {
            let cfg = parse(args).unwrap_or_else(|e| panic!("{args:?}: {}", e.message));
            assert_eq!((cfg.port, cfg.vcodec), (*port, *vcodec), "{args:?}");
        }
    }

    #[test]
    fn bad_values_give_one_line_naming_flag_and_accepted_values() {
        let cases: &[(&[&str], &[&str])] = &[
            (&["-vcodec=mpeg2"], &["--vcodec", "mpeg2", "h264", "vp8"]),
            (&["-port=abc"], &["--port", "abc", "1 to 65535"]),
            (&["-port=0"], &["--port", "0"]),
            (&["--bind=nowhere"], &["--bind", "nowhere", "IP address"]),
            (&["--frobnicate"], &["frobnicate"]),
        ];
        for (args, needles) in cases {
            let err = parse(args).expect_err("must fail");
            assert_eq!(err.message.lines().count(), 1, "{}", err.message);
            assert_ne!(err.exit_code, 0);
            for n in *needles {
                assert!(err.message.contains(n), "{:?} lacks {n:?}", err.message);
            }
        }
    }
}
