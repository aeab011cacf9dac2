//! The HTTPS transport over real loopback sockets, with a trivial handler that echoes what it was
//! given. One binary, one module per concern.

mod common;
mod limits;
mod params;
mod proxy;
mod routing;
mod shutdown;
mod tls;
