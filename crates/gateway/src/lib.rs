//! Rampart's gateway: listeners, TLS, the stage pipeline, upstream pools and the admin API.
//!
//! The request path is laid out in [`pipeline`]: every request walks admit → route → (later stages) →
//! forward → respond → record, and every exit, rejection or not, goes through [`problem`] and [`stages::record`].
#![forbid(unsafe_code)]

pub mod admin;
pub mod body;
pub mod config;
pub mod metrics;
pub mod multipart;
pub mod openapi;
pub mod pipeline;
pub mod problem;
pub mod proxy;
pub mod server;
pub mod stages;
pub mod state;
pub mod upstream;

pub use config::{load_file, load_str, ConfigError, ConfigErrors};
pub use server::{Gateway, GatewayHandle};
