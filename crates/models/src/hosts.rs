//! Which hosts a job's model URLs may reach ([`HostRule`]). A job comes from
//! whoever may submit one, so its URLs must not make the worker fetch from
//! the machine itself, its private network or a cloud metadata service:
//! only `http(s)`, and a host whose addresses are all public, unless the
//! operator allows it by name (`COMFYVER_JOB_MODEL_HOSTS`). Every redirect
//! is checked again.

use std::net::{IpAddr, ToSocketAddrs};

use comfyver_spec::model_source::host_of;

/// The rule for the URLs of job models: `allowed` hosts may be anything,
/// every other host must resolve to public addresses only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostRule {
    /// Host names or addresses allowed although not public (lower case).
    pub allowed: Vec<String>,
}

impl HostRule {
    /// The rule with the hosts of `COMFYVER_JOB_MODEL_HOSTS` (comma-separated).
    pub fn from_env() -> HostRule {
        HostRule::allowing(
            &std::env::var(comfyver_env::COMFYVER_JOB_MODEL_HOSTS).unwrap_or_default(),
        )
    }

    /// The rule allowing the comma-separated hosts of `list`.
    pub fn allowing(list: &str) -> HostRule {
        HostRule {
            allowed: list
                .split(',')
                .map(|h| {
                    h.trim()
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .to_ascii_lowercase()
                })
                .filter(|h| !h.is_empty())
                .collect(),
        }
    }

    /// `Err(reason)` when `url` may not be fetched.
    pub(crate) fn check(&self, url: &str) -> Result<(), String> {
        let scheme = url
            .split_once("://")
            .map(|(s, _)| s.to_ascii_lowercase())
            .unwrap_or_default();
        if scheme != "http" && scheme != "https" {
            return Err("only http:// and https:// URLs are fetched for jobs".into());
        }
        let host = host_of(url)
            .map(|h| {
                h.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_ascii_lowercase()
            })
            .filter(|h| !h.is_empty())
            .ok_or("the URL has no host")?;
        if self.allowed.contains(&host) {
            return Ok(());
        }
        let refuse = |what: &str| {
            Err(format!(
                "host `{host}` is {what}; allow it with {} if it is meant",
                comfyver_env::COMFYVER_JOB_MODEL_HOSTS
            ))
        };
        if host == "localhost" || host.ends_with(".localhost") {
            return refuse("loopback");
        }
        let addrs: Vec<IpAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => match (host.as_str(), 443).to_socket_addrs() {
                Ok(a) => a.map(|a| a.ip()).collect(),
                // Unresolvable: the download fails with its own error.
                Err(_) => return Ok(()),
            },
        };
        match addrs.iter().find_map(|ip| not_public(*ip)) {
            Some(what) => refuse(what),
            None => Ok(()),
        }
    }
}

/// What kind of non-public address `ip` is, if it is one.
fn not_public(ip: IpAddr) -> Option<&'static str> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_loopback() {
                Some("loopback")
            } else if o == [169, 254, 169, 254] {
                Some("a cloud metadata address")
            } else if v4.is_link_local() {
                Some("link-local")
            } else if v4.is_private() || (o[0] == 100 && (64..128).contains(&o[1])) {
                Some("a private address")
            } else if v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast() || o[0] == 0 {
                Some("not a unicast address")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() || v6.is_multicast() {
                Some("not a unicast address")
            } else if s[0] & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if s[0] & 0xfe00 == 0xfc00 || s == [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254] {
                Some("a private address")
            } else {
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_http_hosts_pass_unless_allowed() {
        let rule = HostRule::default();
        for bad in [
            "file:///etc/passwd",
            "ftp://93.184.215.14/x",
            "http://127.0.0.1:8080/a",
            "http://localhost/a",
            "http://[::1]/a",
            "http://10.1.2.3/a",
            "http://192.168.0.9/a",
            "http://172.16.0.1/a",
            "http://100.64.0.1/a",
            "http://169.254.169.254/latest/meta-data",
            "http://169.254.3.4/a",
            "http://[fe80::1]/a",
            "http://[fd00::1]/a",
            "http://[::ffff:127.0.0.1]/a",
            "http://0.0.0.0/a",
        ] {
            assert!(rule.check(bad).is_err(), "{bad}");
        }
        assert!(rule.check("https://93.184.215.14/m.safetensors").is_ok());
        let e = rule.check("http://169.254.169.254/").unwrap_err();
        assert!(
            e.contains("metadata") && e.contains("COMFYVER_JOB_MODEL_HOSTS"),
            "{e}"
        );
        let allowed = HostRule::allowing(" 127.0.0.1 , Models.LAN");
        assert!(allowed.check("http://127.0.0.1:9/a").is_ok());
        assert!(allowed.check("http://u:p@127.0.0.1:9/a").is_ok());
        assert!(allowed.check("http://10.0.0.1/a").is_err());
        assert!(allowed.check("file:///x").is_err());
    }
}
