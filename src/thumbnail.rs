//! Recording posters: the first video keyframe of a recording, decoded (`codec`) and saved as
//! a JPEG next to it (`RecordingStore::save_thumbnail`). Made off the request path: when a
//! recording finishes, for older recordings by a background pass at start, and on the first
//! request of one that still has none. Everything here blocks (file reads, decoding): call it
//! on a blocking thread.
use app::protocol::RecordingState;
use media::MediaKind;
use media::container::Demuxer;

use crate::store::{RecordingStore, container_kind};

/// Posters are at most this wide (the list shows them small; 2x for dense screens).
pub const POSTER_WIDTH: u32 = 320;
/// Frames read looking for a keyframe that decodes (about the first seconds).
const MAX_FRAMES_SCANNED: usize = 600;

/// Why a recording has no poster; the text is for the API client.
#[derive(Debug, thiserror::Error)]
pub enum PosterError {
    #[error("recording {0} is still being recorded: its poster comes when it ends")]
    NotFinished(String),
    #[error("recording {0} has no video")]
    NoVideo(String),
    #[error("no picture of recording {0} could be decoded from its first seconds")]
    NoPicture(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Other(String),
}

/// The recording's poster: the saved one, or one made (and saved) now.
pub fn get_or_make(store: &dyn RecordingStore, id: &str) -> Result<Vec<u8>, PosterError> {
    if let Some(jpeg) = store.thumbnail(id)? {
        return Ok(jpeg);
    }
    let jpeg = make(store, id)?;
    if let Err(e) = store.save_thumbnail(id, &jpeg) {
        tracing::warn!(%id, error = %e, "poster made but not saved");
    }
    Ok(jpeg)
}

/// Decodes the first video keyframe of a finished recording into a JPEG.
pub fn make(store: &dyn RecordingStore, id: &str) -> Result<Vec<u8>, PosterError> {
    let meta = store.get(id)?;
    if meta.state == RecordingState::Recording {
        return Err(PosterError::NotFinished(meta.id));
    }
    let Some(video) = meta.video_codec else {
        return Err(PosterError::NoVideo(meta.id));
    };
    let (_, source) = store.open(id)?;
    let mut demux = Demuxer::open(container_kind(meta.container), source)
        .map_err(|e| PosterError::Other(format!("recording {id} cannot be read: {e}")))?;
    let codec = crate::store::codec_of(video);
    let mut decoder = codec::Decoder::new(codec).map_err(|e| PosterError::Other(e.to_string()))?;
    for _ in 0..MAX_FRAMES_SCANNED {
        let frame = match demux.next_frame() {
            Ok(Some(f)) => f,
            Ok(None) | Err(_) => break,
        };
        if frame.codec.kind() != MediaKind::Video || !frame.keyframe {
            continue;
        }
        // A keyframe carries what it needs (H264: SPS and PPS before the IDR).
        if let Ok(Some(picture)) = decoder.decode(&frame.data) {
            return codec::poster(&picture, POSTER_WIDTH)
                .map_err(|e| PosterError::Other(e.to_string()));
        }
    }
    Err(PosterError::NoPicture(meta.id))
}

/// Makes the posters that are missing, one recording after another (at start, for
/// recordings made before posters existed or whose poster was deleted).
pub fn backfill(store: &dyn RecordingStore, stop: &tokio_util::sync::CancellationToken) -> usize {
    let mut made = 0;
    for meta in store.list() {
        // A shutdown waits for this task: it stops between posters.
        if stop.is_cancelled() {
            break;
        }
        if !meta.playable() || meta.video_codec.is_none() {
            continue;
        }
        if matches!(store.thumbnail(&meta.id), Ok(Some(_))) {
            continue;
        }
        match get_or_make(store, &meta.id) {
            Ok(_) => made += 1,
            Err(e) => tracing::debug!(id = %meta.id, error = %e, "no poster"),
        }
    }
    made
}
