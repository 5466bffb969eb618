//! Which ports containers publish, learnt from the engine rather than by
//! scanning sockets (Podman 6 holds no listening socket for a published
//! port, and a scan cannot see container addresses): `GET /containers/json`
//! names the running containers that publish ports, their inspect gives the
//! ports (ranges expanded) and network address, and the event stream
//! (`GET /events`) says when to ask again. The list is read
//! again each time the engine becomes ready and every
//! [`RECONCILE_EVERY`], so nothing is lost across engine restarts,
//! container restarts or reboots.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::thread;
use std::time::{Duration, Instant};

use skiff_proto::ports::{Proto, Published};

use crate::services::http;
use crate::supervise::engine;

/// How often the table is rebuilt even without events.
const RECONCILE_EVERY: Duration = Duration::from_secs(10);
/// Container events only (URL-encoded `{"type":["container"]}`).
const EVENTS_PATH: &str = "/v1.41/events?filters=%7B%22type%22%3A%5B%22container%22%5D%7D";
const CONTAINERS_PATH: &str = "/v1.41/containers/json";
/// Largest container list read (about 2,000 containers' worth).
const MAX_LIST: usize = 8 << 20;
/// Largest container inspect read.
const MAX_INSPECT: usize = 1 << 20;
/// Longest event line accepted.
const MAX_EVENT: usize = 64 << 10;

use crate::services::json::{self, Json};

/// The ids of the running containers (`GET /containers/json` lists only
/// those) that publish at least one port. Podman lists a port range as one
/// entry, so the ports themselves are read from each container's inspect.
pub fn parse_list(text: &[u8]) -> Result<Vec<String>, json::Error> {
    let listed = json::parse(text)?;
    if !listed.is_array() {
        return Err(json::Error::NotAList);
    }
    let publishes = |c: Json<'_>| {
        c.get("Ports").is_some_and(|ports| ports.items().any(|p| p.get("PublicPort").and_then(Json::as_u64).is_some_and(|n| n != 0)))
    };
    Ok(listed.items().filter(|&c| publishes(c)).filter_map(|c| c.get("Id")?.as_str()).collect())
}

/// The address the guest dials for a container: `--network host` is the
/// guest itself; otherwise the address of the first network (by name, as
/// the engine lists them) that has one.
fn target_ip(c: Json<'_>) -> Option<IpAddr> {
    if c.get("HostConfig").and_then(|h| h.get("NetworkMode")).and_then(Json::as_str).as_deref() == Some("host") {
        return Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    let networks = c.get("NetworkSettings")?.get("Networks")?;
    let addresses = networks.members().filter_map(|(name, n)| Some((name, n.get("IPAddress")?.as_str()?.parse().ok()?)));
    addresses.min_by(|a, b| a.0.cmp(&b.0)).map(|(_, ip)| ip)
}

/// The published ports in a container's inspect (`GET /containers/ID/json`):
/// `NetworkSettings.Ports` maps `"8080/tcp"` to `[{"HostIp", "HostPort"}]`,
/// one key per container port (ranges expanded), `null` when only exposed.
pub fn parse_inspect(text: &[u8]) -> Result<BTreeSet<Published>, json::Error> {
    let c = json::parse(text)?;
    let mut table = BTreeSet::new();
    let Some(target_ip) = target_ip(c) else { return Ok(table) };
    let Some(ports) = c.get("NetworkSettings").and_then(|n| n.get("Ports")) else { return Ok(table) };
    for (key, bindings) in ports.members() {
        let (port, proto) = key.split_once('/').unwrap_or((&key, "tcp"));
        let (Ok(target_port), Some(proto)) = (port.parse::<u16>(), Proto::parse(proto)) else { continue };
        for b in bindings.items() {
            let host_port = match b.get("HostPort").and_then(Json::as_str).map(|p| p.parse::<u16>()) {
                Some(Ok(port)) if port != 0 => port,
                _ => continue,
            };
            let host_ip = match b.get("HostIp").and_then(Json::as_str).unwrap_or_default().as_str() {
                "" => None,
                text => match text.parse::<IpAddr>() {
                    Ok(ip) if ip.is_unspecified() => None,
                    Ok(ip) => Some(ip),
                    Err(_) => continue,
                },
            };
            table.insert(Published { proto, host_ip, host_port, target_ip, target_port });
        }
    }
    Ok(table)
}

/// The action of an event line (`start`, `die`, ...), if it is one.
pub fn event_action(line: &[u8]) -> Option<String> {
    json::parse(line).ok()?.get("Action")?.as_str()
}

/// Whether an event with this action may change what is published: not an
/// exec or a healthcheck's result (a check runs as an exec, every interval).
pub fn may_change_ports(action: Option<&str>) -> bool {
    !action.is_some_and(|a| a.starts_with("exec") || a == "health_status")
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

/// Reads the container list (and each publishing container's inspect)
/// and replaces the table.
fn reconcile() -> Result<(), String> {
    let body = http::get(engine::SOCKET, CONTAINERS_PATH, MAX_LIST, Duration::from_secs(10))
        .map_err(|e| format!("cannot list containers: {e}"))?;
    let ids = parse_list(&body).map_err(|e| format!("cannot read the container list: {e}"))?;
    let mut table = BTreeSet::new();
    for id in ids {
        // Ids are hex; anything else is not put into a request path.
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let path = format!("/v1.41/containers/{id}/json");
        // A container removed since the list was read is simply skipped.
        match http::get(engine::SOCKET, &path, MAX_INSPECT, Duration::from_secs(10)) {
            Ok(body) => match parse_inspect(&body) {
                Ok(ports) => table.extend(ports),
                Err(e) => log::warn!("ports: cannot read container {id}: {e}"),
            },
            Err(http::Error::Status(404)) => {}
            Err(e) => return Err(format!("cannot inspect container {id}: {e}")),
        }
    }
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
                Ok(got) => got.iter().fold(false, |dirty, line| {
                    let action = event_action(line);
                    log::debug!("ports: engine event {:?}", action.as_deref().unwrap_or_default());
                    may_change_ports(action.as_deref()) || dirty
                }),
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

    #[test]
    fn lists_containers_that_publish() {
        let list = br#"[
          {"Id":"a1","Ports":[{"IP":"0.0.0.0","PrivatePort":8080,"PublicPort":18080,"Type":"tcp"}]},
          {"Id":"b2","Ports":[{"PrivatePort":9000,"Type":"tcp"}]},
          {"Id":"c3","Ports":null},
          {"Id":"d4"}
        ]"#;
        assert_eq!(parse_list(list).unwrap(), vec!["a1".to_string()]);
        assert!(parse_list(b"[]").unwrap().is_empty());
        assert!(parse_list(b"{\"message\":\"x\"}").is_err());
        assert!(parse_list(b"").is_err());
    }

    /// Trimmed from Podman 5.4's compat inspect of a container run with
    /// `-p 18080-18081:8080-8081 -p 127.0.0.1:5353:53/udp --expose 9000`.
    const INSPECT: &str = r#"{"Id":"a1","State":{"Running":true},
      "HostConfig":{"NetworkMode":"bridge"},
      "NetworkSettings":{
        "Ports":{"8080/tcp":[{"HostIp":"","HostPort":"18080"}],
                 "8081/tcp":[{"HostIp":"0.0.0.0","HostPort":"18081"},{"HostIp":"::","HostPort":"18081"}],
                 "53/udp":[{"HostIp":"127.0.0.1","HostPort":"5353"}],
                 "9000/tcp":null,
                 "7/sctp":[{"HostIp":"","HostPort":"7"}],
                 "x/tcp":[{"HostIp":"","HostPort":"1"}],
                 "1/tcp":[{"HostIp":"bogus","HostPort":"2"},{"HostIp":"","HostPort":"0"}]},
        "Networks":{"n1":{"IPAddress":""},"podman":{"IPAddress":"10.88.0.5","Gateway":"10.88.0.1"}}}}"#;

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
        let got = parse_inspect(INSPECT.as_bytes()).unwrap();
        let want: BTreeSet<_> = [
            published(None, 18080, Proto::Tcp, "10.88.0.5", 8080),
            // "0.0.0.0" and "::" both mean no host address: one entry.
            published(None, 18081, Proto::Tcp, "10.88.0.5", 8081),
            published(Some("127.0.0.1"), 5353, Proto::Udp, "10.88.0.5", 53),
        ]
        .into();
        assert_eq!(got, want);
    }

    #[test]
    fn host_network_and_no_address() {
        let host = br#"{"HostConfig":{"NetworkMode":"host"},"NetworkSettings":{"Ports":{"80/tcp":[{"HostIp":"","HostPort":"8082"}]},"Networks":{"host":{"IPAddress":""}}}}"#;
        assert_eq!(parse_inspect(host).unwrap(), [published(None, 8082, Proto::Tcp, "127.0.0.1", 80)].into());
        let none = br#"{"NetworkSettings":{"Ports":{"80/tcp":[{"HostIp":"","HostPort":"8083"}]},"Networks":{}}}"#;
        assert!(parse_inspect(none).unwrap().is_empty());
        assert!(parse_inspect(b"{}").unwrap().is_empty());
        // Several networks: the first by name that has an address.
        let two = br#"{"NetworkSettings":{"Ports":{"80/tcp":[{"HostIp":"","HostPort":"8084"}]},"Networks":{"zeta":{"IPAddress":"10.88.0.9"},"beta":{"IPAddress":"10.89.0.2"},"alpha":{"IPAddress":""}}}}"#;
        assert_eq!(parse_inspect(two).unwrap(), [published(None, 8084, Proto::Tcp, "10.89.0.2", 80)].into());
        // Not JSON is an error; JSON of another shape publishes nothing.
        assert!(parse_inspect(b"{").is_err());
        assert!(parse_inspect(b"42").unwrap().is_empty());
        assert!(parse_inspect(br#"{"NetworkSettings":7}"#).unwrap().is_empty());
        assert!(parse_inspect(br#"{"NetworkSettings":{"Ports":{"80/tcp":[{"HostPort":8080}]},"Networks":{"p":{"IPAddress":"10.88.0.2"}}}}"#).unwrap().is_empty());
    }

    #[test]
    fn event_lines() {
        let line = br#"{"status":"start","id":"a1","Type":"container","Action":"start","Actor":{"ID":"a1"},"time":1}"#;
        assert_eq!(event_action(line).as_deref(), Some("start"));
        assert_eq!(event_action(b"not json"), None);
        // A healthcheck's exec and result do not make the table be read again.
        assert!(may_change_ports(Some("start")) && may_change_ports(Some("die")) && may_change_ports(None));
        assert!(!may_change_ports(Some("exec")) && !may_change_ports(Some("exec_died")) && !may_change_ports(Some("health_status")));
    }
}
