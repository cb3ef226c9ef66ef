//! GitHub Actions workflow commands: `::name key=value,...::data` lines the
//! runner reads from a step's output. Every value is escaped, so a message
//! holding a newline or `::` cannot end the command early or start another one.

use std::io::Write;

/// Escapes a command's data (the part after the last `::`).
pub fn escape_data(s: &str) -> String {
    s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

/// Escapes a property value: data escaping plus `:` and `,`, which delimit properties.
pub fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// One command line, without the trailing newline. Properties with empty
/// values are left out (the runner treats them as absent anyway).
pub fn command(name: &str, properties: &[(&str, &str)], data: &str) -> String {
    let props: Vec<String> = properties.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| format!("{k}={}", escape_property(v))).collect();
    if props.is_empty() {
        format!("::{name}::{}", escape_data(data))
    } else {
        format!("::{name} {}::{}", props.join(","), escape_data(data))
    }
}

/// `text` as plain log output. The runner reads every line (ending at `\n`,
/// `\r\n` or a lone `\r`) whose start, after leading whitespace, is `::` as a
/// command, so on such a line the first `:` is escaped; nothing else changes.
fn inert(text: &str) -> String {
    text.split_inclusive(['\r', '\n'])
        .map(|line| {
            let body = line.trim_start();
            match body.strip_prefix(':') {
                Some(rest) if rest.starts_with(':') => format!("{}%3A{rest}", &line[..line.len() - body.len()]),
                _ => line.to_owned(),
            }
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Warning,
    Notice,
}

impl Level {
    fn command(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warning => "warning",
            Self::Notice => "notice",
        }
    }
}

/// An annotation as a workflow command: `file` relative to the repository root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogAnnotation {
    pub level: Level,
    pub file: Option<String>,
    pub line: Option<usize>,
    pub title: Option<String>,
    pub message: String,
}

impl LogAnnotation {
    pub fn to_command(&self) -> String {
        let line = self.line.map(|l| l.to_string()).unwrap_or_default();
        let file = self.file.as_deref().unwrap_or_default();
        // `line` without `file` means nothing to the runner.
        let line = if file.is_empty() { "" } else { line.as_str() };
        command(
            self.level.command(),
            &[("file", file), ("line", line), ("title", self.title.as_deref().unwrap_or_default())],
            &self.message,
        )
    }
}

/// The step's log: plain lines, groups, masks, debug lines and annotations.
pub struct Log<W: Write> {
    out: W,
    debug: bool,
}

impl<W: Write> Log<W> {
    pub fn new(out: W, debug: bool) -> Self {
        Self { out, debug }
    }

    fn emit(&mut self, line: &str) {
        // A broken stdout (runner gone) must not turn into a panic or a failure of its own.
        let _ = writeln!(self.out, "{line}");
        let _ = self.out.flush();
    }

    /// A plain line (or several): never read as a command.
    pub fn info(&mut self, text: &str) {
        self.emit(&inert(text));
    }

    /// Hides `secret` (and each of its lines) in everything the runner logs from now on.
    pub fn mask(&mut self, secret: &str) {
        let mut parts: Vec<&str> = secret.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        if parts.len() > 1 {
            parts.insert(0, secret);
        }
        for part in parts {
            self.emit(&command("add-mask", &[], part));
        }
    }

    pub fn group(&mut self, title: &str) {
        self.emit(&command("group", &[], title));
    }

    pub fn end_group(&mut self) {
        self.emit("::endgroup::");
    }

    /// Shown only when the run has debug logging on (`RUNNER_DEBUG=1`).
    pub fn debug(&mut self, message: &str) {
        if self.debug {
            self.emit(&command("debug", &[], message));
        }
    }

    pub fn annotate(&mut self, a: &LogAnnotation) {
        self.emit(&a.to_command());
    }

    pub fn warning(&mut self, title: &str, message: &str) {
        self.annotate(&LogAnnotation {
            level: Level::Warning,
            file: None,
            line: None,
            title: Some(title.to_owned()),
            message: message.to_owned(),
        });
    }

    pub fn error(&mut self, title: &str, message: &str) {
        self.annotate(&LogAnnotation {
            level: Level::Error,
            file: None,
            line: None,
            title: Some(title.to_owned()),
            message: message.to_owned(),
        });
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_escaping_keeps_one_line() {
        assert_eq!(escape_data("50% done\r\nnext: a,b"), "50%25 done%0D%0Anext: a,b");
        assert_eq!(escape_property("C:\\a,b%\n"), "C%3A\\a%2Cb%25%0A");
        // `%` first: an escaped value is never escaped twice.
        assert_eq!(escape_data("%0A"), "%250A");
    }

    #[test]
    fn annotation_commands() {
        let a = LogAnnotation {
            level: Level::Error,
            file: Some("charts/app/Chart.yaml".into()),
            line: Some(3),
            title: Some("release-capsule: package".into()),
            message: "Chart.yaml:3: bad\nversion".into(),
        };
        assert_eq!(
            a.to_command(),
            "::error file=charts/app/Chart.yaml,line=3,title=release-capsule%3A package::Chart.yaml:3: bad%0Aversion"
        );
        let no_file = LogAnnotation { level: Level::Warning, file: None, line: Some(3), title: None, message: "m".into() };
        assert_eq!(no_file.to_command(), "::warning::m");
        let comma = LogAnnotation { level: Level::Notice, file: Some("a,b:c.yaml".into()), line: None, title: None, message: "x".into() };
        assert_eq!(comma.to_command(), "::notice file=a%2Cb%3Ac.yaml::x");
    }

    #[test]
    fn log_masks_debug_and_plain_lines() {
        let mut log = Log::new(Vec::new(), false);
        log.mask("s3cr3t");
        log.mask("line1\nline2");
        log.debug("hidden");
        log.info("::set-output name=x::y");
        log.group("Publish");
        log.end_group();
        let text = String::from_utf8(log.into_inner()).unwrap();
        assert_eq!(
            text,
            "::add-mask::s3cr3t\n::add-mask::line1%0Aline2\n::add-mask::line1\n::add-mask::line2\n\
             %3A:set-output name=x::y\n::group::Publish\n::endgroup::\n"
        );
        let mut log = Log::new(Vec::new(), true);
        log.debug("shown: 100%");
        assert_eq!(String::from_utf8(log.into_inner()).unwrap(), "::debug::shown: 100%25\n");
    }

    #[test]
    fn plain_lines_never_become_commands() {
        // The runner trims leading whitespace before it looks for `::`, and
        // reads each line of a multi-line text on its own.
        let mut log = Log::new(Vec::new(), false);
        log.info(" \t::error::x");
        log.info("fine\n::warning::y\r::notice::z\r\n  ::debug::w");
        log.info("a :: b");
        assert_eq!(
            String::from_utf8(log.into_inner()).unwrap(),
            " \t%3A:error::x\nfine\n%3A:warning::y\r%3A:notice::z\r\n  %3A:debug::w\na :: b\n"
        );
    }
}
