//! Adapters: the outside world's ways in. Each turns a transport's request into a command call and
//! the command's reply back into that transport's bytes; none holds a rule of its own.

pub mod admin;
pub mod http;
pub mod tcp;
