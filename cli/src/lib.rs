//! The `stevedore` admin command line and the dashboard server.
//!
//! [`admin`] holds the commands; each is a view over the operator API
//! ([`stevedore::admin::Admin`]), which the dashboard (`stevedore-web`) and the cluster
//! metrics read through too. What the long-lived binaries share (arguments, logging,
//! signals) is `stevedore-runtime`.

pub mod admin;
