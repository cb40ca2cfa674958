//! End-to-end tests of `tern pub` and `tern sub` against real parts:
//! Debian's Mosquitto broker and its `mosquitto_pub` and `mosquitto_sub`
//! clients, each test with its own broker on a free 127.0.0.1 port.
//!
//! The tests fail, rather than skip, when Mosquitto is missing: install it
//! with `apt-get install mosquitto mosquitto-clients`.

mod pub_sub;
mod sessions;
mod support;
