//! pion-the-sky's Leptos app: the pages, their components, the server functions, and the
//! types the server and the browser share ([`protocol`]).
#![recursion_limit = "256"]

pub mod pages;
pub mod protocol;
pub mod server_fns;

#[cfg(feature = "hydrate")]
pub mod client;

use leptos::prelude::*;
use leptos_meta::{Link, Meta, MetaTags, Stylesheet, Title, provide_meta_context};
use leptos_router::{
    StaticSegment,
    components::{A, Route, Router, Routes},
};

/// The HTML document the server renders around the app.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <meta name="color-scheme" content="light dark" />
                <AutoReload options=options.clone() />
                <HydrationScripts options />
                <MetaTags />
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

/// The app: a header with navigation and the three pages.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <Stylesheet id="leptos" href="/pkg/pion_the_sky.css" />
        <Title text="pion-the-sky" />
        <Link rel="icon" href="/favicon.ico" />
        <Meta name="description" content="Record your camera to a server over WebRTC and play the recordings back." />
        <Router>
            <header class="topbar">
                <A href="/" attr:class="brand" attr:aria-label="pion-the-sky home">
                    <span class="logo" aria-hidden="true">"◉"</span>
                    <span>"pion-the-sky"</span>
                </A>
                <nav aria-label="Main">
                    <A href="/record">"Record"</A>
                    <A href="/play">"Play"</A>
                </nav>
            </header>
            <main>
                <Routes fallback=|| view! { <pages::NotFound /> }>
                    <Route path=StaticSegment("") view=pages::home::HomePage />
                    <Route path=StaticSegment("record") view=pages::record::RecordPage />
                    <Route path=StaticSegment("play") view=pages::play::PlayPage />
                </Routes>
            </main>
        </Router>
    }
}
