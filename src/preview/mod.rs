//! The pull-request preview (spec section 13).

pub mod values;
