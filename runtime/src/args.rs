//! How docker rewrites a container's command, undone for a unikernel, which has neither an init
//! nor a shell:
//! - `docker run --init` (or `"init": true` in daemon.json) puts its init in front, bind-mounted
//!   from the host: `["/sbin/docker-init", "--", CMD...]`;
//! - a shell-form `CMD /app.hvt arg` (or `ENTRYPOINT`) runs through the shell:
//!   `["/bin/sh", "-c", "/app.hvt arg"]`. Its string is split into words only when it is a plain
//!   list of words: anything the shell would interpret is refused.

/// Where docker's `--init` puts its init inside the container.
pub const DOCKER_INIT: &str = "/sbin/docker-init";

/// The shell docker's shell form runs a command with.
const SHELL: &str = "/bin/sh";

/// Characters that make a string shell syntax rather than a list of words: quoting, expansion,
/// command separators, pipes, redirections, grouping, globs, comments, and a newline.
const SHELL_SYNTAX: &[char] = &[
    '\'', '"', '\\', '$', '`', ';', '|', '&', '<', '>', '(', ')', '{', '}', '*', '?', '[', ']', '~', '#', '!', '\n', '\r',
];

/// A container's command, with docker's wrapping recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// docker's init was in front (`/sbin/docker-init --`).
    pub init: bool,
    /// The command behind it.
    pub form: Form,
}

/// The two forms of a docker command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Form {
    /// Exec form: the arguments as they are.
    Exec(Vec<String>),
    /// Shell form: `/bin/sh -c STRING` (arguments after the string are the shell's `$0`, `$1`,
    /// …, which a plain list of words cannot refer to).
    Shell(String),
}

impl Command {
    /// Recognises docker's init and shell form in `process.args`.
    pub fn parse(args: &[String]) -> Command {
        let (init, rest) = match args {
            [init, dashes, rest @ ..] if init == DOCKER_INIT && dashes == "--" => (true, rest),
            _ => (false, args),
        };
        let form = match rest {
            [sh, c, string, ..] if sh == SHELL && c == "-c" => Form::Shell(string.clone()),
            _ => Form::Exec(rest.to_vec()),
        };
        Command { init, form }
    }

    /// The program the command runs, to find out whether it is a unikernel: `args[0]`, or the
    /// shell string's first word (up to a blank or shell syntax).
    pub fn program(&self) -> Option<&str> {
        match &self.form {
            Form::Exec(args) => args.first().map(String::as_str),
            Form::Shell(string) => {
                let string = string.trim_start_matches([' ', '\t']);
                let end = string.find(|c: char| c == ' ' || c == '\t' || SHELL_SYNTAX.contains(&c));
                Some(&string[..end.unwrap_or(string.len())]).filter(|w| !w.is_empty())
            }
        }
    }

    /// Names [`Command::program`] in messages: `process.args[0]`, or where docker put it.
    pub fn label(&self) -> String {
        match (&self.form, self.init) {
            (Form::Exec(_), false) => "process.args[0]".into(),
            (Form::Exec(_), true) => format!("process.args[2] (behind docker's init, {DOCKER_INIT} --)"),
            (Form::Shell(_), init) => format!(
                "the first word of docker's shell-form command ({SHELL} -c){}",
                if init { " behind its init" } else { "" }
            ),
        }
    }

    /// The unikernel's arguments (its path first): the exec form's, or the shell string's
    /// words; an error explaining docker's shell form when the string is shell syntax.
    pub fn into_args(self) -> Result<Vec<String>, String> {
        match self.form {
            Form::Exec(args) => Ok(args),
            Form::Shell(string) => words(&string).map_err(|why| {
                format!(
                    "docker's shell form (CMD or ENTRYPOINT written without brackets) runs '{SHELL} -c \"{string}\"', \
                     and a unikernel has no shell: unik runs such a command only when it is a plain list of words, \
                     and this one {why}. Use the exec form instead, e.g. CMD [\"/app.hvt\", \"arg\"] \
                     (or give the command to docker run after the image)"
                )
            }),
        }
    }
}

/// A shell string's words, when it is a plain list of words (split at blanks).
fn words(string: &str) -> Result<Vec<String>, String> {
    if let Some(c) = string.chars().find(|c| SHELL_SYNTAX.contains(c)) {
        return Err(format!("has {c:?}, which the shell would interpret"));
    }
    let words: Vec<String> = string.split([' ', '\t']).filter(|w| !w.is_empty()).map(String::from).collect();
    match words.first() {
        None => Err("is empty".into()),
        // `NAME=value cmd` sets a variable for the command.
        Some(first) if first.contains('=') => Err(format!("starts with '{first}', a variable assignment")),
        Some(_) => Ok(words),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn test_docker_init_and_the_shell_form_are_unwrapped() {
        let exec = Command::parse(&strings(&["/app.hvt", "a"]));
        assert_eq!((exec.program(), exec.label().as_str()), (Some("/app.hvt"), "process.args[0]"));
        assert_eq!(exec.into_args().unwrap(), ["/app.hvt", "a"]);
        // docker run --init: as docker 20.10 writes it.
        let init = Command::parse(&strings(&["/sbin/docker-init", "--", "/app.hvt", "exit=3"]));
        assert!(init.init);
        assert_eq!(init.program(), Some("/app.hvt"));
        assert!(init.label().contains("behind docker's init"), "{}", init.label());
        assert_eq!(init.into_args().unwrap(), ["/app.hvt", "exit=3"]);
        // The init without `--` is some other program.
        let other = Command::parse(&strings(&["/sbin/docker-init", "/app.hvt"]));
        assert_eq!((other.init, other.program()), (false, Some("/sbin/docker-init")));
        // CMD /app.hvt a  b: split at blanks.
        let shell = Command::parse(&strings(&["/bin/sh", "-c", " /app.hvt a\tb  exit=5"]));
        assert_eq!(shell.program(), Some("/app.hvt"));
        assert_eq!(shell.into_args().unwrap(), ["/app.hvt", "a", "b", "exit=5"]);
        // Both: --init and a shell-form command.
        let both = Command::parse(&strings(&["/sbin/docker-init", "--", "/bin/sh", "-c", "/app.hvt x"]));
        assert!(both.init && both.label().contains("behind its init"));
        assert_eq!(both.into_args().unwrap(), ["/app.hvt", "x"]);
        // `sh -c` of another shell, or without its string, is an ordinary command.
        assert_eq!(
            Command::parse(&strings(&["/bin/bash", "-c", "/app.hvt"])).program(),
            Some("/bin/bash")
        );
        assert_eq!(Command::parse(&strings(&["/bin/sh", "-c"])).program(), Some("/bin/sh"));
        assert_eq!(Command::parse(&[]).program(), None);
    }

    #[test]
    fn test_a_shell_string_that_is_shell_syntax_is_refused_with_the_exec_form_suggested() {
        for (string, program, why) in [
            ("/app.hvt a > /log", Some("/app.hvt"), "has '>'"),
            ("/app.hvt $HOME", Some("/app.hvt"), "has '$'"),
            ("/app.hvt a; reboot", Some("/app.hvt"), "has ';'"),
            ("/app.hvt 'a b'", Some("/app.hvt"), "has '\\''"),
            ("/app.hvt|cat", Some("/app.hvt"), "has '|'"),
            ("/app.hvt `id`", Some("/app.hvt"), "has '`'"),
            ("/app.hvt &", Some("/app.hvt"), "has '&'"),
            ("/app.hvt *.img", Some("/app.hvt"), "has '*'"),
            ("FOO=1 /app.hvt", Some("FOO=1"), "a variable assignment"),
            ("  ", None, "is empty"),
            ("\"/app.hvt\" x", None, "has '\"'"),
        ] {
            let cmd = Command::parse(&strings(&["/bin/sh", "-c", string]));
            assert_eq!(cmd.program(), program, "{string}");
            let err = cmd.into_args().unwrap_err();
            assert!(err.contains(why), "{string}: {err}");
            assert!(err.contains(&format!("runs '/bin/sh -c \"{string}\"'")), "{err}");
            assert!(err.contains("Use the exec form instead, e.g. CMD [\"/app.hvt\", \"arg\"]"), "{err}");
        }
    }
}
