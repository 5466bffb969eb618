//! Host services: what the host reaches over vsock (the engine API, the
//! control port with logs and the debug shell, published ports), the
//! host folders it shares, and the containers' healthchecks.

pub mod control;
pub mod healthchecks;
pub mod http;
pub mod json;
pub mod ports;
pub mod shares;
pub mod shell;
pub mod touch;
pub mod vsock;
pub mod waiting;
