//! Host services: what the host reaches over vsock (the engine API, the
//! control port with logs and the debug shell, published ports) and the
//! host folders it shares.

pub mod control;
pub mod http;
pub mod ports;
pub mod shares;
pub mod shell;
pub mod vsock;
pub mod waiting;
