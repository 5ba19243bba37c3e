//! The filesystem store: `<data-dir>/<id>.<webm|mp4>` with `<data-dir>/<id>.json` beside it.
//!
//! Metadata is written atomically (temporary file, fsync, rename). An in-memory index, loaded
//! at startup, answers listings. Recordings found in state `recording` at startup were cut
//! short by a crash: they are repaired with [`media::container::recover`] and marked
//! `recovered`.
use super::{
    MediaSink, MediaSource, NewRecording, RecordingStore, StoreError, validate_id, validate_name,
};
use app::protocol::{RecordingMeta, RecordingState};
use media::Codec;
use media::container::ContainerKind;
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub struct FsStore {
    dir: PathBuf,
    /// Held for the store's life: one server per data directory.
    _lock: File,
    index: RwLock<BTreeMap<String, RecordingMeta>>,
    /// Held by every write (see [`FsStore::writing`]).
    writes: std::sync::Mutex<()>,
    counter: AtomicU64,
}

impl FsStore {
    /// Opens (creating if needed) the store in `dir`, loading and repairing what is there.
    pub fn open(dir: impl Into<PathBuf>) -> Result<FsStore, StoreError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| {
            tracing::error!(dir = %dir.display(), error = %e, "cannot create the data directory");
            StoreError::io("creating the data directory", e)
        })?;
        let lock = lock_dir(&dir)?;
        let store = FsStore {
            dir,
            _lock: lock,
            index: RwLock::new(BTreeMap::new()),
            writes: std::sync::Mutex::new(()),
            counter: AtomicU64::new(0),
        };
        store.load()?;
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn meta_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    fn thumbnail_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.jpg"))
    }

    fn media_file(&self, meta: &RecordingMeta) -> PathBuf {
        self.dir.join(format!("{}.{}", meta.id, meta.container))
    }

    fn load(&self) -> Result<(), StoreError> {
        let entries = fs::read_dir(&self.dir).map_err(|e| {
            tracing::error!(dir = %self.dir.display(), error = %e, "cannot list the data directory");
            StoreError::io("listing the data directory", e)
        })?;
        let mut index = BTreeMap::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(id) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
            else {
                continue;
            };
            if validate_id(id).is_err() {
                continue;
            }
            let meta = match fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<RecordingMeta>(&b).ok())
            {
                Some(meta) if meta.id == id => meta,
                _ => {
                    tracing::warn!(path = %path.display(), "skipping unreadable recording metadata");
                    continue;
                }
            };
            let meta = match meta.state {
                RecordingState::Recording => self.repair_file(
                    meta,
                    "recovered after the server stopped mid-recording".into(),
                ),
                // A write error or a failed repair (disk full at the time) may have left good
                // media behind: try again now that the disk may have room.
                RecordingState::Failed
                    if self.has_media(&meta)
                        && !meta
                            .note
                            .as_deref()
                            .is_some_and(|n| n.contains(UNRECOVERABLE)) =>
                {
                    let note = meta.note.clone().unwrap_or_default();
                    self.repair_file(meta, note)
                }
                _ => meta,
            };
            index.insert(meta.id.clone(), meta);
        }
        tracing::info!(dir = %self.dir.display(), recordings = index.len(), "recording store loaded");
        *self.index.write().unwrap_or_else(|p| p.into_inner()) = index;
        Ok(())
    }

    /// Whether a recording's media file exists and holds anything.
    fn has_media(&self, meta: &RecordingMeta) -> bool {
        fs::metadata(self.media_file(meta)).is_ok_and(|m| m.len() > 0)
    }

    /// Repairs a recording a crash or a write error left unfinished.
    fn repair_file(&self, mut meta: RecordingMeta, note: String) -> RecordingMeta {
        let path = self.media_file(&meta);
        let kind = super::container_kind(meta.container);
        let result = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| e.to_string())
            .and_then(|mut file| {
                let summary =
                    media::container::recover(kind, &mut file).map_err(|e| e.to_string())?;
                file.sync_all().map_err(|e| e.to_string())?;
                Ok(summary)
            });
        match result {
            Ok(summary) => {
                apply_summary(&mut meta, &summary);
                meta.state = RecordingState::Recovered;
                meta.note = Some(note);
                tracing::info!(id = %meta.id, duration_ms = meta.duration_ms, "recovered recording");
            }
            Err(reason) => {
                meta.state = RecordingState::Failed;
                meta.note = Some(format!("{note}; {UNRECOVERABLE}: {reason}"));
                tracing::warn!(id = %meta.id, %reason, "recording could not be recovered");
            }
        }
        if let Err(e) = self.write_meta(&meta) {
            tracing::warn!(id = %meta.id, error = %e, "could not persist repaired metadata");
        }
        meta
    }

    fn new_id(&self) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        // Mix time, a per-process counter and the hasher's random keys.
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(now.as_nanos());
        h.write_u64(n);
        format!("{:013}-{:06x}", now.as_millis(), h.finish() & 0xff_ffff)
    }

    /// Writes metadata atomically: temp file, fsync, rename.
    fn write_meta(&self, meta: &RecordingMeta) -> Result<(), StoreError> {
        let body = serde_json::to_vec_pretty(meta).unwrap_or_default();
        self.write_atomic(&format!("{}.json", meta.id), &body)
            .map_err(|e| StoreError::io(format!("saving metadata of {}", meta.id), e))
    }

    /// Writes `name` in the data directory all at once: a hidden temp file, synced, renamed
    /// over the old one, the directory synced (a crash leaves the old file or the new one).
    fn write_atomic(&self, name: &str, body: &[u8]) -> std::io::Result<()> {
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(body)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            if let Ok(d) = File::open(&self.dir) {
                let _ = d.sync_all();
            }
            Ok(())
        };
        write().inspect_err(|_| {
            let _ = fs::remove_file(&tmp);
        })
    }

    /// Serializes the store's writers (metadata files and the index entries they back). The
    /// index lock itself is only held to read or insert, never across file I/O, so listings
    /// on async workers never wait for an fsync.
    fn writing(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn insert(&self, meta: RecordingMeta) {
        self.index
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(meta.id.clone(), meta);
    }

    fn lookup(&self, id: &str) -> Result<RecordingMeta, StoreError> {
        validate_id(id)?;
        self.index
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(|| StoreError::NotFound(id.to_owned()))
    }
}

/// Marks a note of a recording whose repair failed (it is not tried again at every start).
const UNRECOVERABLE: &str = "could not be recovered";

/// The name of the lock file inside the data directory.
pub const LOCK_FILE: &str = ".lock";

/// Takes the data directory's lock: two servers writing one directory would repair each
/// other's recordings in progress and lose index updates.
fn lock_dir(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::io("creating the data directory's lock file", e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(StoreError::Locked(dir.display().to_string())),
        Err(fs::TryLockError::Error(e)) => Err(StoreError::io("locking the data directory", e)),
    }
}

/// Copies a muxer summary into the metadata.
pub fn apply_summary(meta: &mut RecordingMeta, s: &media::container::Summary) {
    meta.duration_ms = s.duration_ms;
    meta.video_frames = s.video_frames;
    meta.audio_frames = s.audio_frames;
    meta.width = s.width;
    meta.height = s.height;
    meta.bytes = s.bytes;
}

fn rfc3339(t: SystemTime) -> String {
    let t: time::OffsetDateTime = t.into();
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl RecordingStore for FsStore {
    fn create(
        &self,
        container: ContainerKind,
        video: Option<Codec>,
        audio: bool,
    ) -> Result<NewRecording, StoreError> {
        let now = SystemTime::now();
        let id = self.new_id();
        let created = rfc3339(now);
        let meta = RecordingMeta {
            name: format!(
                "Recording {}",
                created.get(..19).unwrap_or(&created).replace('T', " ")
            ),
            id,
            created,
            duration_ms: 0,
            video_codec: video.and_then(super::video_codec_of),
            width: 0,
            height: 0,
            video_frames: 0,
            audio,
            audio_frames: 0,
            bytes: 0,
            state: RecordingState::Recording,
            container: super::container_of(container),
            note: None,
        };
        // Metadata first: if we crash after this, startup finds and repairs the media file.
        self.write_meta(&meta)?;
        let path = self.media_file(&meta);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| {
                let _ = fs::remove_file(self.meta_path(&meta.id));
                tracing::error!(path = %path.display(), error = %e, "cannot create a media file");
                StoreError::io(format!("creating the media file of {}", meta.id), e)
            })?;
        self.index
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(meta.id.clone(), meta.clone());
        let sink: Box<dyn MediaSink> = Box::new(file);
        Ok(NewRecording { meta, sink })
    }

    fn finish(&self, mut meta: RecordingMeta) -> Result<RecordingMeta, StoreError> {
        validate_id(&meta.id)?;
        let _writing = self.writing();
        // A rename may have happened while recording: keep the newest name.
        if let Ok(current) = self.lookup(&meta.id) {
            meta.name = current.name;
        }
        if let Err(e) = self.write_meta(&meta) {
            // The entry must not stay `recording` (which cannot be deleted) for the rest of
            // this run; on disk it still is, and the next start repairs it.
            let mut failed = meta;
            failed.state = RecordingState::Failed;
            failed.note = Some(format!("the recording could not be saved: {e}"));
            self.insert(failed);
            return Err(e);
        }
        self.insert(meta.clone());
        Ok(meta)
    }

    fn repair(&self, meta: RecordingMeta, note: String) -> RecordingMeta {
        let _writing = self.writing();
        let mut meta = meta;
        if let Ok(current) = self.lookup(&meta.id) {
            meta.name = current.name;
        }
        let meta = self.repair_file(meta, note);
        self.insert(meta.clone());
        meta
    }

    fn list(&self) -> Vec<RecordingMeta> {
        // Ids start with the creation time in ms, so key order is creation order.
        self.index
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    fn get(&self, id: &str) -> Result<RecordingMeta, StoreError> {
        self.lookup(id)
    }

    fn open(&self, id: &str) -> Result<(RecordingMeta, Box<dyn MediaSource>), StoreError> {
        let (meta, path) = self.media_path(id)?;
        let file = File::open(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StoreError::NotFound(id.to_owned()),
            _ => {
                tracing::warn!(path = %path.display(), error = %e, "cannot open a media file");
                StoreError::io(format!("opening the media file of {id}"), e)
            }
        })?;
        // Unbuffered: the demuxer keeps its own read-ahead window, which (unlike a `BufReader`)
        // survives its seeks.
        Ok((meta, Box::new(file)))
    }

    fn media_path(&self, id: &str) -> Result<(RecordingMeta, PathBuf), StoreError> {
        let meta = self.lookup(id)?;
        let path = self.media_file(&meta);
        Ok((meta, path))
    }

    fn rename(&self, id: &str, name: &str) -> Result<RecordingMeta, StoreError> {
        validate_id(id)?;
        let name = validate_name(name)?;
        let _writing = self.writing();
        let mut updated = self.lookup(id)?;
        updated.name = name;
        self.write_meta(&updated)?;
        self.insert(updated.clone());
        Ok(updated)
    }

    fn delete(&self, id: &str) -> Result<(), StoreError> {
        validate_id(id)?;
        let _writing = self.writing();
        let meta = self.lookup(id)?;
        if meta.state == RecordingState::Recording {
            return Err(StoreError::Busy(id.to_owned()));
        }
        let media = self.media_file(&meta);
        // Metadata goes first: a crash in between leaves an orphan media file, never a
        // listed recording without media.
        match fs::remove_file(self.meta_path(id)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io(format!("deleting {id}"), e)),
        }
        self.index
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        if let Err(e) = fs::remove_file(&media)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(id, error = %e, "metadata deleted but media file could not be removed");
        }
        let _ = fs::remove_file(self.thumbnail_path(id));
        Ok(())
    }

    fn thumbnail(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        validate_id(id)?;
        self.lookup(id)?;
        match fs::read(self.thumbnail_path(id)) {
            Ok(bytes) if !bytes.is_empty() => Ok(Some(bytes)),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io(format!("reading the poster of {id}"), e)),
        }
    }

    fn save_thumbnail(&self, id: &str, jpeg: &[u8]) -> Result<(), StoreError> {
        validate_id(id)?;
        self.lookup(id)?;
        self.write_atomic(&format!("{id}.jpg"), jpeg)
            .map_err(|e| StoreError::io(format!("saving the poster of {id}"), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, SeekFrom};
    use std::sync::Arc;

    fn finish_with(store: &FsStore, mut rec: NewRecording, duration_ms: u64) -> RecordingMeta {
        rec.sink.write_all(b"media bytes").unwrap();
        rec.sink.flush().unwrap();
        rec.meta.state = RecordingState::Complete;
        rec.meta.duration_ms = duration_ms;
        store.finish(rec.meta).unwrap()
    }

    #[test]
    fn create_finish_list_open_rename_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).unwrap();
        let a = store
            .create(ContainerKind::Webm, Some(Codec::Vp8), true)
            .unwrap();
        assert_eq!(
            store.get(&a.meta.id).unwrap().state,
            RecordingState::Recording
        );
        assert!(matches!(store.delete(&a.meta.id), Err(StoreError::Busy(_))));
        let a = finish_with(&store, a, 1000);
        let b = store
            .create(ContainerKind::Mp4, Some(Codec::H264), true)
            .unwrap();
        let b = finish_with(&store, b, 2000);
        let ids: Vec<_> = store.list().into_iter().map(|m| m.id).collect();
        assert_eq!(ids, vec![a.id.clone(), b.id.clone()], "oldest first");

        let (_, mut src) = store.open(&b.id).unwrap();
        let mut s = String::new();
        src.seek(SeekFrom::Start(6)).unwrap();
        src.read_to_string(&mut s).unwrap();
        assert_eq!(s, "bytes");

        assert_eq!(store.rename(&a.id, " Beach ").unwrap().name, "Beach");
        // A fresh store sees the same thing (metadata persisted).
        drop(src);
        drop(store);
        let store = FsStore::open(dir.path()).unwrap();
        assert_eq!(store.get(&a.id).unwrap().name, "Beach");
        assert_eq!(store.get(&b.id).unwrap().duration_ms, 2000);

        store.delete(&a.id).unwrap();
        assert!(matches!(store.get(&a.id), Err(StoreError::NotFound(_))));
        assert!(matches!(store.open(&a.id), Err(StoreError::NotFound(_))));
        assert!(!dir.path().join(format!("{}.webm", a.id)).exists());
        drop(store);
        assert_eq!(FsStore::open(dir.path()).unwrap().list().len(), 1);
    }

    #[test]
    fn bad_ids_and_names_never_touch_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).unwrap();
        for id in ["../x", "", "1764000000123-zzzzzz"] {
            assert!(
                matches!(store.get(id), Err(StoreError::InvalidId(_))),
                "{id}"
            );
            assert!(matches!(store.delete(id), Err(StoreError::InvalidId(_))));
            assert!(matches!(
                store.media_path(id),
                Err(StoreError::InvalidId(_))
            ));
        }
        assert!(matches!(
            store.get("1764000000123-abcdef"),
            Err(StoreError::NotFound(_))
        ));
        let a = store
            .create(ContainerKind::Webm, Some(Codec::Vp8), true)
            .unwrap();
        assert!(matches!(
            store.rename(&a.meta.id, "\n"),
            Err(StoreError::InvalidName(_))
        ));
    }

    #[test]
    fn ids_are_unique_and_time_sorted_under_concurrency() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(FsStore::open(dir.path()).unwrap());
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                std::thread::spawn(move || {
                    (0..25)
                        .map(|_| {
                            let r = store
                                .create(ContainerKind::Webm, Some(Codec::Vp8), true)
                                .unwrap();
                            finish_with(&store, r, 10).id
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<String> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 200);
        assert_eq!(store.list().len(), 200);
        drop(store);
        assert_eq!(FsStore::open(dir.path()).unwrap().list().len(), 200);
    }

    #[test]
    fn one_store_per_directory() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).unwrap();
        let second = FsStore::open(dir.path());
        assert!(
            matches!(second, Err(StoreError::Locked(_))),
            "{:?}",
            second.err()
        );
        drop(store);
        FsStore::open(dir.path()).expect("the lock goes with the store");
    }

    #[test]
    fn a_failed_recording_with_media_is_repaired_at_the_next_start() {
        let ivf = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/vp8_640x480_30fps_4s.ivf"
        ))
        .unwrap();
        let frames = media::elementary::ivf_vp8(&ivf).unwrap();
        // (what the writer left, state after the next start)
        let cases: [(&str, RecordingState); 2] = [
            ("garbage", RecordingState::Failed),
            (
                "two seconds of VP8, never finished",
                RecordingState::Recovered,
            ),
        ];
        for (what, want) in cases {
            let dir = tempfile::tempdir().unwrap();
            let id = {
                let store = FsStore::open(dir.path()).unwrap();
                let mut rec = store
                    .create(ContainerKind::Webm, Some(Codec::Vp8), false)
                    .unwrap();
                if what == "garbage" {
                    rec.sink.write_all(b"not webm").unwrap();
                } else {
                    let config = media::container::RecorderConfig {
                        video: Some(Codec::Vp8),
                        audio: false,
                        max_fragment_ms: 1000,
                    };
                    let mut r =
                        media::container::Recorder::new(ContainerKind::Webm, rec.sink, config)
                            .unwrap();
                    for f in frames.iter().take(60) {
                        r.push(f.clone()).unwrap();
                    }
                    // The disk failed here: the writer is dropped unfinished.
                    drop(r.into_inner());
                }
                rec.meta.state = RecordingState::Failed;
                rec.meta.note = Some("disk full".into());
                store.finish(rec.meta).unwrap().id
            };
            let store = FsStore::open(dir.path()).unwrap();
            let meta = store.get(&id).unwrap();
            assert_eq!(meta.state, want, "{what}: {meta:?}");
            // Either way it can be deleted.
            store.delete(&id).unwrap();
        }
    }

    #[test]
    fn a_finish_that_cannot_save_leaves_a_deletable_entry() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).unwrap();
        let mut rec = store
            .create(ContainerKind::Webm, Some(Codec::Vp8), true)
            .unwrap();
        // The disk is gone under the server.
        std::fs::remove_dir_all(dir.path()).unwrap();
        rec.meta.state = RecordingState::Complete;
        assert!(store.finish(rec.meta.clone()).is_err());
        let meta = store.get(&rec.meta.id).unwrap();
        assert_eq!(meta.state, RecordingState::Failed, "{meta:?}");
        store.delete(&meta.id).expect("not stuck in `recording`");
    }

    #[test]
    fn unreadable_metadata_is_skipped_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("1764000000123-abcdef.json"), b"{not json").unwrap();
        fs::write(dir.path().join("notes.txt"), b"hello").unwrap();
        let store = FsStore::open(dir.path()).unwrap();
        assert!(store.list().is_empty());
    }
}
