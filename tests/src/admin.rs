//! The `herald` one-shot commands (tenant, key, deliveries, dead-letters),
//! run as real processes, and what they print.

use std::process::{Command, Output};

/// What `herald tenant create` printed.
#[derive(Debug, Clone)]
pub struct CreatedTenant {
    /// The API key, shown once.
    pub api_key: String,
    /// The signing secret, `whsec_...`.
    pub signing_secret: String,
}

/// Runs `program ARGS` with `HERALD_DATABASE_URL=database_url`; returns
/// stdout. Panics, with stderr and stdout, unless it exits 0.
pub fn herald_admin(program: &str, database_url: &str, args: &[&str]) -> String {
    herald_command(program, &[("HERALD_DATABASE_URL", database_url)], args)
}

/// Runs `program ARGS` with `settings` as environment; returns stdout.
/// Panics, with stderr and stdout, unless it exits 0.
pub fn herald_command(program: &str, settings: &[(&str, &str)], args: &[&str]) -> String {
    let output = herald_output(program, settings, args);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "herald {args:?} failed ({}): {stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Runs `program ARGS` with `settings` as environment (and the tests'
/// secret key unless `settings` names another), whatever it exits with.
pub fn herald_output(program: &str, settings: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .env("HERALD_SECRET_KEY", crate::TEST_SECRET_KEY)
        .envs(settings.iter().copied())
        .env("NO_COLOR", "1")
        .output()
        .expect("run the herald binary")
}

/// Creates tenant `name` with `herald tenant create`.
pub fn create_tenant(program: &str, database_url: &str, name: &str) -> CreatedTenant {
    let printed = herald_admin(program, database_url, &["tenant", "create", name]);
    CreatedTenant {
        api_key: printed_value(&printed, "api key:"),
        signing_secret: printed_value(&printed, "signing secret:"),
    }
}

/// The first word after `label` on the line that starts with it.
pub fn printed_value(printed: &str, label: &str) -> String {
    printed
        .lines()
        .find_map(|line| line.strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no {label:?} line in: {printed}"))
        .to_owned()
}
