//! The home page: choose Record or Play, and manage the recordings.
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_meta::Title;

use super::common::{ErrorBanner, format_bytes, format_codec, format_created, format_duration};
use crate::protocol::{RecordingMeta, RecordingState};
use crate::server_fns::{delete_recording, list_recordings, rename_recording};

/// How often the list refreshes while the page is visible.
#[cfg(feature = "hydrate")]
const REFRESH_MS: u64 = 3000;

#[component]
pub fn HomePage() -> impl IntoView {
    // Loaded once for the server-rendered page; the section keeps it fresh in the browser.
    let initial = Resource::new(|| (), |_| list_recordings());

    view! {
        <Title text="pion-the-sky" />
        <section class="hero" aria-labelledby="hero-title">
            <h1 id="hero-title">"Record and play back video over WebRTC"</h1>
            <p class="lead">
                "Your camera goes to the server, which saves it; the server streams saved clips back to any browser."
            </p>
            <div class="choices">
                <a class="choice record" href="/record" data-testid="choose-record">
                    <span class="choice-icon" aria-hidden="true">"●"</span>
                    <span class="choice-title">"Record"</span>
                    <span class="choice-text">"Send your camera and microphone to the server"</span>
                </a>
                <a class="choice play" href="/play" data-testid="choose-play">
                    <span class="choice-icon" aria-hidden="true">"▶"</span>
                    <span class="choice-title">"Play"</span>
                    <span class="choice-text">"Stream the recordings back, one or all in a loop"</span>
                </a>
            </div>
        </section>
        <Suspense fallback=|| {
            view! {
                <section class="card recordings">
                    <h2>"Recordings"</h2>
                    <p class="muted">"Loading recordings…"</p>
                </section>
            }
        }>
            {move || Suspend::new(async move {
                let first = initial.await;
                view! { <RecordingsSection first /> }
            })}
        </Suspense>
    }
    .into_any()
}

/// The recordings list. Rendered once; refreshed in place (rows keep their state) every few
/// seconds while the page is visible, and after a rename or delete.
#[component]
fn RecordingsSection(first: Result<Vec<RecordingMeta>, ServerFnError>) -> impl IntoView {
    let (first_items, first_error) = match first {
        Ok(items) => (items, None),
        Err(e) => (Vec::new(), Some(server_error(&e))),
    };
    let items = RwSignal::new(first_items);
    let load_error = RwSignal::new(first_error);
    let error = RwSignal::new(None::<String>);
    let loading = RwSignal::new(false);
    let reload = move || {
        if loading.get_untracked() {
            return;
        }
        loading.set(true);
        spawn_local(async move {
            match list_recordings().await {
                Ok(list) => {
                    if items.try_with_untracked(|old| *old != list) == Some(true) {
                        items.try_set(list);
                    }
                    load_error.try_set(None);
                }
                Err(e) => {
                    load_error.try_set(Some(server_error(&e)));
                }
            }
            loading.try_set(false);
        });
    };

    #[cfg(feature = "hydrate")]
    {
        let handle = set_interval_with_handle(
            move || {
                if crate::client::page_visible() {
                    reload();
                }
            },
            std::time::Duration::from_millis(REFRESH_MS),
        )
        .ok();
        on_cleanup(move || {
            if let Some(handle) = handle {
                handle.clear();
            }
        });
    }

    // Newest first.
    let rows = move || items.with(|list| list.iter().rev().cloned().collect::<Vec<_>>());

    view! {
        <section class="card recordings" aria-labelledby="recordings-title">
            <div class="card-head">
                <h2 id="recordings-title">
                    "Recordings "
                    <span class="count muted" data-testid="recording-count">
                        {move || format!("({})", items.with(Vec::len))}
                    </span>
                </h2>
                <button
                    type="button"
                    class="btn small ghost"
                    data-testid="refresh"
                    disabled=move || loading.get()
                    on:click=move |_| reload()
                >
                    "↻ Refresh"
                </button>
            </div>
            <ErrorBanner error />
            <Show when=move || load_error.with(Option::is_some)>
                <div class="error-banner" role="alert" data-testid="list-error">
                    <span class="error-icon" aria-hidden="true">"!"</span>
                    <p class="error-text">
                        "Could not load the recordings: " {move || load_error.get().unwrap_or_default()}
                    </p>
                </div>
            </Show>
            <Show
                when=move || items.with(|l| !l.is_empty())
                fallback=|| {
                    view! {
                        <div class="empty" data-testid="empty-state">
                            <p class="empty-title">"No recordings yet"</p>
                            <p class="muted">
                                "Make one on the " <a href="/record">"Record page"</a>
                                " — it shows up here as soon as you stop."
                            </p>
                            <a class="btn primary" href="/record">"● Record a video"</a>
                        </div>
                    }
                }
            >
                <div class="table-wrap">
                    <table class="rec-table">
                        <thead>
                            <tr>
                                <th scope="col"><span class="sr-only">"Poster"</span></th>
                                <th scope="col">"Name"</th>
                                <th scope="col">"Created"</th>
                                <th scope="col">"Duration"</th>
                                <th scope="col">"Codec"</th>
                                <th scope="col">"Resolution"</th>
                                <th scope="col">"Size"</th>
                                <th scope="col">"State"</th>
                                <th scope="col"><span class="sr-only">"Actions"</span></th>
                            </tr>
                        </thead>
                        <tbody>
                            <For each=rows key=row_key let(meta)>
                                <RecordingRow meta error reload />
                            </For>
                        </tbody>
                    </table>
                </div>
            </Show>
        </section>
    }
    .into_any()
}

/// Changes whenever anything shown in a row changes, so the row is re-rendered.
fn row_key(m: &RecordingMeta) -> String {
    format!(
        "{}|{}|{:?}|{}|{}|{}x{}|{:?}",
        m.id, m.name, m.state, m.duration_ms, m.bytes, m.width, m.height, m.video_codec
    )
}

fn state_label(state: RecordingState) -> (&'static str, &'static str) {
    match state {
        RecordingState::Recording => ("Recording…", "recording"),
        RecordingState::Complete => ("Complete", "complete"),
        RecordingState::Recovered => ("Recovered", "recovered"),
        RecordingState::Failed => ("Failed", "failed"),
    }
}

#[component]
fn RecordingRow(
    meta: RecordingMeta,
    error: RwSignal<Option<String>>,
    reload: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let editing = RwSignal::new(false);
    let draft = RwSignal::new(meta.name.clone());
    let busy = RwSignal::new(false);
    let id = meta.id.clone();
    let name = meta.name.clone();
    let (state_text, state_class) = state_label(meta.state);
    let playable = meta.playable();
    let dims = if meta.width > 0 {
        format!("{}×{}", meta.width, meta.height)
    } else {
        "—".into()
    };
    let codec = {
        let mut c = format_codec(meta.video_codec);
        if meta.audio {
            c.push_str(" + Opus");
        }
        c
    };
    let file_name = format!("{}.{}", meta.name, meta.container);

    let save = {
        let id = id.clone();
        let original = name.clone();
        move || {
            let new_name = draft.get_untracked().trim().to_string();
            if new_name.is_empty() || new_name == original {
                editing.set(false);
                return;
            }
            busy.set(true);
            let id = id.clone();
            spawn_local(async move {
                match rename_recording(id, new_name).await {
                    Ok(_) => {
                        error.set(None);
                        editing.try_set(false);
                        reload();
                    }
                    Err(e) => error.set(Some(format!("Could not rename: {}", server_error(&e)))),
                }
                busy.try_set(false);
            });
        }
    };
    let delete = {
        let id = id.clone();
        let name = name.clone();
        move |_| {
            if !confirm(&format!("Delete \"{name}\"? This cannot be undone.")) {
                return;
            }
            busy.set(true);
            let id = id.clone();
            spawn_local(async move {
                match delete_recording(id).await {
                    Ok(()) => {
                        error.set(None);
                        reload();
                    }
                    Err(e) => {
                        error.set(Some(format!("Could not delete: {}", server_error(&e))));
                        busy.try_set(false);
                    }
                }
            });
        }
    };
    let start_edit = {
        let name = name.clone();
        move |_| {
            draft.set(name.clone());
            editing.set(true);
        }
    };

    view! {
        <tr data-testid="recording-row" data-id=id.clone() data-state=state_class>
            <td class="thumb-cell">
                {if playable && meta.video_codec.is_some() {
                    view! {
                        <img
                            class="thumb"
                            data-testid="thumbnail"
                            src=format!("/api/recordings/{id}/thumbnail")
                            alt=""
                            loading="lazy"
                            decoding="async"
                            width="96"
                            height="72"
                        />
                    }
                        .into_any()
                } else {
                    view! { <span class="thumb placeholder" aria-hidden="true"></span> }.into_any()
                }}
            </td>
            <td class="name-cell" data-label="Name">
                <Show
                    when=move || editing.get()
                    fallback={
                        let name = name.clone();
                        move || view! { <span class="rec-name" data-testid="recording-name">{name.clone()}</span> }
                    }
                >
                    <form
                        class="rename-form"
                        on:submit={
                            let save = save.clone();
                            move |ev: leptos::ev::SubmitEvent| {
                                ev.prevent_default();
                                save();
                            }
                        }
                    >
                        <input
                            type="text"
                            class="rename-input"
                            data-testid="rename-input"
                            aria-label="New name"
                            maxlength="200"
                            autofocus=true
                            prop:value=move || draft.get()
                            on:input=move |ev| draft.set(event_target_value(&ev))
                            on:keydown=move |ev: leptos::ev::KeyboardEvent| {
                                if ev.key() == "Escape" {
                                    editing.set(false);
                                }
                            }
                        />
                        <button type="submit" class="btn small primary" data-testid="rename-save" disabled=move || busy.get()>
                            "Save"
                        </button>
                        <button
                            type="button"
                            class="btn small ghost"
                            on:click=move |_| editing.set(false)
                        >
                            "Cancel"
                        </button>
                    </form>
                </Show>
                {meta.note.clone().map(|n| view! { <span class="note muted">{n}</span> })}
            </td>
            <td data-label="Created">
                <time datetime=meta.created.clone()>{format_created(&meta.created)}</time>
            </td>
            <td data-label="Duration" class="num">{format_duration(meta.duration_ms)}</td>
            <td data-label="Codec">{codec}</td>
            <td data-label="Resolution" class="num">{dims}</td>
            <td data-label="Size" class="num">{format_bytes(meta.bytes)}</td>
            <td data-label="State">
                <span class=format!("badge {state_class}")>{state_text}</span>
            </td>
            <td class="actions">
                {if meta.state == RecordingState::Recording {
                    view! {
                        <a
                            class="btn small primary live"
                            data-testid="watch-live"
                            href=format!("/play?live={id}")
                        >
                            "● Watch live"
                        </a>
                    }
                        .into_any()
                } else if playable {
                    view! {
                        <a
                            class="btn small primary"
                            data-testid="play-link"
                            href=format!("/play?recording={id}")
                        >
                            "▶ Play"
                        </a>
                    }
                        .into_any()
                } else {
                    view! {
                        <span class="btn small disabled" aria-disabled="true" title="Not playable">
                            "▶ Play"
                        </span>
                    }
                        .into_any()
                }}
                <a
                    class="btn small"
                    data-testid="download"
                    href=format!("/api/recordings/{id}/file")
                    download=file_name
                >
                    "Download"
                </a>
                <button
                    type="button"
                    class="btn small"
                    data-testid="rename"
                    disabled=move || busy.get() || editing.get()
                    on:click=start_edit
                >
                    "Rename"
                </button>
                <button
                    type="button"
                    class="btn small danger"
                    data-testid="delete"
                    disabled=move || busy.get() || meta.state == RecordingState::Recording
                    on:click=delete
                >
                    "Delete"
                </button>
            </td>
        </tr>
    }
    .into_any()
}

/// The message of a server function error, without the framework's prefix.
fn server_error(e: &ServerFnError) -> String {
    match e {
        ServerFnError::ServerError(msg) => msg.clone(),
        other => other.to_string(),
    }
}

fn confirm(message: &str) -> bool {
    #[cfg(feature = "hydrate")]
    {
        crate::client::confirm(message)
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = message;
        false
    }
}
