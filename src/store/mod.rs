//! Where recordings live. [`RecordingStore`] is the seam; [`fs::FsStore`] (a directory of
//! media files with a JSON metadata file beside each) is the embedded default.
pub mod fs;
pub mod writer;

use app::protocol::{Container, RecordingMeta, VideoCodec};
use media::Codec;
use media::container::ContainerKind;
use std::io::{Read, Seek, Write};
use std::path::PathBuf;

/// Bytes of a recording being written.
pub trait MediaSink: Write + Seek + Send {
    /// Makes everything written so far durable.
    fn sync(&mut self) -> std::io::Result<()>;
}

/// Bytes of a stored recording being read.
pub trait MediaSource: Read + Seek + Send {}
impl<T: Read + Seek + Send> MediaSource for T {}

impl MediaSink for std::fs::File {
    fn sync(&mut self) -> std::io::Result<()> {
        self.sync_data()
    }
}

/// A recording that is being written: its metadata (state `recording`) and its sink.
pub struct NewRecording {
    pub meta: RecordingMeta,
    pub sink: Box<dyn MediaSink>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("'{0}' is not a recording id")]
    InvalidId(String),
    #[error("invalid name: {0}")]
    InvalidName(String),
    #[error("recording {0} not found")]
    NotFound(String),
    #[error("recording {0} is still being recorded")]
    Busy(String),
    #[error("storage error while {action}: {source}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
    #[error("recording {id} is damaged: {reason}")]
    Corrupt { id: String, reason: String },
    /// Another server holds the data directory.
    #[error(
        "another pion-the-sky is already using the data directory {0} (its lock file .lock is held); stop it or pass another --data-dir"
    )]
    Locked(String),
}

impl StoreError {
    pub fn io(action: impl Into<String>, source: std::io::Error) -> Self {
        StoreError::Io {
            action: action.into(),
            source,
        }
    }
}

/// Recordings: created by recorders, read by players and the API. Implementations must be safe
/// under concurrent recorders, players, renames and deletes.
pub trait RecordingStore: Send + Sync + 'static {
    /// Starts a recording: reserves a time-sortable id, persists metadata in state `recording`
    /// (so a crash leaves a trace that startup recovery repairs), and opens the media sink.
    fn create(
        &self,
        container: ContainerKind,
        video: Option<Codec>,
        audio: bool,
    ) -> Result<NewRecording, StoreError>;

    /// Persists the final metadata of a recording (state, duration, counts...).
    fn finish(&self, meta: RecordingMeta) -> Result<RecordingMeta, StoreError>;

    /// Repairs a recording whose writing failed (disk full, I/O error) or was cut short:
    /// cuts the media back to its last complete cluster/fragment, finalizes it, and persists
    /// the metadata as `recovered` (or `failed` when nothing can be saved), with `note`.
    fn repair(&self, meta: RecordingMeta, note: String) -> RecordingMeta;

    /// Every recording, oldest first.
    fn list(&self) -> Vec<RecordingMeta>;

    fn get(&self, id: &str) -> Result<RecordingMeta, StoreError>;

    /// Opens a recording's media for reading.
    fn open(&self, id: &str) -> Result<(RecordingMeta, Box<dyn MediaSource>), StoreError>;

    /// The media file on disk, for HTTP serving with ranges.
    fn media_path(&self, id: &str) -> Result<(RecordingMeta, PathBuf), StoreError>;

    fn rename(&self, id: &str, name: &str) -> Result<RecordingMeta, StoreError>;

    /// Deletes a finished recording (and its poster). Players that already opened it keep
    /// reading their copy; later opens fail with `NotFound`.
    fn delete(&self, id: &str) -> Result<(), StoreError>;

    /// The recording's poster (a JPEG), if one was saved.
    fn thumbnail(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Saves the recording's poster (replacing any, atomically).
    fn save_thumbnail(&self, id: &str, jpeg: &[u8]) -> Result<(), StoreError>;
}

/// The wire and disk name of a container, from the media core's (one conversion each way).
pub fn container_of(kind: ContainerKind) -> Container {
    match kind {
        ContainerKind::Webm => Container::Webm,
        ContainerKind::Mp4 => Container::Mp4,
    }
}

/// The media core's container for a recording's format.
pub fn container_kind(container: Container) -> ContainerKind {
    match container {
        Container::Webm => ContainerKind::Webm,
        Container::Mp4 => ContainerKind::Mp4,
    }
}

/// A recording's video codec, from the media core's; `None` for audio codecs.
pub fn video_codec_of(codec: Codec) -> Option<VideoCodec> {
    match codec {
        Codec::H264 => Some(VideoCodec::H264),
        Codec::Vp8 => Some(VideoCodec::Vp8),
        Codec::Opus => None,
    }
}

/// The media core's codec of a recording's video codec.
pub fn codec_of(video: VideoCodec) -> Codec {
    match video {
        VideoCodec::H264 => Codec::H264,
        VideoCodec::Vp8 => Codec::Vp8,
    }
}

/// Checks the id grammar (`<13 digits>-<6 hex>`): anything else never reaches the disk.
pub fn validate_id(id: &str) -> Result<(), StoreError> {
    let bytes = id.as_bytes();
    let ok = bytes.len() == 20
        && bytes[..13].iter().all(u8::is_ascii_digit)
        && bytes[13] == b'-'
        && bytes[14..]
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidId(id.chars().take(64).collect()))
    }
}

/// Checks and trims a user-given name.
pub fn validate_name(name: &str) -> Result<String, StoreError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(StoreError::InvalidName("the name is empty".into()));
    }
    if name.chars().count() > 120 {
        return Err(StoreError::InvalidName(
            "the name is longer than 120 characters".into(),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(StoreError::InvalidName(
            "the name contains control characters".into(),
        ));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_grammar() {
        let cases = [
            ("1764000000123-a1b2c3", true),
            ("1764000000123-A1B2C3", false),
            ("1764000000123-a1b2c", false),
            ("../../etc/passwd", false),
            ("1764000000123/a1b2c3", false),
            ("", false),
            ("1764000000123-a1b2c3.json", false),
        ];
        for (id, ok) in cases {
            assert_eq!(validate_id(id).is_ok(), ok, "{id}");
        }
    }

    #[test]
    fn name_rules() {
        assert_eq!(validate_name("  Holiday  ").unwrap(), "Holiday");
        for bad in ["", "   ", "a\nb", &"x".repeat(121)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }
}
