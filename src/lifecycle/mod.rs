//! Lifecycles: how an account and a bound pair move through their states, and the reconciler that
//! finishes what an interrupted request left behind.

pub mod account;
pub mod pair;
pub mod reconcile;
