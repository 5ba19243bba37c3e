//! Server functions the pages call. They run on the server over the same recording store as
//! the JSON API; the server provides it as an `Arc<dyn Library>` context.
use crate::protocol::RecordingMeta;
use leptos::prelude::*;

/// A store call: the server runs the disk work off its async workers.
#[cfg(feature = "ssr")]
pub type LibraryFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

/// What the server functions need from the recording store (provided by the server).
#[cfg(feature = "ssr")]
pub trait Library: Send + Sync + 'static {
    /// Every recording, oldest first.
    fn list(&self) -> Vec<RecordingMeta>;
    /// Renames a recording; the error text is shown to the user.
    fn rename(&self, id: String, name: String) -> LibraryFuture<Result<RecordingMeta, String>>;
    /// Deletes a recording; the error text is shown to the user.
    fn delete(&self, id: String) -> LibraryFuture<Result<(), String>>;
}

#[cfg(feature = "ssr")]
fn library() -> Result<std::sync::Arc<dyn Library>, ServerFnError> {
    use_context::<std::sync::Arc<dyn Library>>()
        .ok_or_else(|| ServerFnError::new("the recording store is not available"))
}

/// Lists every recording, oldest first.
#[server]
pub async fn list_recordings() -> Result<Vec<RecordingMeta>, ServerFnError> {
    Ok(library()?.list())
}

/// Renames a recording.
#[server]
pub async fn rename_recording(id: String, name: String) -> Result<RecordingMeta, ServerFnError> {
    library()?
        .rename(id, name)
        .await
        .map_err(ServerFnError::new)
}

/// Deletes a recording.
#[server]
pub async fn delete_recording(id: String) -> Result<(), ServerFnError> {
    library()?.delete(id).await.map_err(ServerFnError::new)
}
