//! What the gateway routes by, shared by every connection: the route table
//! (from NurFunctions) and each function's ready endpoints (from
//! EndpointSlices), each endpoint with its count of outstanding
//! connections and its idle kept-alive connections (dropped, so closed,
//! with the endpoint when it leaves). The watches replace them; connections read them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use nur_operator::routes::{RouteTable, Target};
use tokio::sync::watch;

use crate::upstream::Idle;

/// A ready pod of a function.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// Connections through this gateway to it, now.
    pub outstanding: Arc<AtomicUsize>,
    /// Its connections kept open between HTTP requests.
    pub idle: Arc<Idle>,
}

/// `namespace/name`.
pub type FunctionKey = String;

/// The routing state.
pub struct State {
    table: RwLock<Arc<RouteTable>>,
    endpoints: RwLock<HashMap<FunctionKey, Vec<Endpoint>>>,
    /// Bumped on every endpoint change, for connections waiting for a pod.
    changed: watch::Sender<u64>,
    /// Whether both watches have listed once (readiness).
    synced: [std::sync::atomic::AtomicBool; 2],
}

/// Which watch has listed.
#[derive(Clone, Copy)]
pub enum Watch {
    Functions = 0,
    Endpoints = 1,
}

impl State {
    pub fn new() -> Arc<State> {
        Arc::new(State {
            table: RwLock::new(Arc::new(RouteTable::default())),
            endpoints: RwLock::new(HashMap::new()),
            changed: watch::channel(0).0,
            synced: Default::default(),
        })
    }

    pub fn table(&self) -> Arc<RouteTable> {
        self.table.read().unwrap().clone()
    }

    pub fn set_table(&self, table: RouteTable) {
        *self.table.write().unwrap() = Arc::new(table);
    }

    /// Replaces every function's endpoints; an endpoint that stays keeps
    /// its outstanding count.
    pub fn set_endpoints(&self, next: HashMap<FunctionKey, Vec<SocketAddr>>) {
        let mut endpoints = self.endpoints.write().unwrap();
        let mut merged = HashMap::with_capacity(next.len());
        for (key, addrs) in next {
            let old = endpoints.get(&key);
            let list = addrs
                .into_iter()
                .map(|addr| {
                    old.and_then(|o| o.iter().find(|e| e.addr == addr))
                        .cloned()
                        .unwrap_or_else(|| Endpoint {
                            addr,
                            outstanding: Arc::new(AtomicUsize::new(0)),
                            idle: Arc::default(),
                        })
                })
                .collect();
            merged.insert(key, list);
        }
        *endpoints = merged;
        drop(endpoints);
        self.changed.send_modify(|n| *n += 1);
    }

    /// The ready endpoints of `target`, least outstanding first.
    pub fn endpoints(&self, target: &Target) -> Vec<Endpoint> {
        let mut list = self
            .endpoints
            .read()
            .unwrap()
            .get(&target.to_string())
            .cloned()
            .unwrap_or_default();
        list.sort_by_key(|e| e.outstanding.load(Ordering::Relaxed));
        list
    }

    /// Closes every pod's kept connections idle for `max_idle` or more.
    pub fn expire_idle(&self, max_idle: std::time::Duration) {
        for endpoints in self.endpoints.read().unwrap().values() {
            for endpoint in endpoints {
                endpoint.idle.expire(max_idle);
            }
        }
    }

    /// A receiver that sees each endpoint change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub fn set_synced(&self, watch: Watch) {
        self.synced[watch as usize].store(true, Ordering::SeqCst);
    }

    pub fn synced(&self) -> bool {
        self.synced.iter().all(|s| s.load(Ordering::SeqCst))
    }
}

/// An outstanding connection to an endpoint, counted until dropped.
pub struct Outstanding(Arc<AtomicUsize>);

impl Outstanding {
    pub fn new(endpoint: &Endpoint) -> Outstanding {
        endpoint.outstanding.fetch_add(1, Ordering::Relaxed);
        Outstanding(endpoint.outstanding.clone())
    }
}

impl Drop for Outstanding {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
