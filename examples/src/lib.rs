//! A small app built on stevedore: an image service with CPU work, I/O work and a cache that
//! every node clears on a broadcast.
//!
//! - `demo-worker`: the stock worker's command line with these tasks linked in;
//! - `demo-producer`: publishes a mix of tasks, waits for them, and prints what ran where.

pub mod tasks;

/// Forces the tasks into a worker binary (link-time registration needs the crate referenced).
pub fn link() {
    tasks::link();
}
