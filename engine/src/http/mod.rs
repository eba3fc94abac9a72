//! The HTTP surface: accepting connections, routing requests, building responses.

pub mod compression;
pub mod connection;
pub mod documents;
pub mod framing;
pub mod handler;
pub mod infer;
pub mod request_id;
pub mod response;
pub mod server;
pub mod sse;

pub use server::serve_http;
