//! authorize: least privilege once the caller is known — scopes and roles per route, ownership of the object a
//! request names, and, where configured, Cedar policies for rules the built-in checks cannot express.

#[cfg(feature = "cedar")]
pub mod cedar;
