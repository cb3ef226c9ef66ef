//! The pull-request preview (spec section 13).

pub mod compare;
pub mod config;
pub mod objects;
pub mod render;
pub mod secrets;
pub mod values;
