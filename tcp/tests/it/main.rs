//! The TCP line API over real loopback sockets, with a trivial handler. One binary, one module per
//! concern.

mod common;
mod framing;
mod lanes;
mod limits;
mod pipeline;
