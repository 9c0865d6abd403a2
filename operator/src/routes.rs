//! Which function holds each gateway route (pure, no client). Functions
//! claim their routes oldest first (creation time, then namespace/name); a
//! route an older function holds is not taken again, and a TCP port outside
//! the gateway's range is not taken. The operator writes each function's
//! [`Outcome`] as its Routed condition; nur-gateway routes by the same
//! [`RouteTable`], so both agree on who holds what.

use std::collections::HashMap;
use std::ops::RangeInclusive;

use kube::ResourceExt;

use crate::crd::{HttpRoute, NurFunction};

/// The TCP route ports of the gateway when not set: `7000-7009`.
pub const DEFAULT_TCP_PORTS: RangeInclusive<u16> = 7000..=7009;

/// Parses a port range, `7000-7009` (or one port, `7000`).
pub fn parse_port_range(s: &str) -> Result<RangeInclusive<u16>, String> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let port = |p: &str| {
        p.trim()
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{p:?} is not a port (1-65535) in the range {s:?}"))
    };
    let (a, b) = (port(a)?, port(b)?);
    if a > b {
        return Err(format!("{s:?}: the first port is above the last"));
    }
    Ok(a..=b)
}

/// A function, by namespace and name, and the port its pods serve on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    pub namespace: String,
    pub name: String,
    pub port: u16,
    /// It scales to zero: a gateway wakes it when it has no pod.
    pub wakes: bool,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One HTTP route as held.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpEntry {
    /// `None`: any host.
    pub host: Option<String>,
    pub path_prefix: String,
    /// `None`: any method.
    pub methods: Option<Vec<String>>,
    pub target: Target,
}

impl HttpEntry {
    fn overlaps(&self, other: &HttpEntry) -> bool {
        let methods = match (&self.methods, &other.methods) {
            (Some(a), Some(b)) => a.iter().any(|m| b.contains(m)),
            _ => true,
        };
        self.host == other.host && self.path_prefix == other.path_prefix && methods
    }

    fn describe(&self) -> String {
        let methods = self
            .methods
            .as_ref()
            .map_or("any method".into(), |m| m.join(","));
        format!(
            "http {}{} ({methods})",
            self.host.as_deref().unwrap_or("*"),
            self.path_prefix
        )
    }

    /// Whether the request matches (`host` without its port, lower case).
    pub fn matches(&self, method: &str, host: Option<&str>, path: &str) -> bool {
        let host_ok = self.host.as_deref().is_none_or(|h| Some(h) == host);
        let method_ok = self
            .methods
            .as_ref()
            .is_none_or(|m| m.iter().any(|x| x == method));
        host_ok && method_ok && path_has_prefix(path, &self.path_prefix)
    }
}

/// `/hello` is a prefix of `/hello`, `/hello/` and `/hello/x`, not of
/// `/helloworld`; `/` and `/a/` are prefixes of what starts with them.
/// The query string is not part of the path.
pub fn path_has_prefix(path: &str, prefix: &str) -> bool {
    let path = path.split(['?', '#']).next().unwrap_or("");
    if prefix.ends_with('/') {
        return path.starts_with(prefix);
    }
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Every route held, by kind.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteTable {
    /// Most specific first: a host before any host, then the longest prefix.
    pub http: Vec<HttpEntry>,
    pub tls: HashMap<String, Target>,
    pub tcp: HashMap<u16, Target>,
}

impl RouteTable {
    /// The function of an HTTP request, the most specific route first.
    pub fn http_route(&self, method: &str, host: Option<&str>, path: &str) -> Option<&Target> {
        self.http
            .iter()
            .find(|e| e.matches(method, host, path))
            .map(|e| &e.target)
    }
}

/// What a function's routes came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It has no routes.
    NoRoutes,
    /// It holds every one of its routes.
    Routed { routes: usize },
    /// A route is held by an older function (the others are taken).
    Conflict { route: String, holder: String },
    /// A TCP route outside the gateway's ports.
    OutOfRange { port: i32, range: String },
}

/// The table of `functions`' routes and each function's outcome (keyed
/// `namespace/name`); `tcp_ports` are the gateway's TCP route ports.
pub fn build<'a>(
    functions: impl IntoIterator<Item = &'a NurFunction>,
    tcp_ports: &RangeInclusive<u16>,
) -> (RouteTable, HashMap<String, Outcome>) {
    let mut functions: Vec<&NurFunction> = functions.into_iter().collect();
    functions.sort_by_cached_key(|f| {
        (
            f.metadata.creation_timestamp.as_ref().map(|t| t.0),
            f.namespace().unwrap_or_default(),
            f.name_any(),
        )
    });
    let mut table = RouteTable::default();
    let mut outcomes = HashMap::new();
    for f in functions {
        if f.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let target = Target {
            namespace: f.namespace().unwrap_or_default(),
            name: f.name_any(),
            port: u16::try_from(f.spec.port).unwrap_or(0),
            wakes: f.spec.scale_to_zero.is_some(),
        };
        let key = target.to_string();
        let Some(routes) = &f.spec.routes else {
            outcomes.insert(key, Outcome::NoRoutes);
            continue;
        };
        let mut problem = None;
        let mut held = 0;
        for r in &routes.http {
            let entry = http_entry(r, &target);
            match table.http.iter().find(|e| e.overlaps(&entry)) {
                Some(holder) => {
                    problem.get_or_insert(Outcome::Conflict {
                        route: entry.describe(),
                        holder: holder.target.to_string(),
                    });
                }
                None => {
                    table.http.push(entry);
                    held += 1;
                }
            }
        }
        for r in &routes.tls {
            match table.tls.get(&r.sni) {
                Some(holder) => {
                    problem.get_or_insert(Outcome::Conflict {
                        route: format!("tls {}", r.sni),
                        holder: holder.to_string(),
                    });
                }
                None => {
                    table.tls.insert(r.sni.clone(), target.clone());
                    held += 1;
                }
            }
        }
        if let Some(tcp) = &routes.tcp {
            let port = u16::try_from(tcp.port)
                .ok()
                .filter(|p| tcp_ports.contains(p));
            match port {
                None => {
                    problem.get_or_insert(Outcome::OutOfRange {
                        port: tcp.port,
                        range: format!("{}-{}", tcp_ports.start(), tcp_ports.end()),
                    });
                }
                Some(port) => match table.tcp.get(&port) {
                    Some(holder) => {
                        problem.get_or_insert(Outcome::Conflict {
                            route: format!("tcp {port}"),
                            holder: holder.to_string(),
                        });
                    }
                    None => {
                        table.tcp.insert(port, target.clone());
                        held += 1;
                    }
                },
            }
        }
        outcomes.insert(key, problem.unwrap_or(Outcome::Routed { routes: held }));
    }
    // Most specific first: hosts before any host, then longer prefixes.
    table.http.sort_by(|a, b| {
        b.host
            .is_some()
            .cmp(&a.host.is_some())
            .then(b.path_prefix.len().cmp(&a.path_prefix.len()))
    });
    (table, outcomes)
}

fn http_entry(r: &HttpRoute, target: &Target) -> HttpEntry {
    HttpEntry {
        host: r.host.clone(),
        path_prefix: r.path_prefix.clone().unwrap_or_else(|| "/".into()),
        methods: r.methods.clone().map(|mut m| {
            m.sort();
            m.dedup();
            m
        }),
        target: target.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn function(ns: &str, name: &str, created: &str, routes: &str) -> NurFunction {
        serde_yaml::from_str(&format!(
            "apiVersion: nur.dev/v1alpha1\nkind: NurFunction\n\
             metadata: {{name: {name}, namespace: {ns}, creationTimestamp: '{created}'}}\n\
             spec: {{module: {{url: s3://b/k}}, routes: {routes}}}"
        ))
        .unwrap()
    }

    const PORTS: RangeInclusive<u16> = 7000..=7009;

    #[test]
    fn port_ranges_parse() {
        assert_eq!(parse_port_range("7000-7009"), Ok(7000..=7009));
        assert_eq!(parse_port_range("7000"), Ok(7000..=7000));
        assert!(parse_port_range("7009-7000").is_err());
        assert!(parse_port_range("0-10").unwrap_err().contains("not a port"));
    }

    #[test]
    fn prefixes_end_at_a_path_segment() {
        assert!(path_has_prefix("/hello", "/hello"));
        assert!(path_has_prefix("/hello/x?y=1", "/hello"));
        assert!(path_has_prefix("/hello?y=1", "/hello"));
        assert!(!path_has_prefix("/helloworld", "/hello"));
        assert!(path_has_prefix("/anything", "/"));
        assert!(path_has_prefix("/a/b", "/a/"));
        assert!(!path_has_prefix("/a", "/a/"));
    }

    #[test]
    fn the_most_specific_route_wins() {
        let fs = [
            function("a", "root", "2026-01-01T00:00:00Z", "{http: [{}]}"),
            function(
                "a",
                "hello",
                "2026-01-02T00:00:00Z",
                "{http: [{pathPrefix: /hello}]}",
            ),
            function(
                "a",
                "post",
                "2026-01-03T00:00:00Z",
                "{http: [{pathPrefix: /hello/deep, methods: [POST]}]}",
            ),
            function(
                "b",
                "host",
                "2026-01-04T00:00:00Z",
                "{http: [{host: example.com}]}",
            ),
        ];
        let (table, outcomes) = build(&fs, &PORTS);
        let route = |m, h, p| table.http_route(m, h, p).map(|t| t.to_string());
        assert_eq!(route("GET", None, "/hello/deep"), Some("a/hello".into()));
        assert_eq!(route("POST", None, "/hello/deep"), Some("a/post".into()));
        assert_eq!(route("GET", None, "/other"), Some("a/root".into()));
        assert_eq!(
            route("GET", Some("example.com"), "/hello"),
            Some("b/host".into())
        );
        assert!(
            outcomes
                .values()
                .all(|o| matches!(o, Outcome::Routed { routes: 1 }))
        );
    }

    #[test]
    fn the_older_function_keeps_a_route() {
        let fs = [
            function(
                "b",
                "young",
                "2026-02-01T00:00:00Z",
                "{http: [{pathPrefix: /x, methods: [GET]}, {pathPrefix: /y}], tls: [{sni: db.example.com}]}",
            ),
            function(
                "a",
                "old",
                "2026-01-01T00:00:00Z",
                "{http: [{pathPrefix: /x, methods: [POST, GET]}], tls: [{sni: db.example.com}], tcp: {port: 7000}}",
            ),
            function("c", "port", "2026-03-01T00:00:00Z", "{tcp: {port: 7000}}"),
            function("c", "far", "2026-03-02T00:00:00Z", "{tcp: {port: 8000}}"),
            function(
                "c",
                "other-method",
                "2026-03-03T00:00:00Z",
                "{http: [{pathPrefix: /x, methods: [PUT]}]}",
            ),
        ];
        let (table, outcomes) = build(&fs, &PORTS);
        assert_eq!(outcomes["a/old"], Outcome::Routed { routes: 3 });
        assert_eq!(
            outcomes["b/young"],
            Outcome::Conflict {
                route: "http */x (GET)".into(),
                holder: "a/old".into()
            }
        );
        // Its route without a conflict is taken.
        assert_eq!(
            table.http_route("GET", None, "/y").unwrap().to_string(),
            "b/young"
        );
        assert_eq!(table.tls["db.example.com"].to_string(), "a/old");
        assert_eq!(
            outcomes["c/port"],
            Outcome::Conflict {
                route: "tcp 7000".into(),
                holder: "a/old".into()
            }
        );
        assert_eq!(
            outcomes["c/far"],
            Outcome::OutOfRange {
                port: 8000,
                range: "7000-7009".into()
            }
        );
        assert_eq!(outcomes["c/other-method"], Outcome::Routed { routes: 1 });
    }
}
