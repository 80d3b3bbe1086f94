//! The load target: a user URL reduced to what the engine and the request encoder need.
//!
//! Parsing happens once, at start-up (this module may allocate freely). The `url` crate does
//! the RFC 3986 / WHATWG work (percent-encoding, IDNA, IPv6 literals); we only restrict the
//! scheme, fill in defaults and precompute the `Host` header value.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::str::FromStr;

use url::{Host, Position, Url};

/// Why a target URL was refused or could not be resolved. Every message names the bad value.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The text is not a URL at all.
    #[error("invalid URL {input:?}: {source}")]
    InvalidUrl {
        /// The URL as the user gave it.
        input: String,
        /// What the `url` crate objected to.
        source: url::ParseError,
    },
    /// A URL, but not one we can send HTTP/1.1 to.
    #[error("unsupported scheme {scheme:?} in {input:?} (use http or https)")]
    UnsupportedScheme {
        /// The scheme found.
        scheme: String,
        /// The URL as the user gave it.
        input: String,
    },
    /// `http:` URLs without a host (the `url` crate accepts a few odd forms).
    #[error("URL {input:?} has no host")]
    MissingHost {
        /// The URL as the user gave it.
        input: String,
    },
    /// `http://user:pass@host/`: silently dropping credentials would load-test the login page.
    #[error(
        "credentials in URL {input:?} are not supported (send them with -H 'Authorization: ...')"
    )]
    Credentials {
        /// The URL as the user gave it.
        input: String,
    },
    /// Name resolution failed.
    #[error("cannot resolve host {host:?}: {source}")]
    Resolve {
        /// The host name (IPv6 without brackets).
        host: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// Name resolution succeeded with an empty answer.
    #[error("host {host:?} resolved to no addresses")]
    NoAddresses {
        /// The host name (IPv6 without brackets).
        host: String,
    },
}

/// `http` or `https`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Plain text, default port 80.
    Http,
    /// TLS (rustls), default port 443.
    Https,
}

impl Scheme {
    /// The port used when the URL names none.
    pub const fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    /// `"http"` or `"https"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed, validated target URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    scheme: Scheme,
    /// Name or IP literal; IPv6 without brackets (what resolvers and TLS SNI want).
    host: String,
    is_ipv6: bool,
    port: u16,
    /// Origin-form request target: path plus `?query`, never empty.
    path: String,
    host_header: String,
    /// Normalized URL, for display.
    url: String,
}

impl Target {
    /// Parses a user URL: `http` or `https`, a host (name, IPv4, `[IPv6]`), optional port
    /// (default 80/443), optional path and query (default `/`). The fragment is dropped.
    pub fn parse(input: &str) -> Result<Target, TargetError> {
        let url = Url::parse(input).map_err(|source| TargetError::InvalidUrl {
            input: input.to_owned(),
            source,
        })?;
        let scheme = match url.scheme() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            other => {
                return Err(TargetError::UnsupportedScheme {
                    scheme: other.to_owned(),
                    input: input.to_owned(),
                });
            }
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(TargetError::Credentials {
                input: input.to_owned(),
            });
        }
        let (host, is_ipv6) = match url.host() {
            Some(Host::Domain(d)) if !d.is_empty() => (d.to_owned(), false),
            Some(Host::Ipv4(a)) => (a.to_string(), false),
            Some(Host::Ipv6(a)) => (a.to_string(), true),
            _ => {
                return Err(TargetError::MissingHost {
                    input: input.to_owned(),
                });
            }
        };
        let port = url.port().unwrap_or(scheme.default_port());
        // Exactly the path and query as the url crate normalized them (percent-encoded).
        let mut path = url[Position::BeforePath..Position::AfterQuery].to_owned();
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        let bracketed = if is_ipv6 {
            format!("[{host}]")
        } else {
            host.clone()
        };
        // Like curl: the default port is implied, any other is spelled out.
        let host_header = if port == scheme.default_port() {
            bracketed
        } else {
            format!("{bracketed}:{port}")
        };
        let mut url = url;
        url.set_fragment(None);
        Ok(Target {
            scheme,
            host,
            is_ipv6,
            port,
            path,
            host_header,
            url: url.into(),
        })
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// Whether connections need TLS.
    pub fn is_tls(&self) -> bool {
        self.scheme == Scheme::Https
    }

    /// Host name or IP literal, IPv6 without brackets (the TLS server name for names).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Whether the host is an IPv6 literal.
    pub fn is_ipv6_literal(&self) -> bool {
        self.is_ipv6
    }

    /// The port, explicit or the scheme's default.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The origin-form request target: path and query, e.g. `/search?q=x`; at least `/`.
    pub fn path_and_query(&self) -> &str {
        &self.path
    }

    /// The `Host` header value: `host`, `host:port` when the port is not the default,
    /// IPv6 in brackets.
    pub fn host_header(&self) -> &str {
        &self.host_header
    }

    /// The normalized URL (fragment dropped).
    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// Resolves the host with the system resolver (blocking; call at start-up, not per
    /// request). IP literals resolve without any lookup.
    pub fn resolve(&self) -> Result<Vec<SocketAddr>, TargetError> {
        let addrs: Vec<SocketAddr> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|source| TargetError::Resolve {
                host: self.host.clone(),
                source,
            })?
            .collect();
        if addrs.is_empty() {
            return Err(TargetError::NoAddresses {
                host: self.host.clone(),
            });
        }
        Ok(addrs)
    }
}

impl FromStr for Target {
    type Err = TargetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Target::parse(s)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let t = Target::parse("http://example.com").unwrap();
        assert_eq!(t.scheme(), Scheme::Http);
        assert_eq!(t.host(), "example.com");
        assert_eq!(t.port(), 80);
        assert_eq!(t.path_and_query(), "/");
        assert_eq!(t.host_header(), "example.com");
        assert!(!t.is_tls());

        let t = Target::parse("https://example.com/a/b?x=1&y=2#frag").unwrap();
        assert_eq!(t.port(), 443);
        assert!(t.is_tls());
        assert_eq!(t.path_and_query(), "/a/b?x=1&y=2");
        assert_eq!(t.host_header(), "example.com");
        assert_eq!(t.to_string(), "https://example.com/a/b?x=1&y=2");
    }

    #[test]
    fn explicit_ports() {
        let t = Target::parse("http://example.com:8080/x").unwrap();
        assert_eq!(t.port(), 8080);
        assert_eq!(t.host_header(), "example.com:8080");
        // Default port spelled out is still omitted from Host, like curl.
        let t = Target::parse("http://example.com:80/").unwrap();
        assert_eq!(t.host_header(), "example.com");
        let t = Target::parse("https://example.com:80/").unwrap();
        assert_eq!(t.host_header(), "example.com:80");
        let t = Target::parse("http://example.com:443/").unwrap();
        assert_eq!(t.host_header(), "example.com:443");
    }

    #[test]
    fn ip_literals() {
        let t = Target::parse("http://127.0.0.1:3000/p").unwrap();
        assert_eq!(t.host(), "127.0.0.1");
        assert_eq!(t.host_header(), "127.0.0.1:3000");
        let t = Target::parse("http://[::1]:8080/p?q").unwrap();
        assert_eq!(t.host(), "::1");
        assert!(t.is_ipv6_literal());
        assert_eq!(t.host_header(), "[::1]:8080");
        assert_eq!(t.path_and_query(), "/p?q");
        let t = Target::parse("https://[::1]/").unwrap();
        assert_eq!(t.host_header(), "[::1]");
    }

    #[test]
    fn path_is_percent_encoded() {
        let t = Target::parse("http://h/a b?c d").unwrap();
        assert_eq!(t.path_and_query(), "/a%20b?c%20d");
        assert!(!t.path_and_query().contains(' '));
    }

    #[test]
    fn errors_name_the_value() {
        let e = Target::parse("ftp://x").unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"unsupported scheme "ftp" in "ftp://x" (use http or https)"#
        );
        let e = Target::parse("htp:/x").unwrap_err();
        assert!(e.to_string().contains(r#""htp""#), "{e}");
        let e = Target::parse("not a url").unwrap_err();
        assert!(
            e.to_string().starts_with(r#"invalid URL "not a url": "#),
            "{e}"
        );
        let e = Target::parse("http://").unwrap_err();
        assert!(e.to_string().contains(r#""http://""#), "{e}");
        let e = Target::parse("http://u:p@h/").unwrap_err();
        assert!(e.to_string().contains("credentials"), "{e}");
        let e = Target::parse("http://h:99999/").unwrap_err();
        assert!(e.to_string().contains("h:99999"), "{e}");
    }

    #[test]
    fn resolve_literals_and_localhost() {
        let t = Target::parse("http://127.0.0.1:1234/").unwrap();
        assert_eq!(
            t.resolve().unwrap(),
            vec!["127.0.0.1:1234".parse::<SocketAddr>().unwrap()]
        );
        let t = Target::parse("http://[::1]:1234/").unwrap();
        assert_eq!(
            t.resolve().unwrap(),
            vec!["[::1]:1234".parse::<SocketAddr>().unwrap()]
        );
    }

    #[test]
    fn resolve_error_names_host() {
        // `.invalid` is reserved (RFC 2606) and never resolves.
        let t = Target::parse("http://no-such-host.invalid/").unwrap();
        let e = t.resolve().unwrap_err();
        assert!(e.to_string().contains(r#""no-such-host.invalid""#), "{e}");
    }
}
