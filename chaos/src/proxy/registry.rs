//! The proxies by name and every operation of the API on them. One async lock serializes the
//! operations (starting and stopping listeners happens under it, so the API never shows a half
//! made proxy).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use noxious::toxic::ToxicEventKind;
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Mutex};
use tokio_util::sync::CancellationToken;

use super::backend::Backend;
use super::front::{Counters, Front, ProxyStats, ResetRule};
use super::toxic::{ToxicSpec, ToxicUpdate};

/// An API failure: HTTP status and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    /// 400, 404, 409 or 500.
    pub(crate) status: u16,
    /// The message.
    pub(crate) message: String,
}

impl ApiError {
    fn new(status: u16, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn proxy_not_found(name: &str) -> Self {
        Self::new(404, format!("proxy not found: {name}"))
    }

    fn toxic_not_found(name: &str) -> Self {
        Self::new(404, format!("toxic not found: {name}"))
    }
}

/// The API's result.
pub(crate) type ApiResult<T> = std::result::Result<T, ApiError>;

/// A proxy as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct ProxyView {
    pub(crate) name: String,
    pub(crate) listen: String,
    pub(crate) upstream: String,
    pub(crate) enabled: bool,
    pub(crate) toxics: Vec<ToxicSpec>,
    pub(crate) stats: ProxyStats,
}

/// A create or populate body.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ProxyCreate {
    #[serde(default)]
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) listen: String,
    #[serde(default)]
    pub(crate) upstream: String,
    #[serde(default = "enabled_default")]
    pub(crate) enabled: bool,
}

fn enabled_default() -> bool {
    true
}

/// An update body: every field optional.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ProxyUpdate {
    pub(crate) listen: Option<String>,
    pub(crate) upstream: Option<String>,
    pub(crate) enabled: Option<bool>,
}

/// One proxy.
#[derive(Debug)]
struct Proxy {
    name: String,
    /// The listen address; after the first bind, the bound one (so a proxy created on port 0
    /// keeps its port across disable and enable).
    listen: String,
    upstream: String,
    enabled: bool,
    /// Every toxic in creation order (noxious' and the front's).
    toxics: Vec<ToxicSpec>,
    backend: Backend,
    front: Option<Front>,
    counters: Arc<Counters>,
    rules: watch::Sender<Arc<Vec<ResetRule>>>,
    /// The rule id of each `reset_peer` toxic, by name.
    rule_ids: BTreeMap<String, u64>,
}

impl Proxy {
    fn view(&self) -> ProxyView {
        ProxyView {
            name: self.name.clone(),
            listen: self.listen.clone(),
            upstream: self.upstream.clone(),
            enabled: self.enabled,
            toxics: self.toxics.clone(),
            stats: self.counters.snapshot(),
        }
    }

    /// Publishes the `reset_peer` rules to the connections.
    fn publish_rules(&self) {
        let rules: Vec<ResetRule> = self
            .toxics
            .iter()
            .filter(|t| t.is_front())
            .filter_map(|t| {
                Some(ResetRule {
                    id: *self.rule_ids.get(&t.name)?,
                    direction: t.direction(),
                    timeout: Duration::from_millis(t.attr("timeout")),
                    toxicity: t.toxicity,
                })
            })
            .collect();
        self.rules.send_replace(Arc::new(rules));
    }

    async fn start_front(&mut self, cancel: &CancellationToken) -> ApiResult<()> {
        let front = Front::start(
            &self.listen,
            self.backend.registrar(),
            self.counters.clone(),
            self.rules.subscribe(),
            cancel.child_token(),
        )
        .await
        .map_err(|e| ApiError::new(500, e.to_string()))?;
        self.listen = front.addr().to_string();
        self.front = Some(front);
        Ok(())
    }

    async fn stop_front(&mut self) {
        if let Some(front) = self.front.take() {
            front.stop().await;
        }
    }

    async fn set_enabled(&mut self, enabled: bool, cancel: &CancellationToken) -> ApiResult<()> {
        if enabled && self.front.is_none() {
            self.start_front(cancel).await?;
        } else if !enabled && self.front.is_some() {
            self.counters.count_disable();
            self.stop_front().await;
        }
        self.enabled = enabled;
        Ok(())
    }

    async fn close(&mut self) {
        self.stop_front().await;
        self.backend.stop();
    }
}

/// Every proxy, by name.
#[derive(Debug)]
pub(crate) struct Registry {
    proxies: Mutex<BTreeMap<String, Proxy>>,
    cancel: CancellationToken,
    next_rule: AtomicU64,
}

impl Registry {
    /// An empty registry whose listeners stop with `cancel`.
    pub(crate) fn new(cancel: CancellationToken) -> Self {
        Registry {
            proxies: Mutex::new(BTreeMap::new()),
            cancel,
            next_rule: AtomicU64::new(1),
        }
    }

    /// Every proxy.
    pub(crate) async fn list(&self) -> BTreeMap<String, ProxyView> {
        let proxies = self.proxies.lock().await;
        proxies.iter().map(|(n, p)| (n.clone(), p.view())).collect()
    }

    /// One proxy.
    pub(crate) async fn get(&self, name: &str) -> ApiResult<ProxyView> {
        let proxies = self.proxies.lock().await;
        proxies
            .get(name)
            .map(Proxy::view)
            .ok_or_else(|| ApiError::proxy_not_found(name))
    }

    /// The counters of one proxy.
    pub(crate) async fn stats(&self, name: &str) -> Option<ProxyStats> {
        let proxies = self.proxies.lock().await;
        proxies.get(name).map(|p| p.counters.snapshot())
    }

    /// Creates a proxy (409 when the name exists).
    pub(crate) async fn create(&self, req: ProxyCreate) -> ApiResult<ProxyView> {
        let mut proxies = self.proxies.lock().await;
        if proxies.contains_key(&req.name) {
            return Err(ApiError::new(409, format!("proxy already exists: {}", req.name)));
        }
        let proxy = self.make(req).await?;
        let view = proxy.view();
        proxies.insert(view.name.clone(), proxy);
        Ok(view)
    }

    async fn make(&self, req: ProxyCreate) -> ApiResult<Proxy> {
        if req.name.is_empty() {
            return Err(ApiError::new(400, "missing required field: name"));
        }
        if req.upstream.is_empty() {
            return Err(ApiError::new(400, "missing required field: upstream"));
        }
        let listen = if req.listen.is_empty() {
            "127.0.0.1:0".to_string()
        } else {
            req.listen
        };
        let backend = Backend::start(&req.name, &req.upstream, Vec::new())
            .await
            .map_err(|e| ApiError::new(500, e.to_string()))?;
        let (rules, _) = watch::channel(Arc::new(Vec::new()));
        let mut proxy = Proxy {
            name: req.name,
            listen,
            upstream: req.upstream,
            enabled: false,
            toxics: Vec::new(),
            backend,
            front: None,
            counters: Arc::new(Counters::default()),
            rules,
            rule_ids: BTreeMap::new(),
        };
        if req.enabled {
            proxy.start_front(&self.cancel).await?;
            proxy.enabled = true;
        }
        Ok(proxy)
    }

    /// Creates or replaces proxies (Toxiproxy's `POST /populate`): a proxy of the same name with
    /// the same listen and upstream is kept (its toxics too) and only enabled or disabled;
    /// otherwise it is replaced.
    pub(crate) async fn populate(&self, reqs: Vec<ProxyCreate>) -> ApiResult<Vec<ProxyView>> {
        let mut out = Vec::with_capacity(reqs.len());
        for req in reqs {
            let mut proxies = self.proxies.lock().await;
            if let Some(existing) = proxies.get_mut(&req.name) {
                let same_listen = req.listen.is_empty() || req.listen == existing.listen;
                if same_listen && req.upstream == existing.upstream {
                    existing.set_enabled(req.enabled, &self.cancel).await?;
                    out.push(existing.view());
                    continue;
                }
                if let Some(mut old) = proxies.remove(&req.name) {
                    old.close().await;
                }
            }
            let proxy = self.make(req).await?;
            out.push(proxy.view());
            proxies.insert(proxy.name.clone(), proxy);
        }
        Ok(out)
    }

    /// Updates listen, upstream or enabled. A new listen or upstream restarts the proxy (its
    /// connections are closed), as in Toxiproxy.
    pub(crate) async fn update(&self, name: &str, req: ProxyUpdate) -> ApiResult<ProxyView> {
        let mut proxies = self.proxies.lock().await;
        let p = proxies.get_mut(name).ok_or_else(|| ApiError::proxy_not_found(name))?;
        let new_listen = req.listen.filter(|l| !l.is_empty() && *l != p.listen);
        let new_upstream = req.upstream.filter(|u| !u.is_empty() && *u != p.upstream);
        let enabled = req.enabled.unwrap_or(p.enabled);
        if new_listen.is_some() || new_upstream.is_some() {
            p.stop_front().await;
            if let Some(u) = new_upstream {
                let toxics = p.toxics.iter().filter_map(ToxicSpec::to_noxious).collect();
                let backend = Backend::start(&p.name, &u, toxics)
                    .await
                    .map_err(|e| ApiError::new(500, e.to_string()))?;
                p.backend.stop();
                p.backend = backend;
                p.upstream = u;
            }
            if let Some(l) = new_listen {
                p.listen = l;
            }
            p.enabled = false;
        }
        p.set_enabled(enabled, &self.cancel).await?;
        Ok(p.view())
    }

    /// Deletes a proxy, closing its connections.
    pub(crate) async fn delete(&self, name: &str) -> ApiResult<()> {
        let mut proxies = self.proxies.lock().await;
        let mut p = proxies.remove(name).ok_or_else(|| ApiError::proxy_not_found(name))?;
        p.close().await;
        Ok(())
    }

    /// Enables every proxy and removes every toxic (`POST /reset`).
    pub(crate) async fn reset(&self) -> ApiResult<()> {
        let mut proxies = self.proxies.lock().await;
        for p in proxies.values_mut() {
            // One event (one rebuild of the live connections) for all of noxious' toxics.
            if p.toxics.iter().any(|t| !t.is_front()) {
                p.backend
                    .apply(ToxicEventKind::RemoveAllToxics)
                    .await
                    .map_err(|e| ApiError::new(500, e))?;
            }
            p.toxics.clear();
            p.rule_ids.clear();
            p.publish_rules();
            p.set_enabled(true, &self.cancel).await?;
        }
        Ok(())
    }

    /// Closes every proxy (shutdown).
    pub(crate) async fn close_all(&self) {
        let mut proxies = self.proxies.lock().await;
        for p in proxies.values_mut() {
            p.close().await;
        }
        proxies.clear();
    }

    /// The toxics of a proxy.
    pub(crate) async fn toxics(&self, proxy: &str) -> ApiResult<Vec<ToxicSpec>> {
        Ok(self.get(proxy).await?.toxics)
    }

    /// One toxic.
    pub(crate) async fn toxic(&self, proxy: &str, toxic: &str) -> ApiResult<ToxicSpec> {
        self.toxics(proxy)
            .await?
            .into_iter()
            .find(|t| t.name == toxic)
            .ok_or_else(|| ApiError::toxic_not_found(toxic))
    }

    /// Puts `spec` to work on `p`: a noxious toxic through the runner (`event` says whether it
    /// is added or updated), or one of our own rules (`reset_peer`), which takes a fresh rule id
    /// so live connections pick up the change.
    async fn install(
        &self,
        p: &mut Proxy,
        spec: &ToxicSpec,
        event: fn(noxious::toxic::Toxic) -> ToxicEventKind,
    ) -> ApiResult<()> {
        match spec.to_noxious() {
            Some(t) => p.backend.apply(event(t)).await.map_err(|e| ApiError::new(500, e)),
            None => {
                let id = self.next_rule.fetch_add(1, Ordering::Relaxed);
                p.rule_ids.insert(spec.name.clone(), id);
                Ok(())
            }
        }
    }

    /// Adds a toxic (409 when its name exists on the proxy).
    pub(crate) async fn add_toxic(&self, proxy: &str, spec: ToxicSpec) -> ApiResult<ToxicSpec> {
        let spec = spec.normalized().map_err(|m| ApiError::new(400, m))?;
        let mut proxies = self.proxies.lock().await;
        let p = proxies.get_mut(proxy).ok_or_else(|| ApiError::proxy_not_found(proxy))?;
        if p.toxics.iter().any(|t| t.name == spec.name) {
            return Err(ApiError::new(409, format!("toxic already exists: {}", spec.name)));
        }
        self.install(p, &spec, ToxicEventKind::AddToxic).await?;
        p.toxics.push(spec.clone());
        p.publish_rules();
        Ok(spec)
    }

    /// Updates a toxic's toxicity or attributes.
    pub(crate) async fn update_toxic(&self, proxy: &str, toxic: &str, update: ToxicUpdate) -> ApiResult<ToxicSpec> {
        let mut proxies = self.proxies.lock().await;
        let p = proxies.get_mut(proxy).ok_or_else(|| ApiError::proxy_not_found(proxy))?;
        let i = p
            .toxics
            .iter()
            .position(|t| t.name == toxic)
            .ok_or_else(|| ApiError::toxic_not_found(toxic))?;
        let next = p.toxics[i].updated(update).map_err(|m| ApiError::new(400, m))?;
        self.install(p, &next, ToxicEventKind::UpdateToxic).await?;
        p.toxics[i] = next.clone();
        p.publish_rules();
        Ok(next)
    }

    /// Removes a toxic.
    pub(crate) async fn remove_toxic(&self, proxy: &str, toxic: &str) -> ApiResult<()> {
        let mut proxies = self.proxies.lock().await;
        let p = proxies.get_mut(proxy).ok_or_else(|| ApiError::proxy_not_found(proxy))?;
        let i = p
            .toxics
            .iter()
            .position(|t| t.name == toxic)
            .ok_or_else(|| ApiError::toxic_not_found(toxic))?;
        if p.toxics[i].is_front() {
            p.rule_ids.remove(toxic);
        } else {
            p.backend
                .apply(ToxicEventKind::RemoveToxic(toxic.to_string()))
                .await
                .map_err(|e| ApiError::new(500, e))?;
        }
        p.toxics.remove(i);
        p.publish_rules();
        Ok(())
    }
}
