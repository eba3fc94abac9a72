//! The HTTP surface: accepting connections, routing requests, building responses.

pub mod handler;
pub mod response;
pub mod server;

pub use server::serve_http;
