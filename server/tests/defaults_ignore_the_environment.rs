//! `Config::default()` is the documented defaults whatever `HERALD_*`
//! variables the caller's environment holds: only the command line's
//! parsing reads them. This file holds one test, so setting a variable
//! races with no other test of its process.

use std::time::Duration;

use herald_server::Config;

#[test]
fn herald_variables_do_not_change_the_defaults() {
    // SAFETY: the only test of this process; nothing else reads or writes
    // the environment meanwhile.
    unsafe {
        std::env::set_var("HERALD_MAX_ATTEMPTS", "3");
        std::env::set_var("HERALD_REQUEST_TIMEOUT", "1s");
        std::env::set_var("HERALD_MAX_BODY_BYTES", "7");
    }
    let config = Config::default();
    assert_eq!(config.max_attempts, 20);
    assert_eq!(config.request_timeout, Duration::from_secs(30));
    assert_eq!(config.limits.max_body_bytes, 1024 * 1024);
}
