//! The two places where SQLite and PostgreSQL SQL differ for Herald:
//! how to read the database clock, and how to lock claimed rows.

/// SQL dialect of the connected database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Embedded SQLite (3.42 or later for `unixepoch('subsec')`).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Dialect {
    /// Picks the dialect from a database URL's scheme.
    pub fn from_url(url: &str) -> Option<Self> {
        let scheme = url.split_once(':')?.0;
        match scheme {
            "sqlite" => Some(Self::Sqlite),
            "postgres" | "postgresql" => Some(Self::Postgres),
            _ => None,
        }
    }

    /// Expression for "now" in Unix epoch milliseconds, on the database clock.
    pub fn now_ms(self) -> &'static str {
        match self {
            Self::Sqlite => "CAST(unixepoch('subsec') * 1000 AS INTEGER)",
            Self::Postgres => "CAST(EXTRACT(EPOCH FROM statement_timestamp()) * 1000 AS BIGINT)",
        }
    }

    /// Clause that makes concurrent claimers skip each other's rows. SQLite
    /// has one writer at a time, so the claim statement alone is exclusive.
    pub fn skip_locked(self) -> &'static str {
        match self {
            Self::Sqlite => "",
            Self::Postgres => "FOR UPDATE SKIP LOCKED",
        }
    }

    /// Rewrites `$1`-style placeholders for this dialect and fills in `{now}`.
    /// SQLite gets `?1`, which binds by number like PostgreSQL's `$1`.
    pub fn sql(self, template: &str) -> String {
        let sql = template.replace("{now}", self.now_ms());
        match self {
            Self::Sqlite => numbered_placeholders(&sql),
            Self::Postgres => sql,
        }
    }
}

/// `sql` with each `$N` placeholder written `?N`; a `$` that starts no
/// number, belongs to a name (`a$1`), or stands inside a quoted literal
/// or identifier, is left as it is.
fn numbered_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quote = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            // A doubled quote inside a literal closes and reopens it, so
            // toggling on every quote stays right.
            (None, '\'' | '"') => quote = Some(c),
            (Some(open), _) if c == open => quote = None,
            (None, '$')
                if chars.peek().is_some_and(char::is_ascii_digit)
                    && !out.ends_with(|last: char| last.is_alphanumeric() || last == '_') =>
            {
                out.push('?');
                continue;
            }
            _ => {}
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_dialect_from_url() {
        assert_eq!(
            Dialect::from_url("sqlite://herald.db"),
            Some(Dialect::Sqlite)
        );
        assert_eq!(
            Dialect::from_url("postgres://u@h/db"),
            Some(Dialect::Postgres)
        );
        assert_eq!(
            Dialect::from_url("postgresql://u@h/db"),
            Some(Dialect::Postgres)
        );
        assert_eq!(Dialect::from_url("mysql://u@h/db"), None);
    }

    #[test]
    fn rewrites_placeholders_for_sqlite() {
        let sql = Dialect::Sqlite.sql("SELECT $1, $2, {now}");
        assert!(sql.starts_with("SELECT ?1, ?2, CAST(unixepoch"), "{sql}");
        assert_eq!(Dialect::Postgres.sql("SELECT $1"), "SELECT $1");
    }

    #[test]
    fn leaves_other_dollars_alone_for_sqlite() {
        assert_eq!(
            Dialect::Sqlite
                .sql("SELECT '$1', \"a$2\", 'it''s $3', $4, price$, a$5 FROM t WHERE x = $10"),
            "SELECT '$1', \"a$2\", 'it''s $3', ?4, price$, a$5 FROM t WHERE x = ?10"
        );
    }
}
