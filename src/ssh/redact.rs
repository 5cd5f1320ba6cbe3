//! The form of an exec line that may be written to the daemon's log.
//!
//! The log (journald, a file) is read by more people than the apps' config,
//! so no argument value of the `KEY=VALUE` form ever reaches it, whatever the
//! command: `config:set shop TOKEN=abc` is logged as
//! `config:set shop TOKEN=<redacted>`. A line that does not split into words
//! keeps only its first word. Pure.

/// At most this many characters of a command are logged.
const MAX_LOGGED: usize = 200;

/// `line` with every `K=V` argument's value replaced.
pub fn loggable(line: &str) -> String {
    let text = match shell_words::split(line) {
        Ok(words) => words
            .iter()
            .enumerate()
            .map(|(i, w)| match w.split_once('=') {
                Some((k, _)) if i > 0 => format!("{}=<redacted>", shell_words::quote(k)),
                _ => shell_words::quote(w).into_owned(),
            })
            .collect::<Vec<_>>()
            .join(" "),
        Err(_) => {
            let first = line.split_whitespace().next().unwrap_or("");
            let first = first.split_once('=').map_or(first, |(k, _)| k);
            format!("{} <unparsed arguments>", shell_words::quote(first))
        }
    };
    let mut out: String = text.chars().take(MAX_LOGGED).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::loggable;

    #[test]
    fn values_never_reach_the_log() {
        assert_eq!(
            loggable("config:set shop TOKEN=s3cr3t DEBUG=1"),
            "config:set shop TOKEN=<redacted> DEBUG=<redacted>"
        );
        assert_eq!(
            loggable("config:set shop 'TOKEN=with spaces s3cr3t'"),
            "config:set shop TOKEN=<redacted>"
        );
        assert_eq!(
            loggable("config:set shop TOKEN='unbalanced s3cr3t"),
            "config:set <unparsed arguments>"
        );
        assert_eq!(loggable("apps"), "apps");
        assert_eq!(
            loggable("git-receive-pack '/shop.git'"),
            "git-receive-pack /shop.git"
        );
        assert_eq!(loggable("logs shop -f -n 5"), "logs shop -f -n 5");
    }

    #[test]
    fn long_lines_are_cut() {
        let line = format!("apps:create {}", "a".repeat(500));
        let logged = loggable(&line);
        assert_eq!(logged.chars().count(), 201);
        assert!(logged.ends_with('…'));
    }
}
