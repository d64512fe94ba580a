//! Command-line arguments: `--id ID --listen HOST:PORT --peer ID=HOST:PORT ... --logs DIR`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

pub const USAGE: &str = "\
Usage: p2p-peer-rs --id ID --listen HOST:PORT --peer ID=HOST:PORT [--peer ...] --logs DIR
                   [--idle SECONDS] [--link-deadline SECONDS]

A protocol-v1 peer of the p2p testbed, wire-compatible with the original tool.

  --id ID                  this peer's id (a non-negative integer)
  --listen HOST:PORT       address to accept neighbours on (e.g. 0.0.0.0:9000)
  --peer ID=HOST:PORT      one neighbour; repeat once per neighbour. HOST may be a
                           name (resolved at every dial attempt) or an IP address
  --logs DIR               write DIR/<id>.txt (one line per received message) and,
                           at exit, DIR/<id>.traffic.txt
  --idle SECONDS           exit after this long without a new frame once every link
                           was up or the link deadline passed (default 3)
  --link-deadline SECONDS  stop dialing a neighbour after this long (default 60)
  -h, --help               show this help

Exit status: 0 done (also on SIGTERM/SIGINT), 1 runtime error, 2 bad arguments.
";

/// A validated command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Args {
    pub id: u32,
    pub listen: String,
    /// neighbour id -> "HOST:PORT"
    pub peers: BTreeMap<u32, String>,
    pub logs: PathBuf,
    pub idle: Duration,
    pub link_deadline: Duration,
}

/// What the command line asks for.
#[derive(Debug, PartialEq)]
pub enum Parsed {
    Run(Args),
    Help,
}

/// Parse the arguments after the program name; `Err` is a one-line message.
pub fn parse<I: IntoIterator<Item = String>>(argv: I) -> Result<Parsed, String> {
    let mut id = None;
    let mut listen = None;
    let mut peers = BTreeMap::new();
    let mut logs = None;
    let mut idle = Duration::from_secs(3);
    let mut link_deadline = Duration::from_secs(60);
    let mut it = argv.into_iter();
    while let Some(arg) = it.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(Parsed::Help);
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let known = ["--id", "--listen", "--peer", "--logs", "--idle", "--link-deadline"];
        if !known.contains(&flag.as_str()) {
            return Err(format!("unknown argument: {arg} (see --help)"));
        }
        let value = match inline {
            Some(v) => v,
            None => it.next().ok_or_else(|| format!("{flag} needs a value"))?,
        };
        match flag.as_str() {
            "--id" => id = Some(parse_id(&value, "--id")?),
            "--listen" => listen = Some(parse_addr(&value, "--listen")?),
            "--peer" => {
                let (nid, addr) = parse_peer(&value)?;
                if peers.insert(nid, addr).is_some() {
                    return Err(format!("--peer {nid} given twice"));
                }
            }
            "--logs" => {
                if value.is_empty() {
                    return Err("--logs needs a directory".into());
                }
                logs = Some(PathBuf::from(value));
            }
            "--idle" => idle = parse_seconds(&value, "--idle")?,
            _ => link_deadline = parse_seconds(&value, "--link-deadline")?,
        }
    }
    let id = id.ok_or("--id is required")?;
    let listen = listen.ok_or("--listen is required")?;
    let logs = logs.ok_or("--logs is required")?;
    if peers.contains_key(&id) {
        return Err(format!("--peer {id} is this peer's own id"));
    }
    Ok(Parsed::Run(Args { id, listen, peers, logs, idle, link_deadline }))
}

fn parse_id(s: &str, what: &str) -> Result<u32, String> {
    // Digits only: u32::from_str would also take a leading '+'.
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{what}: not a non-negative integer: {s:?}"));
    }
    s.parse::<u32>().map_err(|_| format!("{what}: id out of range (max {}): {s}", u32::MAX))
}

/// `HOST:PORT` or `[IPv6]:PORT`; the host is resolved later, at bind or dial time.
fn parse_addr(s: &str, what: &str) -> Result<String, String> {
    let (host, port) = s.rsplit_once(':').ok_or_else(|| format!("{what}: expected HOST:PORT, got {s:?}"))?;
    if host.is_empty() || host == "[]" {
        return Err(format!("{what}: empty host in {s:?}"));
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(format!("{what}: write an IPv6 address as [ADDR]:PORT, got {s:?}"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => Ok(s.to_string()),
        _ => Err(format!("{what}: bad port in {s:?} (1..65535)")),
    }
}

fn parse_peer(s: &str) -> Result<(u32, String), String> {
    let (nid, addr) = s.split_once('=').ok_or_else(|| format!("--peer: expected ID=HOST:PORT, got {s:?}"))?;
    Ok((parse_id(nid, "--peer")?, parse_addr(addr, "--peer")?))
}

fn parse_seconds(s: &str, what: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 1e9 => Ok(Duration::from_secs_f64(v)),
        _ => Err(format!("{what}: expected a positive number of seconds, got {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn run(s: &str) -> Args {
        match parse(argv(s)) {
            Ok(Parsed::Run(a)) => a,
            other => panic!("expected Run, got {other:?}"),
        }
    }

    #[test]
    fn full_command_line() {
        let a = run("--id 3 --listen 0.0.0.0:9000 --peer 2=peer-2:9000 --peer 4=10.0.0.5:9001 \
                     --logs /tmp/x --idle 1.5 --link-deadline 20");
        assert_eq!(a.id, 3);
        assert_eq!(a.listen, "0.0.0.0:9000");
        assert_eq!(a.peers.len(), 2);
        assert_eq!(a.peers[&2], "peer-2:9000");
        assert_eq!(a.peers[&4], "10.0.0.5:9001");
        assert_eq!(a.logs, PathBuf::from("/tmp/x"));
        assert_eq!(a.idle, Duration::from_millis(1500));
        assert_eq!(a.link_deadline, Duration::from_secs(20));
    }

    #[test]
    fn defaults_and_equals_form() {
        let a = run("--id=0 --listen=127.0.0.1:7000 --peer=1=[::1]:7001 --logs=d");
        assert_eq!(a.idle, Duration::from_secs(3));
        assert_eq!(a.link_deadline, Duration::from_secs(60));
        assert_eq!(a.peers[&1], "[::1]:7001");
    }

    #[test]
    fn help() {
        assert_eq!(parse(argv("--id 1 --help")), Ok(Parsed::Help));
        assert_eq!(parse(argv("-h")), Ok(Parsed::Help));
    }

    #[test]
    fn errors_are_one_line() {
        let bad = [
            ("--listen 1.2.3.4:5 --logs d", "--id is required"),
            ("--id 1 --logs d", "--listen is required"),
            ("--id 1 --listen h:1", "--logs is required"),
            ("--id -1 --listen h:1 --logs d", "not a non-negative integer"),
            ("--id +1 --listen h:1 --logs d", "not a non-negative integer"),
            ("--id 4294967296 --listen h:1 --logs d", "out of range"),
            ("--id 1 --listen h --logs d", "expected HOST:PORT"),
            ("--id 1 --listen h:0 --logs d", "bad port"),
            ("--id 1 --listen h:70000 --logs d", "bad port"),
            ("--id 1 --listen :80 --logs d", "empty host"),
            ("--id 1 --listen ::1:80 --logs d", "IPv6"),
            ("--id 1 --listen h:1 --logs d --peer 2", "expected ID=HOST:PORT"),
            ("--id 1 --listen h:1 --logs d --peer 2=a:1 --peer 2=b:1", "given twice"),
            ("--id 1 --listen h:1 --logs d --peer 1=a:1", "own id"),
            ("--id 1 --listen h:1 --logs d --idle 0", "positive number"),
            ("--id 1 --listen h:1 --logs d --idle nan", "positive number"),
            ("--id 1 --listen h:1 --logs d --link-deadline -3", "positive number"),
            ("--id 1 --listen h:1 --logs d --bogus", "unknown argument"),
            ("--id", "needs a value"),
        ];
        for (line, want) in bad {
            let err = parse(argv(line)).expect_err(line);
            assert!(err.contains(want), "{line}: {err}");
            assert!(!err.contains('\n'), "{line}: {err}");
        }
    }

    #[test]
    fn zero_neighbours_is_allowed() {
        // An isolated peer of a disconnected graph: it just idles out.
        assert!(run("--id 0 --listen h:1 --logs d").peers.is_empty());
    }
}
