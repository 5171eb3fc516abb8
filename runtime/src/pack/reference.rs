//! Image names as docker and containerd spell them: `[HOST[:PORT]/]PATH[:TAG]`.

/// The tag when a name has none.
pub const DEFAULT_TAG: &str = "latest";
/// The registry a name without one is on, as docker and containerd assume.
const DEFAULT_DOMAIN: &str = "docker.io";

/// A checked image name and tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The registry host (and port) the user named, if any.
    domain: Option<String>,
    /// The repository path, e.g. `hello` or `team/app`.
    path: String,
    /// The tag.
    tag: String,
}

/// Whether `c` is one path component: lowercase letters and digits, joined by `.`, `_`, `__` or
/// runs of `-`.
fn is_component(c: &str) -> bool {
    let bytes = c.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let run = bytes[i..].iter().take_while(|b| !alnum(**b)).count();
        let sep = &c[i..i + run];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-')) {
            return false;
        }
        i += run;
    }
    true
}

/// Whether `d` is a registry host, optionally with a port.
fn is_domain(d: &str) -> bool {
    let (host, port) = d.split_once(':').map_or((d, None), |(h, p)| (h, Some(p)));
    let labels_ok = host
        .split('.')
        .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') && !l.starts_with('-') && !l.ends_with('-'));
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    labels_ok && port_ok
}

/// Whether `t` is a tag: up to 128 letters, digits, `_`, `.` and `-`, not starting with `.` or `-`.
fn is_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && !t.starts_with(['.', '-'])
        && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

impl std::str::FromStr for Reference {
    type Err = String;

    /// Parses `NAME[:TAG]` as docker does (a digest, `@sha256:…`, names no tag and is refused).
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!("'{s}' is not a valid image name ({why}); use NAME:TAG, e.g. hello:1.0 or registry.example:5000/team/app:v2")
        };
        if s.contains('@') {
            return Err(bad("a digest names no tag"));
        }
        let last_slash = s.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match s[last_slash..].rfind(':') {
            Some(i) => (&s[..last_slash + i], &s[last_slash + i + 1..]),
            None => (s, DEFAULT_TAG),
        };
        if !is_tag(tag) {
            return Err(bad(
                "the tag may hold up to 128 letters, digits, '_', '.' and '-', not first '.' or '-'",
            ));
        }
        let mut parts: Vec<&str> = name.split('/').collect();
        let domain = match parts.as_slice() {
            [first, _, ..] if first.contains(['.', ':']) || *first == "localhost" => {
                if !is_domain(first) {
                    return Err(bad("the registry must be a host name with an optional port"));
                }
                Some(parts.remove(0).to_string())
            }
            _ => None,
        };
        if !parts.iter().all(|c| is_component(c)) {
            return Err(bad(
                "each part of the name must be lowercase letters and digits, joined by '.', '_', '__' or '-'",
            ));
        }
        if name.len() > 255 {
            return Err(bad("the name is longer than 255 characters"));
        }
        Ok(Reference {
            domain,
            path: parts.join("/"),
            tag: tag.to_string(),
        })
    }
}

impl Reference {
    /// The name as the user gave it, with its tag: what `docker images` lists (`hello:1.0`).
    pub fn familiar(&self) -> String {
        match &self.domain {
            Some(d) => format!("{d}/{}:{}", self.path, self.tag),
            None => format!("{}:{}", self.path, self.tag),
        }
    }

    /// The fully qualified name containerd keeps (`docker.io/library/hello:1.0`).
    pub fn full(&self) -> String {
        match &self.domain {
            Some(d) => format!("{d}/{}:{}", self.path, self.tag),
            None if !self.path.contains('/') => format!("{DEFAULT_DOMAIN}/library/{}:{}", self.path, self.tag),
            None => format!("{DEFAULT_DOMAIN}/{}:{}", self.path, self.tag),
        }
    }

    /// The tag.
    pub fn tag(&self) -> &str {
        &self.tag
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Reference, String> {
        s.parse()
    }

    #[test]
    fn test_names_are_qualified_as_docker_and_containerd_do() {
        let r = parse("hello:1.0").unwrap();
        assert_eq!(
            (r.familiar().as_str(), r.full().as_str(), r.tag()),
            ("hello:1.0", "docker.io/library/hello:1.0", "1.0")
        );
        let r = parse("team/app").unwrap();
        assert_eq!(
            (r.familiar().as_str(), r.full().as_str()),
            ("team/app:latest", "docker.io/team/app:latest")
        );
        let r = parse("registry.example:5000/team/app:v2").unwrap();
        assert_eq!(r.full(), "registry.example:5000/team/app:v2");
        assert_eq!(r.familiar(), "registry.example:5000/team/app:v2");
        assert_eq!(
            parse("localhost/a_b__c-d--e.f:X_y.z-1").unwrap().full(),
            "localhost/a_b__c-d--e.f:X_y.z-1"
        );
    }

    #[test]
    fn test_bad_names_are_refused_with_the_rule() {
        for (bad, why) in [
            ("Hello:1", "lowercase"),
            ("hello:", "the tag"),
            ("hello:-x", "the tag"),
            ("", "lowercase"),
            ("a//b", "lowercase"),
            ("a/b/", "lowercase"),
            ("a..b", "lowercase"),
            ("a___b", "lowercase"),
            ("hello@sha256:00", "digest"),
            ("bad_host.example/x", "registry"),
            ("host.example:http/x", "registry"),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(why) && err.contains(&format!("'{bad}'")), "{bad}: {err}");
        }
        assert!(parse(&"a".repeat(256)).unwrap_err().contains("255"));
        assert!(parse(&format!("a:{}", "t".repeat(129))).unwrap_err().contains("128"));
    }
}
