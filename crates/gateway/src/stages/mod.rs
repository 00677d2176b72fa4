//! The stages of the request path (DESIGN.md §1). Each module owns one stage's compiled policy and its checks;
//! [`crate::proxy`] runs them in order.

pub mod admit;
pub mod authorize;
pub mod cors;
pub mod identify;
pub mod inspect;
pub mod normalize;
pub mod record;
pub mod respond;
pub mod route;
pub mod throttle;
