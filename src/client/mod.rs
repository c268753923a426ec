//! The client side: what a consumer links to read a publisher's stream with
//! filters, drop markers, heartbeats and reconnection. The server's view of
//! one connected consumer is `server::connection`.

pub mod subscriber;
