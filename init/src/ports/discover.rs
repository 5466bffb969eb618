//! Which ports containers publish, learnt from the engine rather than by
//! scanning sockets (Podman 6 holds no listening socket for a published
//! port, and a scan cannot see container addresses): `GET /containers/json`
//! gives each running container's `Ports` and network address, and the
//! event stream (`GET /events`) says when to ask again. The list is read
//! again each time the engine becomes ready and every
//! [`RECONCILE_EVERY`], so nothing is lost across engine restarts,
//! container restarts or reboots.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::thread;
use std::time::{Duration, Instant};

use serde::Deserialize;
use skiff_proto::ports::{Proto, Published};

use crate::{engine, http};

/// How often the table is rebuilt even without events.
const RECONCILE_EVERY: Duration = Duration::from_secs(10);
/// Container events only (URL-encoded `{"type":["container"]}`).
const EVENTS_PATH: &str = "/v1.41/events?filters=%7B%22type%22%3A%5B%22container%22%5D%7D";
const CONTAINERS_PATH: &str = "/v1.41/containers/json";
/// Largest container list read (about 2,000 containers' worth).
const MAX_LIST: usize = 8 << 20;
/// Longest event line accepted.
const MAX_EVENT: usize = 64 << 10;

/// The fields of one `GET /containers/json` entry that matter here.
#[derive(Deserialize)]
struct Container {
    #[serde(rename = "Ports", default)]
    ports: Option<Vec<Port>>,
    #[serde(rename = "NetworkSettings", default)]
    network_settings: Option<NetworkSettings>,
    #[serde(rename = "HostConfig", default)]
    host_config: Option<HostConfig>,
}

#[derive(Deserialize)]
struct Port {
    #[serde(rename = "IP", default)]
    ip: Option<String>,
    #[serde(rename = "PrivatePort")]
    private_port: u16,
    #[serde(rename = "PublicPort", default)]
    public_port: Option<u16>,
    #[serde(rename = "Type", default)]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct NetworkSettings {
    #[serde(rename = "Networks", default)]
    networks: Option<BTreeMap<String, Network>>,
}

#[derive(Deserialize)]
struct Network {
    #[serde(rename = "IPAddress", default)]
    ip_address: Option<String>,
}

#[derive(Deserialize)]
struct HostConfig {
    #[serde(rename = "NetworkMode", default)]
    network_mode: Option<String>,
}

/// One engine event: only its action is looked at (for the debug log).
#[derive(Deserialize)]
struct Event {
    #[serde(rename = "Action", default)]
    action: Option<String>,
}

/// The address the guest dials for a container: `--network host` is the
/// guest itself; otherwise the first network address it has.
fn target_ip(c: &Container) -> Option<IpAddr> {
    if c.host_config.as_ref().and_then(|h| h.network_mode.as_deref()) == Some("host") {
        return Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    let networks = c.network_settings.as_ref()?.networks.as_ref()?;
    networks.values().filter_map(|n| n.ip_address.as_deref()?.parse().ok()).next()
}

/// The published ports in a `GET /containers/json` body (running
/// containers only, as that endpoint lists by default).
pub fn parse_containers(json: &[u8]) -> Result<BTreeSet<Published>, serde_json::Error> {
    let containers: Vec<Container> = serde_json::from_slice(json)?;
    let mut table = BTreeSet::new();
    for c in &containers {
        let Some(target_ip) = target_ip(c) else { continue };
        for p in c.ports.iter().flatten() {
            let Some(proto) = Proto::parse(p.kind.as_deref().unwrap_or("tcp")) else { continue };
            let host_port = match p.public_port {
                Some(port) if port != 0 => port,
                _ => continue, // exposed, not published
            };
            let host_ip = match p.ip.as_deref().unwrap_or("") {
                "" => None,
                text => match text.parse::<IpAddr>() {
                    Ok(ip) if ip.is_unspecified() => None,
                    Ok(ip) => Some(ip),
                    Err(_) => continue,
                },
            };
            table.insert(Published { proto, host_ip, host_port, target_ip, target_port: p.private_port });
        }
    }
    Ok(table)
}

/// The action of an event line (`start`, `die`, ...), if it is one.
pub fn event_action(line: &[u8]) -> Option<String> {
    serde_json::from_slice::<Event>(line).ok()?.action
}

/// Follows the engine in a background thread for as long as the init runs.
pub fn spawn() {
    if let Err(e) = thread::Builder::new().name("ports".into()).spawn(follow) {
        log::error!("ports: cannot start the engine watcher: {e}; published ports will not reach the host");
    }
}

fn follow() {
    let mut last_error = String::new();
    loop {
        while !engine::is_ready() {
            thread::sleep(Duration::from_millis(200));
        }
        // Events first, then the list: a change between the two is in both.
        let result = http::Stream::open(engine::SOCKET, EVENTS_PATH, Duration::from_millis(250))
            .map_err(|e| format!("cannot follow engine events: {e}"))
            .and_then(|events| {
                reconcile()?;
                watch(events)
            });
        if let Err(e) = result {
            // Said once per distinct problem; the engine restarting is normal.
            if e != last_error && engine::is_ready() {
                log::warn!("ports: {e}; retrying");
            }
            last_error = e;
        }
        thread::sleep(Duration::from_millis(500));
    }
}

/// Reads the container list and replaces the table.
fn reconcile() -> Result<(), String> {
    let body = http::get(engine::SOCKET, CONTAINERS_PATH, MAX_LIST, Duration::from_secs(10))
        .map_err(|e| format!("cannot list containers: {e}"))?;
    let table = parse_containers(&body).map_err(|e| format!("cannot read the container list: {e}"))?;
    super::replace(table);
    Ok(())
}

/// Reconciles after each burst of events and every [`RECONCILE_EVERY`],
/// until the stream ends or the engine stops being ready.
fn watch(mut events: http::Stream) -> Result<(), String> {
    let mut lines = http::Lines::new(MAX_EVENT);
    let mut last = Instant::now();
    while engine::is_ready() {
        let dirty = match events.next() {
            Ok(Some(bytes)) => match lines.push(&bytes) {
                Ok(got) => {
                    for line in &got {
                        log::debug!("ports: engine event {:?}", event_action(line).unwrap_or_default());
                    }
                    !got.is_empty()
                }
                Err(e) => {
                    log::warn!("ports: skipped an engine event: {e}");
                    true
                }
            },
            Ok(None) => return Err("the engine ended its event stream".into()),
            Err(e) if http::is_timeout(&e) => false,
            Err(e) => return Err(format!("engine event stream: {e}")),
        };
        if dirty || last.elapsed() >= RECONCILE_EVERY {
            reconcile()?;
            last = Instant::now();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trimmed from Podman 5.4's compat `GET /containers/json`.
    const LIST: &str = r#"[
      {"Id":"a1","Names":["/web"],"State":"running",
       "Ports":[{"IP":"0.0.0.0","PrivatePort":8080,"PublicPort":18080,"Type":"tcp"},
                {"IP":"127.0.0.1","PrivatePort":53,"PublicPort":5353,"Type":"udp"},
                {"PrivatePort":9000,"Type":"tcp"}],
       "HostConfig":{"NetworkMode":"bridge"},
       "NetworkSettings":{"Networks":{"podman":{"IPAddress":"10.88.0.5","Gateway":"10.88.0.1"}}}},
      {"Id":"b2","Ports":[{"IP":"","PrivatePort":80,"PublicPort":8081,"Type":"tcp"},
                          {"IP":"::","PrivatePort":80,"PublicPort":8081,"Type":"tcp"}],
       "NetworkSettings":{"Networks":{"n1":{"IPAddress":""},"n2":{"IPAddress":"10.89.0.7"}}}},
      {"Id":"c3","Ports":[{"IP":"0.0.0.0","PrivatePort":80,"PublicPort":8082,"Type":"tcp"}],
       "HostConfig":{"NetworkMode":"host"},"NetworkSettings":{"Networks":{"host":{"IPAddress":""}}}},
      {"Id":"d4","Ports":[{"IP":"0.0.0.0","PrivatePort":80,"PublicPort":8083,"Type":"tcp"}],
       "NetworkSettings":{"Networks":{}}},
      {"Id":"e5","Ports":null,"NetworkSettings":null},
      {"Id":"f6","Ports":[{"IP":"bogus","PrivatePort":1,"PublicPort":2,"Type":"tcp"},
                          {"IP":"0.0.0.0","PrivatePort":1,"PublicPort":3,"Type":"sctp"}],
       "NetworkSettings":{"Networks":{"podman":{"IPAddress":"10.88.0.9"}}}}
    ]"#;

    fn published(host_ip: Option<&str>, host_port: u16, proto: Proto, target: &str, target_port: u16) -> Published {
        Published {
            proto,
            host_ip: host_ip.map(|h| h.parse().unwrap()),
            host_port,
            target_ip: target.parse().unwrap(),
            target_port,
        }
    }

    #[test]
    fn reads_published_ports_and_addresses() {
        let got = parse_containers(LIST.as_bytes()).unwrap();
        let want: BTreeSet<_> = [
            published(None, 18080, Proto::Tcp, "10.88.0.5", 8080),
            published(Some("127.0.0.1"), 5353, Proto::Udp, "10.88.0.5", 53),
            // "" and "::" both mean no host address: one entry.
            published(None, 8081, Proto::Tcp, "10.89.0.7", 80),
            published(None, 8082, Proto::Tcp, "127.0.0.1", 80),
        ]
        .into();
        assert_eq!(got, want);
    }

    #[test]
    fn empty_and_bad_lists() {
        assert!(parse_containers(b"[]").unwrap().is_empty());
        assert!(parse_containers(b"{\"message\":\"x\"}").is_err());
        assert!(parse_containers(b"[{\"Ports\":[{\"PrivatePort\":99999}]}]").is_err());
        assert!(parse_containers(b"").is_err());
    }

    #[test]
    fn event_lines() {
        let line = br#"{"status":"start","id":"a1","Type":"container","Action":"start","Actor":{"ID":"a1"},"time":1}"#;
        assert_eq!(event_action(line).as_deref(), Some("start"));
        assert_eq!(event_action(b"not json"), None);
    }
}
