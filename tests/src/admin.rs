//! The `herald` one-shot commands (tenant, key, deliveries, dead-letters),
//! run as real processes, and what they print.

use std::{
    ffi::OsString,
    process::{Command, Output},
};

/// What `herald tenant create` printed.
#[derive(Debug, Clone)]
pub struct CreatedTenant {
    /// The API key, shown once.
    pub api_key: String,
    /// The key's id, which `herald key revoke` takes.
    pub key_id: String,
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

/// `program` (a `herald` binary) as a command that inherits no `HERALD_*`
/// variable from the caller's environment: a test names every setting it
/// relies on, so a developer's own settings cannot change what it sees.
pub fn herald_process(program: &str) -> Command {
    let mut command = Command::new(program);
    for name in herald_variables(std::env::vars_os()) {
        command.env_remove(name);
    }
    command
}

/// The names of the `HERALD_*` variables in `environment`.
fn herald_variables(environment: impl Iterator<Item = (OsString, OsString)>) -> Vec<OsString> {
    environment
        .map(|(name, _)| name)
        .filter(|name| name.to_string_lossy().starts_with("HERALD_"))
        .collect()
}

/// Runs `program ARGS` with `settings` as environment (and the tests'
/// secret key unless `settings` names another), whatever it exits with.
pub fn herald_output(program: &str, settings: &[(&str, &str)], args: &[&str]) -> Output {
    herald_process(program)
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
        key_id: printed_value(&printed, "key id:"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_herald_variable_of_the_caller_reaches_a_child() {
        let environment = [
            ("HERALD_API_KEY", "hk_mine"),
            ("PATH", "/usr/bin"),
            ("HERALD_DATABASE_URL", "postgres://mine"),
            ("NO_COLOR", "1"),
        ]
        .map(|(name, value)| (OsString::from(name), OsString::from(value)));
        assert_eq!(
            herald_variables(environment.into_iter()),
            ["HERALD_API_KEY", "HERALD_DATABASE_URL"]
        );
    }
}
